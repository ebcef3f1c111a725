"""Replay is faithful to a recording of a real closed-loop run, in every timestamp mode.

The recording: `recloop simulate` (simulated users reacting to a real `recloop worker`'s
answers) on real Apache Kafka, its events topic captured by `record` (thousands of events
with their own send times, not scripted ones sharing one timestamp). Each case replays it
with one timestamp mode and speed to a fresh topic, reads that topic back and checks, by
event id:

* the same event ids, each with the same user, type, item, session, request id, position
  and value; `seq` renumbered 0, 1, 2, ... per user in recorded order;
* each user's events in the recorded order (offset order of their partition);
* send times (`produce_time`, stamped as each event leaves) follow the recording's spacing
  divided by the speed; as fast as possible, all leave at once;
* timestamps follow the mode: `keep` the recorded event and record times, `shift` the
  recorded ones moved by one constant to now, `scale` the intended send time.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recloop.core.contract import UserEvent, decode_event
from recloop.core.settings import Settings
from recloop.core.topics import ensure_topics
from recloop.simulator.replay.capture import Bounds, record
from recloop.simulator.replay.replayer import Options, Replayer, make_plan
from recloop.simulator.replay.sources import load_recording
from tests.faults.faultlib import finish, read_topic, recloop, wait_for_worker, worker_settings
from tests.support import WorkerProcess

pytestmark = pytest.mark.kafka

SCENARIO = """\
name: replay-fidelity
seed: 5
stages: [{kind: constant, rate: 8, duration: 8s}]
population: {size: 300, source: world, world: {users: 300, items: 100, seed: 2}}
user: {patience: 2s, think_time: 0.2s, max_steps: 8}
recommendation_timeout: 2s
"""

SEND_TIME_MEDIAN = 0.02
SEND_TIME_MAX = 0.3
"""Seconds a replayed event may leave away from its planned send time (median, worst): the
machine is shared, so the worst case allows for a descheduled process."""


@dataclass
class Recorded:
    settings: Settings
    path: Path
    events: dict[str, UserEvent]
    record_ms: dict[str, int]
    per_user: dict[str, list[str]]


@pytest.fixture(scope="module")
def recorded(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    tmp = tmp_path_factory.mktemp("fidelity")
    settings = worker_settings(kafka.bootstrap, tmp, "fid")
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings).start()
    try:
        wait_for_worker(worker)
        scenario = tmp / "scenario.yaml"
        scenario.write_text(SCENARIO)
        log = tmp / "sim.log"
        sim = recloop(
            [
                "simulate",
                str(scenario),
                "--no-live",
                "--out",
                str(tmp / "report"),
                "--run-id",
                "fid",
                "--metrics-port",
                "0",
            ],
            settings,
            log,
        )
        code, out = finish(sim, log, 90)
        assert code == 0, out[-3000:]
    finally:
        worker.stop()
    path = tmp / "run.rec.zst"
    trailer = asyncio.run(record(settings, [settings.topics.events], path, Bounds()))
    assert trailer.stopped_by == "end_offsets"
    loaded = load_recording(path, strict=True)
    events: dict[str, UserEvent] = {}
    record_ms: dict[str, int] = {}
    per_user: dict[str, list[str]] = defaultdict(list)
    for row in loaded.rows:  # file order: each partition in offset order
        assert row.event is not None
        events[row.event.event_id] = row.event
        record_ms[row.event.event_id] = round(row.time * 1000)
        per_user[row.event.user_id].append(row.event.event_id)
    # A real closed-loop run: many events over seconds, reactions to answers among them.
    assert len(events) == len(loaded.rows) > 200
    assert len(set(record_ms.values())) > 100
    assert (max(record_ms.values()) - min(record_ms.values())) / 1000 > 6
    assert {e.event_type.value for e in events.values()} >= {"session_start", "click", "leave"}
    yield Recorded(settings, path, events, record_ms, dict(per_user))


@pytest.mark.parametrize(
    ("mode", "speed"),
    [("keep", 4.0), ("shift", 1.0), ("scale", 2.0), ("scale", 8.0), ("scale", math.inf)],
    ids=["keep-4x", "shift-1x", "scale-2x", "scale-8x", "scale-max"],
)
def test_replay_equals_recording(recorded: Recorded, mode: str, speed: float) -> None:
    settings = recorded.settings
    label = "max" if math.isinf(speed) else f"{speed:g}x"
    topic = f"{settings.topics.events}.replay-{mode}-{label}"
    asyncio.run(ensure_topics(settings, extra=[topic]))
    plan = make_plan(load_recording(recorded.path, strict=True).rows, speed=speed)
    offsets = {r.event.event_id: o for r, o in zip(plan.rows, plan.offsets, strict=True) if r.event}
    options = Options(topic=topic, time_mode=mode, run_id=f"fid-{mode}-{label}")  # type: ignore[arg-type]
    started = time.time()
    result = asyncio.run(Replayer(settings, plan, options).run())
    assert result.sent == len(recorded.events) and result.failed == 0

    out = asyncio.run(read_topic(settings.bootstrap, topic))
    replayed: dict[str, UserEvent] = {}
    record_ms: dict[str, int] = {}
    per_user: dict[str, list[str]] = defaultdict(list)
    for r in out:  # partition, then offset order
        ev = decode_event(r.value)
        assert ev.event_id not in replayed, f"{ev.event_id} replayed twice"
        assert r.key == ev.user_id.encode()
        replayed[ev.event_id] = ev
        record_ms[ev.event_id] = r.timestamp_ms
        per_user[ev.user_id].append(ev.event_id)

    # The same events, the same values, each user's in the recorded order.
    assert set(replayed) == set(recorded.events)
    fields = ("user_id", "event_type", "item_id", "session_id", "request_id", "position", "value")
    for eid, orig in recorded.events.items():
        new = replayed[eid]
        assert [getattr(new, f) for f in fields] == [getattr(orig, f) for f in fields], eid
    assert per_user == recorded.per_user
    for ids in per_user.values():
        assert [replayed[i].seq for i in ids] == list(range(len(ids)))

    # Send times follow the recording's spacing / speed (one unknown start, estimated).
    produced = {i: e.produce_time for i, e in replayed.items()}
    assert all(p is not None for p in produced.values())
    if math.isinf(speed):
        assert max(produced.values()) - min(produced.values()) < plan.original_span / 10  # type: ignore[type-var,operator]
    else:
        start = statistics.median(produced[i] - offsets[i] for i in produced)  # type: ignore[operator]
        off = [abs(produced[i] - offsets[i] - start) for i in produced]  # type: ignore[operator]
        assert statistics.median(off) < SEND_TIME_MEDIAN, statistics.median(off)
        assert max(off) < SEND_TIME_MAX, max(off)
        assert plan.span == pytest.approx(plan.original_span / speed)

    # Timestamps follow the mode.
    orig_t = {i: e.event_time for i, e in recorded.events.items()}
    new_t = {i: e.event_time for i, e in replayed.items()}
    if mode == "keep":
        assert new_t == orig_t
        # Record timestamps are whole milliseconds: allow the float round trip's 1 ms.
        assert all(abs(record_ms[i] - recorded.record_ms[i]) <= 1 for i in record_ms)
    elif mode == "shift":
        moved = {round(new_t[i] - orig_t[i], 4) for i in new_t}
        assert len(moved) == 1, sorted(moved)[:5]
        ms_moved = {record_ms[i] - recorded.record_ms[i] for i in record_ms}
        assert max(ms_moved) - min(ms_moved) <= 1
        # Shifted so the stream starts when the replay started.
        assert abs(min(new_t.values()) - started) < 5
    else:
        for i in new_t:
            assert abs(record_ms[i] - new_t[i] * 1000) <= 1, i
            # scale: the intended send time; as fast as possible, the send time itself.
            assert abs(new_t[i] - produced[i]) < SEND_TIME_MAX, i  # type: ignore[operator]
        if not math.isinf(speed):
            first = min(new_t, key=lambda i: offsets[i])
            for i in new_t:
                assert new_t[i] - new_t[first] == pytest.approx(
                    offsets[i] - offsets[first], abs=1e-3
                )

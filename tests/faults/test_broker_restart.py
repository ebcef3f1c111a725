"""Fault: the Kafka broker is SIGKILLed mid-run and restarted on the same log dirs and port.

Guarantee: the worker, `recloop simulate`, `recloop record` and `recloop replay --measure`
all survive (none exits with an error), reconnect, and account for every event by event id:

* simulator: every event it counted as sent is on the events topic, or counted as a send
  error; every request it made is answered, or counted as a timeout (summary counts);
* worker: every triggering event on the events topic (simulated and replayed) has a
  recommendation with its event id;
* record: the recording holds exactly the event ids on the events topic;
* replay: every row it sent is on the topic (or counted as failed), and its answered count
  equals the answers on the recommendations topic for its event ids.

Runs on its own Apache Kafka broker (it is killed), not the session's shared one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop.brokers import ApacheKafkaBroker
from recloop.core.contract import decode_event
from recloop.core.topics import ensure_topics
from recloop.simulator.replay.recording import read_recording
from tests.faults.faultlib import (
    TRIGGERS,
    answered_ids,
    events_on,
    finish,
    recloop,
    summary,
    wait_for_worker,
    worker_settings,
)
from tests.support import WorkerProcess, require_tool, write_replay_log

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.fault]

SIM_SECONDS = 40
KILL_AT = 12.0
"""Seconds into the simulation when the broker is killed."""
DOWN_SECONDS = 5.0
"""How long the broker stays dead before it is restarted."""

SCENARIO = """\
name: broker-restart
seed: 3
stages: [{kind: constant, rate: 4, duration: %(seconds)ss}]
population: {size: 300, source: world, world: {users: 300, items: 100, seed: 1}}
user: {patience: 20s, think_time: 0.3s, max_steps: 6}
recommendation_timeout: 20s
"""


@pytest.fixture
def own_kafka() -> Iterator[ApacheKafkaBroker]:
    require_tool("java")
    require_tool("mvn")
    broker = ApacheKafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_sigkill_and_restart_loses_no_event(
    own_kafka: ApacheKafkaBroker, tmp_path: Path
) -> None:
    settings = worker_settings(own_kafka.bootstrap, tmp_path, "brk")
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess(settings).start()
    procs = []
    try:
        wait_for_worker(worker)
        scenario = tmp_path / "scenario.yaml"
        scenario.write_text(SCENARIO % {"seconds": SIM_SECONDS})
        report = tmp_path / "report"
        sim_log, rec_log, rep_log = (tmp_path / f"{n}.log" for n in ("sim", "record", "replay"))
        recording = tmp_path / "events.rec.zst"
        sim = recloop(
            [
                "simulate",
                str(scenario),
                "--no-live",
                "--out",
                str(report),
                "--run-id",
                "brk",
                "--metrics-port",
                "0",
            ],
            settings,
            sim_log,
        )
        rec = recloop(
            [
                "record",
                str(recording),
                "--topic",
                settings.topics.events,
                "--follow",
                "--max-seconds",
                str(SIM_SECONDS + 35),
            ],
            settings,
            rec_log,
        )
        log = write_replay_log(
            tmp_path / "replay.jsonl", int((SIM_SECONDS - 10) * 5), 20, 5.0, "rp"
        )
        rep = recloop(
            [
                "replay",
                f"jsonl:{log}",
                "--timestamps",
                "shift",
                "--measure",
                "--wait",
                "30",
                "--run-id",
                "brk-replay",
            ],
            settings,
            rep_log,
        )
        procs = [sim, rec, rep]
        time.sleep(KILL_AT)
        assert all(p.poll() is None for p in procs), "a process ended before the fault"
        own_kafka.kill()
        time.sleep(DOWN_SECONDS)
        own_kafka.restart()

        code, out = finish(sim, sim_log, SIM_SECONDS + 90)
        assert code == 0, f"simulate exited {code}:\n{out[-3000:]}"
        code, rep_out = finish(rep, rep_log, 120)
        assert code == 0, f"replay exited {code}:\n{rep_out[-3000:]}"
        code, out = finish(rec, rec_log, 120)
        assert code == 0, f"record exited {code}:\n{out[-3000:]}"
        time.sleep(5)  # the worker answers what it consumed last
        assert worker.alive(), f"worker died:\n{worker.log()[-3000:]}"

        events = events_on(own_kafka.bootstrap, settings.topics.events)
        answered = answered_ids(own_kafka.bootstrap, settings.topics.recommendations)

        # Worker: every triggering event on the topic is answered, by event id.
        triggers = {i for i, e in events.items() if e.event_type.value in TRIGGERS}
        unanswered = sorted(triggers - answered)
        assert not unanswered, f"{len(unanswered)} triggers never answered: {unanswered[:10]}"

        # Simulator: sent = on the topic + send errors; requests = answered + timeouts.
        counts = summary(report)["counts"]
        sim_ids = {i for i in events if i.startswith("brk-0-")}  # <run id>-<shard>-<n>
        assert counts["events_sent"] == len(sim_ids) + counts["send_errors"], counts
        assert counts["requests"] == (
            counts["recommendations"] + counts["timeouts"] - counts["late_recommendations"]
        ), counts
        assert counts["events_sent"] > SIM_SECONDS * 4, counts

        # Record: exactly the event ids on the topic (duplicates from retries count once).
        recorded = {
            decode_event(r.value_bytes() or b"").event_id
            for _, r in read_recording(recording, strict=True)
        }
        assert recorded == set(events), (
            f"missing {sorted(set(events) - recorded)[:10]}, extra {sorted(recorded - set(events))[:10]}"
        )

        # Replay: sent rows on the topic; its answered count matches the topic's answers.
        sent = int(re.search(r"sent (\d+) events", rep_out).group(1))  # type: ignore[union-attr]
        got, expected = map(int, re.search(r"recommendations (\d+)/(\d+)", rep_out).groups())  # type: ignore[union-attr]
        replay_ids = set(events) - sim_ids
        assert sent == len(replay_ids), rep_out
        replay_triggers = {i for i in replay_ids if i in triggers}
        assert expected == len(replay_triggers)
        assert got == len(replay_triggers & answered) == expected, rep_out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        worker.stop()

"""Replayed and simulated users in one scenario, against a real worker on both brokers."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from recloop.core.contract import decode_event, encode
from recloop.core.topics import ensure_topics
from recloop.processes import wait_for_recommender
from recloop.simulator.replay.recording import Header, Record, RecordingWriter
from recloop.simulator.report import Summary, summarise, write_report
from recloop.simulator.runner import Simulation
from recloop.simulator.scenario import scenario_from_dict
from tests.conftest import Broker
from tests.simulator.conftest import WORLD
from tests.simulator.test_closed_loop import worker_settings
from tests.support import WorkerProcess, collect, make_events

pytestmark = pytest.mark.kafka

USERS, PER_USER = 6, 8
TRIGGERS_PER_USER = 5  # make_events: a session_start and 4 clicks (answered), 3 views


def write_recording(path: Path) -> dict[str, list[str]]:
    """A ~3 s recording of USERS users (ids `rec<n>`); returns each user's event ids in order."""
    rng = random.Random(11)
    base = 1_700_000_000.0
    stamped = []
    clock: dict[str, float] = {}
    for e in make_events(USERS, PER_USER, prefix="rec", item_space=300):
        t = clock.get(e.user_id, base + rng.uniform(0, 0.5)) + (0.35 if e.seq else 0.0)
        clock[e.user_id] = t
        stamped.append((t, e))
    stamped.sort(key=lambda p: p[0])
    order: dict[str, list[str]] = defaultdict(list)
    with RecordingWriter(path, Header(created=base, topics=["recorded.events"])) as writer:
        for i, (t, e) in enumerate(stamped):
            writer.write(
                Record.of("recorded.events", 0, i, int(t * 1000), e.user_id.encode(), encode(e))
            )
            order[e.user_id].append(e.event_id)
    return order


async def test_replayed_and_simulated_users_share_one_run(broker: Broker, tmp_path: Path) -> None:
    recorded = write_recording(tmp_path / "users.rec.zst")
    settings = worker_settings(broker, tmp_path, "random")
    sc = scenario_from_dict(
        {
            "name": "mixed",
            "seed": 5,
            "stages": [{"kind": "constant", "rate": 8, "duration": 6}],
            "population": {"size": 200, "source": "world", "world": WORLD},
            "user": {"patience": "3s", "think_time": "300ms"},
            "replay": {"path": str(tmp_path / "users.rec.zst"), "speed": 1, "start": "500ms"},
        }
    )
    await ensure_topics(settings)
    worker = WorkerProcess(settings).start()
    try:
        await wait_for_recommender(settings, timeout=60)
        sim = Simulation(sc, settings)
        result = await sim.run()
    finally:
        worker.stop()

    sim_counts = result.stats.counts
    assert result.replay_stats is not None
    rep = result.replay_stats.counts
    # Both kinds of users sent events and were answered, each counted on its own.
    assert sim_counts["sessions_started"] > 20 and sim_counts["recommendations"] > 20
    assert rep["events_sent"] == USERS * PER_USER
    assert rep["requests"] == USERS * TRIGGERS_PER_USER
    assert rep["recommendations"] == rep["requests"], worker.log()[-2000:]
    assert rep["unmatched_recommendations"] == 0 and sim_counts["unmatched_recommendations"] == 0
    assert rep["sessions_started"] == 0 and rep["clicks"] == 0  # replayed users do not react
    replay_figures = result.replay_stats.figures()
    assert result.replay_stats.latency.get_total_count() == rep["recommendations"]
    assert replay_figures["latency.p50"] >= replay_figures["actual_latency.p50"] > 0  # type: ignore[operator]
    assert replay_figures["schedule_lag.p99"] is not None
    # Metrics tell the sources apart.
    answered = REGISTRY.get_sample_value(
        "recloop_sim_recommendations_received_total",
        {"run_id": result.run_id, "source": "replay"},
    )
    assert answered == rep["recommendations"]

    # The report shows both, and the summary survives a JSON round trip.
    path = write_report(summarise(result, broker.kind), tmp_path / "report")
    assert "Replayed users" in path.read_text()
    summary = Summary.from_json((tmp_path / "report" / "summary.json").read_text())
    assert summary.replay is not None
    assert summary.replay["counts"]["events_sent"] == USERS * PER_USER
    assert summary.counts["events_sent"] == sim_counts["events_sent"]

    # On the topic, every replayed user's events are in recorded order with increasing seq.
    values = await collect(
        broker.bootstrap,
        settings.topics.events,
        lambda vs: len(vs) >= sim_counts["events_sent"] + rep["events_sent"],
        timeout=20,
    )
    replayed: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for v in values:
        e = decode_event(v)
        if e.user_id.startswith("rec"):
            replayed[e.user_id].append((e.event_id.split("~", 1)[1], e.seq))
    assert set(replayed) == set(recorded)
    for user, events in replayed.items():
        assert [eid for eid, _ in events] == recorded[user], user
        seqs = [s for _, s in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), user
    dead = await collect(broker.bootstrap, settings.topics.dead_letters, lambda vs: False, 2)
    assert dead == [], "nothing may be dead-lettered (seq order, schema)"

"""Runs on the embedded broker: abort on breach, sharded processes merging, Prometheus series."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from recloop.core.topics import ensure_topics
from recloop.simulator.population import Shard
from recloop.simulator.report import Summary, merge_summaries, summarise, write_report
from recloop.simulator.runner import Simulation
from recloop.simulator.scenario import scenario_from_dict
from tests.conftest import Broker
from tests.simulator.conftest import WORLD
from tests.simulator.test_closed_loop import worker_settings
from tests.support import WorkerProcess

pytestmark = pytest.mark.kafka


async def test_abort_on_breach_stops_the_run_early(tansu: Broker, tmp_path: Path) -> None:
    settings = worker_settings(tansu, tmp_path, "random")  # no worker started: nobody answers
    await ensure_topics(settings)
    sc = scenario_from_dict(
        {
            "stages": [{"kind": "constant", "rate": 20, "duration": 60}],
            "population": {"size": 300, "world": WORLD},
            "user": {"patience": "300ms"},
            "thresholds": ["abandonment < 1%"],
            "abort_on_breach": True,
        }
    )
    started = time.monotonic()
    result = await Simulation(sc, settings).run()
    assert time.monotonic() - started < 15
    assert result.aborted and not result.passed
    assert result.stats.counts["timeouts"] > 0
    assert result.stats.ended_by.get("abandoned", 0) > 0


async def test_sharded_processes_split_users_and_merge(tansu: Broker, tmp_path: Path) -> None:
    settings = worker_settings(tansu, tmp_path, "random")
    await ensure_topics(settings)
    sc = scenario_from_dict(
        {
            "seed": 9,
            "stages": [{"kind": "constant", "rate": 16, "duration": 8}],
            "population": {"size": 400, "world": WORLD},
            "user": {"patience": "3s", "think_time": "300ms"},
            "thresholds": ["p99 latency < 60s"],
        }
    )
    worker = WorkerProcess(settings).start()
    try:
        from recloop.processes import wait_for_recommender

        await wait_for_recommender(settings, timeout=90)
        sims = [Simulation(sc, settings, shard=Shard(i, 2), run_id="shared") for i in range(2)]
        results = await asyncio.gather(*(s.run() for s in sims))
    finally:
        worker.stop()
    users = [set(s.engine.by_id) for s in sims]
    assert not users[0] & users[1] and len(users[0] | users[1]) == 400
    for r in results:
        c = r.stats.counts
        assert c["recommendations"] > 20 and c["unmatched_recommendations"] == 0
        # Every simulated user's answer reached the process that simulates it.
        sample = REGISTRY.get_sample_value(
            "recloop_sim_recommendations_received_total", {"run_id": "shared", "source": "sim"}
        )
        assert sample is not None and sample >= c["recommendations"]
    parts = []
    for i, r in enumerate(results):
        write_report(summarise(r, tansu.kind), tmp_path / f"s{i}")
        parts.append(Summary.from_json((tmp_path / f"s{i}" / "summary.json").read_text()))
    merged = merge_summaries(parts)
    total = sum(r.stats.counts["recommendations"] for r in results)
    assert merged.counts["recommendations"] == total
    assert merged.shards == ["0/2", "1/2"]
    lat = sum(r.stats.latency.get_total_count() for r in results)
    from recloop.simulator.stats import RunStats

    assert RunStats.from_dict(merged.stats).latency.get_total_count() == lat
    assert merged.passed

"""Soak (opt-in: `pytest -m slow`): minutes of steady load on real Apache Kafka.

A worker and the simulator run a soak stage for `RECLOOP_SOAK_SECONDS` (default 180 s). Over
that time the loop must stay healthy: every request answered, nothing unmatched or
dead-lettered, latency and worker memory flat rather than creeping up.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from recloop.core.topics import ensure_topics
from recloop.processes import wait_for_recommender
from recloop.simulator.runner import Simulation
from recloop.simulator.stats import Second
from tests.conftest import Broker
from tests.simulator.test_closed_loop import scenario, worker_settings
from tests.support import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.fault]

SOAK_SECONDS = float(os.environ.get("RECLOOP_SOAK_SECONDS", "180"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _p99(second: Second) -> float | None:
    h = second.latency
    return h.get_value_at_percentile(99) / 1e6 if h.get_total_count() else None


async def test_soak_stays_healthy(kafka: Broker, tmp_path: Path) -> None:
    settings = worker_settings(kafka, tmp_path, "random")
    sc = scenario(SOAK_SECONDS, 20, thresholds=["p99 latency < 2s", "abandonment < 2%"])
    await ensure_topics(settings)
    worker = WorkerProcess(settings).start()
    rss: list[int] = []
    try:
        await wait_for_recommender(settings, timeout=90)
        run = asyncio.create_task(Simulation(sc, settings).run())  # type: ignore[arg-type]
        while not run.done():
            assert worker.proc is not None and worker.alive(), worker.log()[-3000:]
            rss.append(_rss_kib(worker.proc.pid))
            await asyncio.wait([run], timeout=5)
        result = run.result()
    finally:
        worker.stop()
    c, f = result.stats.counts, result.stats.figures()
    assert c["recommendations"] > SOAK_SECONDS * 20, c
    assert c["unmatched_recommendations"] == 0 and c["send_errors"] == 0, c
    assert result.passed, [str(v) for v in result.verdicts]
    p99s = [p for p in map(_p99, result.stats.timeline[5:-5]) if p is not None]
    half = len(p99s) // 2
    first, second = max(p99s[:half]), max(p99s[half:])
    assert second < max(3 * first, 0.2), (first, second)  # latency does not creep up
    growth = rss[-1] - rss[len(rss) // 3]
    assert growth < 100 * 1024, f"worker RSS grew {growth} KiB during the soak: {rss}"
    print(f"soak {SOAK_SECONDS:.0f}s: {c['recommendations']} answers, p99 {f['latency.p99']}s")

"""Closed loop on real brokers: simulated users react to a real `recloop worker`'s slates."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recloop.core.settings import Settings, WorkerConfig
from recloop.core.topics import ensure_topics
from recloop.processes import wait_for_recommender
from recloop.simulator.report import summarise, write_report
from recloop.simulator.runner import RunResult, Simulation
from recloop.simulator.scenario import scenario_from_dict
from tests.conftest import Broker
from tests.simulator.conftest import WORLD
from tests.support import ROOT, WorkerProcess, unique_topics

pytestmark = pytest.mark.kafka


def worker_settings(
    broker: Broker, tmp_path: Path, strategy: str, model_dir: Path | None = None, delay: float = 0
) -> Settings:
    topics = unique_topics(f"sim-{strategy}")
    return Settings(
        bootstrap=broker.bootstrap,
        topics=topics,
        worker=WorkerConfig(
            app_id=f"w-{topics.events}",
            strategy=strategy,
            model_dir=model_dir or tmp_path / "no-models",
            data_dir=tmp_path / f"worker-{strategy}",
            metrics_port=0,
            inject_delay_seconds=delay,
        ),
    )


def scenario(seconds: float, rate: float, **extra: object) -> object:
    return scenario_from_dict(
        {
            "name": "test",
            "seed": 3,
            "stages": [{"kind": "constant", "rate": rate, "duration": seconds}],
            "population": {"size": 400, "source": "world", "world": WORLD},
            "user": {"patience": "3s", "think_time": "300ms", "return_after": "2s"},
            **extra,
        }
    )


async def closed_loop(settings: Settings, sc: object) -> RunResult:
    await ensure_topics(settings)
    worker = WorkerProcess(settings).start()
    try:
        await wait_for_recommender(settings, timeout=90)
        return await Simulation(sc, settings).run()  # type: ignore[arg-type]
    finally:
        worker.stop()


async def test_closed_loop_users_react_to_the_workers_slates(
    broker: Broker, tmp_path: Path
) -> None:
    settings = worker_settings(broker, tmp_path, "random")
    result = await closed_loop(settings, scenario(10, 12, thresholds=["p99 latency < 30s"]))
    c, f = result.stats.counts, result.stats.figures()
    assert c["sessions_started"] > 60
    assert c["recommendations"] > 100
    assert c["unmatched_recommendations"] == 0
    assert c["impressions"] >= 10 * c["recommendations"] * 0.5  # some answer a last click
    assert c["clicks"] > 0 and 0 < f["ctr"] < 0.5  # type: ignore[operator]
    # Latency from the intended time can only be >= latency from the actual send time.
    assert f["latency.p50"] >= f["actual_latency.p50"]  # type: ignore[operator]
    assert result.recommender["strategy"] == "random"
    assert f["coverage"] and f["hit_rate"] is not None
    path = write_report(summarise(result, broker.kind), tmp_path / "report")
    text = path.read_text()
    assert "RecLoopCharts.renderAll" in text and "Latency CDF" in text and result.run_id in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["counts"]["recommendations"] == c["recommendations"]


async def test_transformer_gets_higher_online_ctr_than_random(
    tansu: Broker, tmp_path: Path, trained_models: Path
) -> None:
    results = {}
    for strategy in ("random", "onnx"):
        settings = worker_settings(tansu, tmp_path, strategy, trained_models)
        results[strategy] = await closed_loop(settings, scenario(15, 15))
    ctr = {k: r.stats.figures()["ctr"] for k, r in results.items()}
    hits = {k: r.stats.figures()["hit_rate"] for k, r in results.items()}
    print(f"online CTR {ctr}, hit rate {hits}")
    assert results["onnx"].recommender["strategy"] == "onnx"
    assert ctr["onnx"] > ctr["random"] * 1.2, ctr  # type: ignore[operator]


def test_slow_recommender_breaches_thresholds_and_exits_non_zero(
    tansu: Broker, tmp_path: Path
) -> None:
    settings = worker_settings(tansu, tmp_path, "random", delay=0.8)
    asyncio.run(ensure_topics(settings))
    (tmp_path / "slow.yaml").write_text(
        f"""
name: slow
seed: 4
stages: [{{kind: constant, rate: 15, duration: 12s}}]
population: {{size: 400, source: world, world: {{users: 500, items: 300, seed: 0}}}}
user: {{patience: 1s, think_time: 300ms}}
topics: {{events: {settings.topics.events}, recommendations: {settings.topics.recommendations}}}
thresholds: ["p99 latency < 200ms", "abandonment < 5%"]
"""
    )
    worker = WorkerProcess(settings).start()
    try:
        asyncio.run(wait_for_recommender(settings, timeout=90))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "recloop",
                "simulate",
                str(tmp_path / "slow.yaml"),
                "--bootstrap",
                tansu.bootstrap,
                "--no-live",
                "--metrics-port",
                "0",
                "--out",
                str(tmp_path / "slow"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        worker.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "✗ p99 latency < 200ms" in proc.stdout
    summary = json.loads((tmp_path / "slow" / "summary.json").read_text())
    assert summary["figures"]["abandonment"] > 0.05
    assert summary["counts"]["timeouts"] > 0
    # Corrected latency grows as requests queue behind the slow batches.
    from recloop.simulator.stats import RunStats

    timeline = RunStats.from_dict(summary["stats"]).timeline
    p50 = [s.latency.get_value_at_percentile(50) for s in timeline if s.latency.get_total_count()]
    assert len(p50) >= 6
    third = len(p50) // 3
    assert sum(p50[-third:]) / third > sum(p50[:third]) / third
    print(
        "slow run:",
        {k: summary["figures"][k] for k in ("latency.p50", "latency.p99", "abandonment")},
    )

"""Learned users in a closed loop on real Apache Kafka: users drawn from the user generator
trained on MovieLens react through the trained LSTM behaviour model to a real worker's slates.
Same scenario and seed, the worker switched between strategies: the transformer's simulated
CTR must be above most-popular's and random's (issue 14; models/README.md has the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.simulator.runner import RunResult
from recloop.simulator.scenario import Scenario, scenario_from_dict
from tests.conftest import Broker
from tests.simulator.test_closed_loop import closed_loop, worker_settings

# Slow (make test-all): three closed-loop runs take about 2.5 minutes, and the MovieLens session
# fixture may train inside this test's timeout (several minutes under load). The default suite
# checks the parts: test_fidelity (in-process learned users rank the transformer far above
# random) and tests/simulator/test_learned_reactions.py (batched reactions, history views).
pytestmark = [pytest.mark.train, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(1800)]

STRATEGIES = ("onnx", "popular", "random")
"""The worker's transformer, most popular and random strategies, in this order."""


def learned_users(model_dir: Path) -> Scenario:
    """simulator/scenarios/movielens.yaml's users and load, shortened, on `model_dir`."""
    return scenario_from_dict(
        {
            "name": "learned-users",
            "seed": 7,
            "population": {"size": 1000, "source": "model", "model_dir": str(model_dir)},
            "user": {"patience": "3s", "think_time": "300ms", "return_after": "5s"},
            "stages": [{"kind": "constant", "rate": 10, "duration": 20}],
        }
    )


async def test_learned_users_rank_the_transformer_above_popular_and_random(
    kafka: Broker, movielens_models, tmp_path: Path
) -> None:
    results: dict[str, RunResult] = {}
    for strategy in STRATEGIES:
        settings = worker_settings(kafka, tmp_path, strategy, movielens_models.path)
        results[strategy] = await closed_loop(settings, learned_users(movielens_models.path))
    figures = {k: r.stats.figures() for k, r in results.items()}
    ctr = {k: f["ctr"] for k, f in figures.items()}
    print(
        "learned users on Kafka:",
        {
            k: {n: f[n] for n in ("ctr", "conversion", "hit_rate", "abandonment")}
            for k, f in figures.items()
        },
        {k: r.stats.counts["impressions"] for k, r in results.items()},
    )
    for strategy, result in results.items():
        assert result.recommender["strategy"] == strategy
        assert result.versions["population"] == movielens_models.card.version
        assert result.stats.counts["impressions"] > 2000, (strategy, result.stats.counts)
    assert ctr["onnx"] > ctr["popular"] and ctr["onnx"] > ctr["random"], ctr  # type: ignore[operator]

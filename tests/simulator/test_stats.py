"""Stats: honest percentiles, exact merging across processes, serialisation, quality figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recloop.simulator.stats import RunStats, gini


def filled(seed: int, n: int = 2000) -> RunStats:
    rng = np.random.default_rng(seed)
    s = RunStats(n_items=10, exposure=np.zeros(10, np.int64))
    for i in range(n):
        lat = float(rng.exponential(0.02))
        s.count("requests", i / 500)
        s.record_latency(i / 500, lat + 0.001, lat)
    s.count("impressions", 0, 100)
    s.count("clicks", 0, 7)
    s.expose(np.array([1, 1, 2, 3]))
    return s


def test_merge_equals_recording_everything_in_one() -> None:
    a, b = filled(1), filled(2)
    both = filled(1)
    rng = np.random.default_rng(2)
    for i in range(2000):
        lat = float(rng.exponential(0.02))
        both.count("requests", i / 500)
        both.record_latency(i / 500, lat + 0.001, lat)
    both.count("impressions", 0, 100)
    both.count("clicks", 0, 7)
    both.expose(np.array([1, 1, 2, 3]))
    merged = RunStats.from_dict(a.to_dict()).merge(RunStats.from_dict(b.to_dict()))
    fm, fb = merged.figures(), both.figures()
    for key in ("latency.p50", "latency.p99", "latency.max", "actual_latency.p99", "ctr", "gini"):
        assert fm[key] == pytest.approx(fb[key]), key
    assert merged.counts["requests"] == 4000
    assert len(merged.timeline) == len(a.timeline)
    assert merged.exposure.tolist() == (a.exposure * 2).tolist()


def test_unanswered_requests_make_high_percentiles_infinite() -> None:
    s = filled(3, 1000)
    s.counts["requests"] += 50  # 5% never answered
    f = s.figures()
    assert math.isinf(f["latency.p99"])
    assert f["latency.p50"] is not None and math.isfinite(f["latency.p50"])


def test_gini() -> None:
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 100])) == pytest.approx(0.75)

"""Threshold expressions parse to the right figure, unit and limit, and evaluate."""

from __future__ import annotations

import math

import pytest

from recloop.simulator.thresholds import ThresholdError, evaluate, parse_threshold


@pytest.mark.parametrize(
    ("text", "key", "op", "limit"),
    [
        ("p99 latency < 100ms", "latency.p99", "<", 0.1),
        ("p99.9 actual_latency <= 1s", "actual_latency.p99.9", "<=", 1.0),
        ("abandonment < 1%", "abandonment", "<", 0.01),
        ("ctr > 0.05", "ctr", ">", 0.05),
        ("mean session_depth >= 2", "session_depth", ">=", 2.0),
    ],
)
def test_parse(text: str, key: str, op: str, limit: float) -> None:
    t = parse_threshold(text)
    assert (t.key, t.op) == (key, op)
    assert t.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency < 100ms", "needs a statistic"),
        ("p99 latency < 5%", "ms or s"),
        ("ctr > 5ms", "not a duration"),
        ("p99 ctr > 0.1", "no percentile"),
        ("p75 latency < 1s", "allowed values: p50"),
        ("speed > 3", "unknown metric"),
        ("latency is fast", "cannot parse"),
    ],
)
def test_bad_expressions(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_threshold(text)


def test_evaluate() -> None:
    ts = [parse_threshold("p99 latency < 100ms"), parse_threshold("ctr > 0.05")]
    ok = evaluate(ts, {"latency.p99": 0.05, "ctr": 0.1})
    assert all(v.passed for v in ok)
    bad = evaluate(ts, {"latency.p99": math.inf, "ctr": 0.01})
    assert not any(v.passed for v in bad)
    # While running, a figure not measured yet is not a breach; at the end it is.
    assert evaluate(ts, {}, final=False)[1].passed
    assert not evaluate(ts, {}, final=True)[1].passed

"""k6-style pass/fail thresholds: `p99 latency < 100ms`, `abandonment < 1%`, `ctr > 0.05`.

Grammar: `[pNN|mean|max] METRIC OP VALUE[unit]`. Latency metrics need a statistic
(`p50`, `p99`, `p99.9`, `mean`, `max`) and take `ms`/`s` units; ratio metrics take a plain
number or a percentage. Latency is the corrected latency (from the intended send time) unless
the metric is `actual_latency`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from recloop.core.errors import InvalidInputError


class ThresholdError(InvalidInputError, ValueError):
    """A threshold expression could not be parsed; the message shows the accepted forms."""


LATENCY_METRICS = ("latency", "actual_latency", "schedule_lag")
RATIO_METRICS = (
    "abandonment",
    "timeout_rate",
    "ctr",
    "conversion",
    "return_rate",
    "late_send_rate",
    "error_rate",
    "coverage",
    "hit_rate",
)
LATENCY_STATS = ("p50", "p90", "p95", "p99", "p99.9", "mean", "max")
OTHER_METRICS = ("session_depth", "achieved_rate")
METRICS = LATENCY_METRICS + RATIO_METRICS + OTHER_METRICS

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_EXPR = re.compile(
    r"^\s*(?:(?P<stat>p\d+(?:\.\d+)?|mean|max)\s+)?(?P<metric>[a-z_]+)\s*"
    r"(?P<op><=|>=|<|>)\s*(?P<value>[0-9]*\.?[0-9]+)\s*(?P<unit>ms|s|%)?\s*$"
)
FORMS = "'p99 latency < 100ms', 'abandonment < 1%', 'ctr > 0.05', 'mean session_depth > 2'"


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold: `key` names the figure it checks (e.g. `latency.p99`)."""

    text: str
    key: str
    op: str
    limit: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A threshold checked against a run's figures."""

    threshold: str
    key: str
    value: float | None
    limit: float
    passed: bool


def figure_key(stat: str | None, metric: str, text: str, what: str = "threshold") -> str:
    """The figure `[stat] metric` names (`latency.p99`, `ctr`); raises `ThresholdError` naming
    the allowed values. `what` and `text` say where it was written (a threshold, a gate)."""
    if metric not in METRICS:
        raise ThresholdError(
            f"{what} {text!r}: unknown metric {metric!r}; allowed values: {', '.join(METRICS)}"
        )
    if metric in LATENCY_METRICS:
        if stat is None:
            raise ThresholdError(
                f"{what} {text!r}: {metric} needs a statistic (p50, p90, p99, p99.9, mean, max)"
            )
        if stat not in LATENCY_STATS:
            raise ThresholdError(
                f"{what} {text!r}: statistic {stat!r} not kept; allowed values: "
                + ", ".join(LATENCY_STATS)
            )
        return f"{metric}.{stat}"
    if stat not in (None, "mean"):
        raise ThresholdError(f"{what} {text!r}: {metric} takes no percentile")
    return metric


def parse_threshold(text: str) -> Threshold:
    """Parse one expression; raises `ThresholdError` naming the allowed metrics and forms."""
    m = _EXPR.match(text.lower())
    if not m:
        raise ThresholdError(f"cannot parse threshold {text!r}; write it like {FORMS}")
    stat, metric, op, unit = m["stat"], m["metric"], m["op"], m["unit"]
    value = float(m["value"])
    key = figure_key(stat, metric, text)
    if metric in LATENCY_METRICS:
        if unit == "%":
            raise ThresholdError(f"threshold {text!r}: {metric} takes ms or s, not %")
        limit = value / 1000 if unit == "ms" else value
        return Threshold(text, key, op, limit)
    if unit in ("ms", "s"):
        raise ThresholdError(f"threshold {text!r}: {metric} is not a duration; drop {unit!r}")
    return Threshold(text, key, op, value / 100 if unit == "%" else value)


def evaluate(
    thresholds: list[Threshold], figures: Mapping[str, float | None], *, final: bool = True
) -> list[Verdict]:
    """Check every threshold; a figure that is missing passes until the run is over."""
    out = []
    for t in thresholds:
        value = figures.get(t.key)
        passed = (not final) if value is None else t.holds(value)
        out.append(Verdict(t.text, t.key, value, t.limit, passed))
    return out


def unit_of(key: str) -> Literal["ms", "%", ""]:
    """How a figure named `key` is written for people: latencies in ms, ratios in %."""
    metric = key.split(".", 1)[0]
    if metric in LATENCY_METRICS:
        return "ms"
    return "%" if metric in RATIO_METRICS else ""

"""What a run measured: latency histograms, counters, a per-second timeline, exposure counts.

Latency is kept twice, in microseconds, in HdrHistograms: from the event's *intended* send time
(corrected for coordinated omission: a stalled recommender or a late simulator shows up) and
from its *actual* send time. `RunStats.to_dict` / `from_dict` / `merge` let several simulator
processes that split one run's users combine their figures exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

_MAX_US = 3_600_000_000


def new_histogram(digits: int = 3) -> HdrHistogram:
    """A 1 µs .. 1 h histogram."""
    return HdrHistogram(1, _MAX_US, digits)


def _encode(h: HdrHistogram) -> str:
    return h.encode().decode()


def _decode(text: str) -> HdrHistogram:
    h = new_histogram()
    if text:
        h.decode_and_add(text.encode())
    return h


def us(seconds: float) -> int:
    """Clamp a duration in seconds to a recordable microsecond value."""
    return min(_MAX_US, max(1, int(seconds * 1e6)))


def record(h: HdrHistogram, value: int) -> None:
    """`h.record_value(value)` for a value >= 1, with hdrh's own index arithmetic in one
    function (hdrh makes five calls per value): the pacer records every send."""
    if value > h.highest_trackable_value:
        h.record_value(value)  # out of range: hdrh ignores it
        return
    unit = h.unit_magnitude
    bucket = (value | h.sub_bucket_mask).bit_length() - unit - h.sub_bucket_half_count_magnitude - 1
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (
        (value >> (bucket + unit)) - h.sub_bucket_half_count
    )
    h.counts[index] += 1
    h.total_count += 1
    if value < h.min_value:
        h.min_value = value
    if value > h.max_value:
        h.max_value = value


def percentile_values(h: HdrHistogram, percentiles: list[float]) -> dict[float, int]:
    """`h.get_percentile_to_value_dict(percentiles)`, the same values, with numpy: hdrh walks
    the whole counts array (23,552 slots) in Python, ~9 ms per histogram, which stalled the
    simulator's schedule twice a second; a cumulative sum and a search take ~0.1 ms."""
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    if h.encoder.payload.counts_len < len(counts):  # a decoded, truncated histogram
        counts = counts[: h.encoder.payload.counts_len]
    cum = np.cumsum(counts)
    out: dict[float, int] = {}
    for q in sorted(set(percentiles)):
        if q > 100:
            break
        index = int(np.searchsorted(cum, h.get_target_count_at_percentile(q)))
        if index >= len(cum):
            break
        value = h.get_value_from_index(index)
        out[q] = (
            h.get_highest_equivalent_value(value) if q else h.get_lowest_equivalent_value(value)
        )
    return out


PERCENTILES = (50, 90, 95, 99, 99.9)

COUNTERS = (
    "events_intended",
    "events_sent",
    "late_sends",
    "send_errors",
    "requests",
    "recommendations",
    "unmatched_recommendations",
    "late_recommendations",
    "timeouts",
    "impressions",
    "clicks",
    "purchases",
    "organic",
    "sessions_started",
    "sessions_ended",
    "abandoned",
    "returns",
    "hits",
    "hit_slates",
    "judged_slates",
)
"""Counters kept for the whole run and per second of the timeline."""


@dataclass(slots=True)
class Second:
    """One second of the run (by actual time since start)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency: HdrHistogram = field(default_factory=lambda: new_histogram(2))


@dataclass(slots=True)
class RunStats:
    """Everything one simulator process (or a merge of several) measured."""

    n_items: int = 0
    latency: HdrHistogram = field(default_factory=new_histogram)
    actual_latency: HdrHistogram = field(default_factory=new_histogram)
    schedule_lag: HdrHistogram = field(default_factory=new_histogram)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    ended_by: dict[str, int] = field(default_factory=dict)
    depth_sum: int = 0
    timeline: list[Second] = field(default_factory=list)
    exposure: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    novelty_sum: float = 0.0
    users_seen: int = 0
    users_returned: int = 0
    latency_sum: float = 0.0
    actual_latency_sum: float = 0.0
    """Sums in seconds, for means (HdrHistogram's own mean is slow in Python)."""

    def second(self, t: float) -> Second:
        i = int(t) if t > 0 else 0
        timeline = self.timeline
        if i < len(timeline):
            return timeline[i]
        while len(timeline) <= i:
            timeline.append(Second())
        return timeline[i]

    def count(self, name: str, t: float, n: int = 1) -> None:
        self.counts[name] += n
        i = int(t) if t > 0 else 0
        timeline = self.timeline
        if i >= len(timeline):
            self.second(t)
        timeline[i].counts[name] += n

    def record_latency(self, t: float, intended: float, actual: float) -> None:
        """Record one recommendation's latency (seconds) from intended and actual send times."""
        self.latency.record_value(us(intended))
        self.actual_latency.record_value(us(actual))
        self.latency_sum += intended
        self.actual_latency_sum += actual
        self.second(t).latency.record_value(us(intended))

    def expose(self, items: np.ndarray) -> None:
        """Count recommended item indices (for coverage and Gini of exposure)."""
        items = items[(items >= 0) & (items < len(self.exposure))]
        np.add.at(self.exposure, items, 1)

    # -- derived figures -------------------------------------------------------------------

    def figures(self) -> dict[str, float | None]:
        """Named figures for thresholds and the summary (None where nothing was measured)."""
        c = self.counts
        f: dict[str, float | None] = {}
        for name, h in (
            ("latency", self.latency),
            ("actual_latency", self.actual_latency),
            ("schedule_lag", self.schedule_lag),
        ):
            n = h.get_total_count()
            # One pass over the buckets for all percentiles (each pass is pure Python).
            values = percentile_values(h, list(PERCENTILES)) if n else {}
            for q in PERCENTILES:
                f[f"{name}.p{q:g}"] = values[q] / 1e6 if n else None
            f[f"{name}.max"] = h.get_max_value() / 1e6 if n else None
        n = self.latency.get_total_count()
        f["latency.mean"] = self.latency_sum / n if n else None
        f["actual_latency.mean"] = self.actual_latency_sum / n if n else None
        # A request that was never answered has a latency of at least its timeout: make it
        # count in the percentile as "infinite" by treating timeouts as the slowest answers.
        answered = self.latency.get_total_count()
        unanswered = max(0, c["requests"] - answered)
        if unanswered and c["requests"]:
            for q in PERCENTILES:
                if (1 - q / 100) * c["requests"] < unanswered:
                    f[f"latency.p{q:g}"] = math.inf
            f["latency.max"] = math.inf
        started = c["sessions_started"]
        f["abandonment"] = c["abandoned"] / started if started else None
        f["timeout_rate"] = c["timeouts"] / c["requests"] if c["requests"] else None
        f["ctr"] = c["clicks"] / c["impressions"] if c["impressions"] else None
        f["conversion"] = c["purchases"] / c["clicks"] if c["clicks"] else None
        f["return_rate"] = self.users_returned / self.users_seen if self.users_seen else None
        f["late_send_rate"] = c["late_sends"] / c["events_sent"] if c["events_sent"] else None
        f["error_rate"] = c["send_errors"] / c["events_intended"] if c["events_intended"] else None
        ended = c["sessions_ended"]
        f["session_depth"] = self.depth_sum / ended if ended else None
        f["session_depth.mean"] = f["session_depth"]
        f["hit_rate"] = c["hit_slates"] / c["judged_slates"] if c["judged_slates"] else None
        f["coverage"] = (
            float((self.exposure > 0).mean()) if len(self.exposure) and c["impressions"] else None
        )
        f["gini"] = gini(self.exposure) if c["impressions"] else None
        f["novelty"] = self.novelty_sum / c["impressions"] if c["impressions"] else None
        seconds = len(self.timeline)
        f["achieved_rate"] = c["events_sent"] / seconds if seconds else None
        return f

    # -- merging and serialising -----------------------------------------------------------

    def merge(self, other: RunStats) -> RunStats:
        """Add `other`'s figures into this one (for processes that split one run)."""
        self.latency.add(other.latency)
        self.actual_latency.add(other.actual_latency)
        self.schedule_lag.add(other.schedule_lag)
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, v in other.ended_by.items():
            self.ended_by[k] = self.ended_by.get(k, 0) + v
        self.depth_sum += other.depth_sum
        for i, sec in enumerate(other.timeline):
            mine = self.second(i)
            for k, v in sec.counts.items():
                mine.counts[k] = mine.counts.get(k, 0) + v
            mine.latency.add(sec.latency)
        if len(other.exposure) > len(self.exposure):
            grown = np.zeros(len(other.exposure), np.int64)
            grown[: len(self.exposure)] = self.exposure
            self.exposure = grown
        self.exposure[: len(other.exposure)] += other.exposure
        self.novelty_sum += other.novelty_sum
        self.users_seen += other.users_seen
        self.users_returned += other.users_returned
        self.latency_sum += other.latency_sum
        self.actual_latency_sum += other.actual_latency_sum
        self.n_items = max(self.n_items, other.n_items)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (histograms as HdrHistogram's compressed base64 encoding)."""
        return {
            "n_items": self.n_items,
            "latency": _encode(self.latency),
            "actual_latency": _encode(self.actual_latency),
            "schedule_lag": _encode(self.schedule_lag),
            "counts": self.counts,
            "ended_by": self.ended_by,
            "depth_sum": self.depth_sum,
            "timeline": [
                {"counts": s.counts, "latency": _encode(s.latency)} for s in self.timeline
            ],
            "exposure": self.exposure.tolist(),
            "novelty_sum": self.novelty_sum,
            "users_seen": self.users_seen,
            "users_returned": self.users_returned,
            "latency_sum": self.latency_sum,
            "actual_latency_sum": self.actual_latency_sum,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunStats:
        stats = cls(
            n_items=d["n_items"],
            latency=_decode(d["latency"]),
            actual_latency=_decode(d["actual_latency"]),
            schedule_lag=_decode(d["schedule_lag"]),
            counts={**dict.fromkeys(COUNTERS, 0), **d["counts"]},
            ended_by=dict(d["ended_by"]),
            depth_sum=d["depth_sum"],
            exposure=np.asarray(d["exposure"], np.int64),
            novelty_sum=d["novelty_sum"],
            users_seen=d["users_seen"],
            users_returned=d["users_returned"],
            latency_sum=d.get("latency_sum", 0.0),
            actual_latency_sum=d.get("actual_latency_sum", 0.0),
        )
        for s in d["timeline"]:
            sec = Second(counts={**dict.fromkeys(COUNTERS, 0), **s["counts"]})
            sec.latency = new_histogram(2)
            if s["latency"]:
                sec.latency.decode_and_add(s["latency"].encode())
            stats.timeline.append(sec)
        return stats


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure over the catalogue (0: equal, 1: one item gets all)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)

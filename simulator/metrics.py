"""Prometheus metrics of simulator and replay processes (prometheus-client), in seconds.

Every series carries `run_id`, so Grafana can pick one run; `source` tells simulated users
(`sim`) from replayed ones (`replay`). No user or item ids are ever label values.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
LAG_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
DEPTH_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)

L = ["run_id", "source"]

EVENTS_SENT = Counter(
    "recloop_sim_events_sent_total", "User events sent to Kafka.", [*L, "event_type"]
)
TARGET_RATE = Gauge("recloop_sim_target_rate", "Event rate the scenario asks for, per second.", L)
LATE_SENDS = Counter(
    "recloop_sim_late_sends_total",
    "Sends that left more than the lateness threshold after their intended time.",
    L,
)
SCHEDULE_LAG = Histogram(
    "recloop_sim_schedule_lag_seconds",
    "Actual minus intended send time.",
    L,
    buckets=LAG_BUCKETS,
)
RECOMMENDATION_LATENCY = Histogram(
    "recloop_sim_recommendation_latency_seconds",
    "Time to a recommendation, from the intended send time (corrected for coordinated "
    "omission, basis=intended) and from the actual send time (basis=actual).",
    [*L, "basis"],
    buckets=LATENCY_BUCKETS,
)
RECOMMENDATIONS = Counter(
    "recloop_sim_recommendations_received_total", "Recommendations received and matched.", L
)
TIMEOUTS = Counter(
    "recloop_sim_timeouts_total", "Requests not answered within the user's patience.", L
)
SESSIONS_STARTED = Counter("recloop_sim_sessions_started_total", "Sessions started.", L)
SESSIONS_ENDED = Counter(
    "recloop_sim_sessions_ended_total",
    "Sessions ended, by reason (fatigue, boredom, abandoned, satisfied, end_of_run).",
    [*L, "reason"],
)
ACTIVE_SESSIONS = Gauge("recloop_sim_active_sessions", "Sessions in progress.", L)
IMPRESSIONS = Counter(
    "recloop_sim_impressions_total", "Recommended items shown to simulated users.", L
)
CLICKS = Counter("recloop_sim_clicks_total", "Clicks on recommended items.", L)
PURCHASES = Counter("recloop_sim_purchases_total", "Purchases of recommended items.", L)
SESSION_DEPTH = Histogram(
    "recloop_sim_session_depth", "Events per finished session.", L, buckets=DEPTH_BUCKETS
)
THRESHOLD_BREACHED = Gauge(
    "recloop_sim_threshold_breached",
    "1 while a scenario threshold is breached, else 0.",
    ["run_id", "threshold"],
)


class Tally:
    """Prometheus updates kept as plain numbers on the hot path, moved into their metric
    children by `publish()` (the simulator's ticker twice a second and at the end of a run,
    the replayer's publisher likewise).

    `Counter.inc` takes a lock and `Histogram.observe` also walks the buckets: 1-2 µs each,
    and the simulator made five or six of them per event; here each is a dict update. What a
    scrape sees is at most one publishing interval old.
    """

    def __init__(self) -> None:
        self._counts: dict[Counter, float] = {}
        self._observed: dict[Histogram, list[float]] = {}
        """Per histogram child: the count of each bucket, then the sum."""

    def inc(self, counter: Counter, amount: float = 1) -> None:
        counts = self._counts
        counts[counter] = counts.get(counter, 0) + amount

    def observe(self, histogram: Histogram, value: float) -> None:
        bounds = histogram._upper_bounds  # the child's bucket bounds, +Inf last
        entry = self._observed.get(histogram)
        if entry is None:
            entry = self._observed[histogram] = [0.0] * (len(bounds) + 1)
        entry[bisect_left(bounds, value)] += 1  # observe(): the first bound >= value
        entry[-1] += value

    def publish(self) -> None:
        """Add everything tallied since the last call to the Prometheus children."""
        counts, self._counts = self._counts, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        observed, self._observed = self._observed, {}
        for histogram, entry in observed.items():
            # What `observe` does per value, once per bucket (prometheus-client's own fields).
            histogram._sum.inc(entry[-1])
            for bucket, n in zip(histogram._buckets, entry[:-1], strict=True):
                if n:
                    bucket.inc(n)

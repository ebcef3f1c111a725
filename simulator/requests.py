"""Requests in flight, per source: who sent a triggering event and when, and its answer's latency.

A `Source` is everything one kind of sender owns (simulated users, or replayed ones): its
`RunStats`, its `Pacer` and its Prometheus children, labelled `source=<name>`, so the figures of
two sources never mix. One `RequestTracker` holds the triggering events of every source until
their recommendation comes (matched by `event_id`) or the recommendation timeout passes. The
simulation, replayed users in a scenario and `recloop replay --measure` all use these, so
latency is recorded one way: from the intended send time (free of coordinated omission) and
from the actual send time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Histogram

from recloop.core.contract import EventType, UserEvent
from recloop.simulator import metrics as m
from recloop.simulator.pacing import Pacer
from recloop.simulator.stats import RunStats

TRIGGERS = frozenset({EventType.SESSION_START, EventType.CLICK, EventType.REQUEST})
"""Events that ask the recommender for a slate (the worker's default `trigger_on`)."""


@dataclass(slots=True)
class Source:
    """One source of events: its figures, its pacer and its metric children."""

    name: str
    """The `source` label: `sim` or `replay`."""
    stats: RunStats
    pacer: Pacer
    sent_by_type: dict[EventType, Counter]
    lag: Histogram
    late: Counter
    recommendations: Counter
    latency_intended: Histogram
    latency_actual: Histogram
    timeout_on_give_up: bool
    """A request given up on counts as a timeout. Replayed users have no patience, so this is
    their timeout; simulated users count theirs at their own deadline."""
    tally: m.Tally
    """Per-event Prometheus updates, published by `publish()`."""

    @classmethod
    def bind(
        cls,
        name: str,
        run_id: str,
        *,
        late_threshold: float = 0.005,
        n_items: int = 0,
        timeout_on_give_up: bool = False,
    ) -> Source:
        """A fresh source with its metric children bound to `run_id` and `name`."""
        labels = {"run_id": run_id, "source": name}
        pacer = Pacer(late_threshold)
        stats = RunStats(n_items=n_items, exposure=np.zeros(n_items, np.int64))
        stats.schedule_lag = pacer.lag  # one histogram: the pacer records, the stats report
        return cls(
            name=name,
            stats=stats,
            pacer=pacer,
            sent_by_type={t: m.EVENTS_SENT.labels(event_type=t.value, **labels) for t in EventType},
            lag=m.SCHEDULE_LAG.labels(**labels),
            late=m.LATE_SENDS.labels(**labels),
            recommendations=m.RECOMMENDATIONS.labels(**labels),
            latency_intended=m.RECOMMENDATION_LATENCY.labels(basis="intended", **labels),
            latency_actual=m.RECOMMENDATION_LATENCY.labels(basis="actual", **labels),
            timeout_on_give_up=timeout_on_give_up,
            tally=m.Tally(),
        )

    def observe_lag(self, lag: float) -> bool:
        """Export one send's schedule lag (the pacer has recorded it; Prometheus gets it at the
        next `publish()`); True if it left late."""
        self.tally.observe(self.lag, lag)
        if lag > self.pacer.late_threshold:
            self.tally.inc(self.late)
            return True
        return False

    def publish(self) -> None:
        """Move the tallied per-event updates into Prometheus."""
        self.tally.publish()

    def answered(self, t: float, intended: float, actual: float) -> None:
        """An answer `t` s into the run, `intended`/`actual` s after the intended/actual send."""
        self.stats.count("recommendations", t)
        self.stats.record_latency(t, intended, actual)
        self.recommendations.inc()
        self.latency_intended.observe(intended)
        self.latency_actual.observe(actual)


@dataclass(slots=True)
class Pending:
    """A triggering event sent and not yet answered."""

    source: Source
    row: int
    """The simulated user's row, or -1 for a replayed event."""
    intended: float
    sent: float
    awaited: bool
    """The user waits for this answer (and gives up at their patience)."""


class RequestTracker:
    """The triggering events of every source awaiting an answer, in send order.

    Times are seconds on one clock (the simulation's monotonic clock, or the wall clock of
    `recloop replay`); `t0` is the run's start on it, the origin of the per-second timeline.
    """

    def __init__(
        self, timeout: float, triggers: frozenset[EventType] = TRIGGERS, t0: float = 0.0
    ) -> None:
        self.timeout = timeout
        self.triggers = triggers
        self.t0 = t0
        # An OrderedDict, not a dict: pruning pops from the front, and a dict's
        # `next(iter(...))` walks over every slot popped before it until the next resize, which
        # made each prune quadratic (an 18 ms stall of the schedule per tick at 7,500 requests/s).
        self.pending: OrderedDict[str, Pending] = OrderedDict()

    def sent(
        self,
        event: UserEvent,
        source: Source,
        intended: float,
        sent: float,
        row: int = -1,
        awaited: bool = False,
    ) -> bool:
        """Expect an answer to `event` if it triggers one; returns whether it does."""
        if event.event_type not in self.triggers:
            return False
        source.stats.count("requests", sent - self.t0)
        self.pending[event.event_id] = Pending(source, row, intended, sent, awaited)
        return True

    def match(self, event_id: str, now: float) -> Pending | None:
        """Record the answer to `event_id` arriving at `now`; None if it is not awaited here."""
        p = self.pending.pop(event_id, None)
        if p is not None:
            p.source.answered(now - self.t0, max(0.0, now - p.intended), max(0.0, now - p.sent))
        return p

    def in_flight(self, now: float) -> int:
        """Requests sent less than the timeout ago and not answered yet; drops older ones."""
        # Pending is in send order, so given-up requests are at the front: pruning is amortised
        # O(1) per request. An answer that comes after that is counted as unmatched.
        pending = self.pending
        while pending:
            first = next(iter(pending))
            if now - pending[first].intended < self.timeout:
                break
            given_up = pending.pop(first)
            # A waiting simulated user counts their own timeout at their patience deadline;
            # every other unanswered request (replayed, or one its user no longer waits for)
            # is counted here, so no request goes unaccounted.
            if given_up.source.timeout_on_give_up or not given_up.awaited:
                given_up.source.stats.count("timeouts", now - self.t0)
        return len(pending)

    def uncount_in_flight(self) -> None:
        """At the end of a run: requests still in flight may yet be answered, so they are not
        counted as requests (older unanswered ones stay, infinitely slow in percentiles)."""
        for p in self.pending.values():
            p.source.stats.counts["requests"] -= 1

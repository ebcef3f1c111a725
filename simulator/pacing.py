"""Open-loop pacing: release work at its intended time, whatever the system under test does.

Both the simulator (Poisson arrivals, user think times) and replay (recorded timestamps scaled
by a speed factor) hand the `Pacer` an intended time per send. The pacer sleeps only when the
next send is in the future, never because a previous send was slow, so latency measured from
the intended time is free of coordinated omission; how late each send left is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hdrh.histogram import HdrHistogram

from recloop.simulator.stats import percentile_values, record

SPIN_SECONDS = 0.0005
"""Below this, waiting is done by yielding to the loop instead of a timed sleep, whose
granularity on Linux is about 1 ms; keeps 1x replay within the 5 ms p99 target."""


class Pacer:
    """Waits until intended times on a monotonic clock and keeps a histogram of lateness.

    Intended times are seconds on `clock` (default `time.monotonic`). `lag` holds actual minus
    intended send time in microseconds (HdrHistogram, 1 µs to 1 h, 3 significant digits).
    """

    def __init__(
        self, late_threshold: float = 0.005, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.late_threshold = late_threshold
        self.lag = HdrHistogram(1, 3_600_000_000, 3)
        self.late = 0
        self.sent = 0

    async def wait_until(self, intended: float) -> float:
        """Return once `intended` has come; the lag (seconds, >= 0) is recorded."""
        delay = intended - self.clock()
        if delay > SPIN_SECONDS:
            await asyncio.sleep(delay - SPIN_SECONDS)
        while self.clock() < intended:
            await asyncio.sleep(0)
        return self.record(intended)

    def record(self, intended: float) -> float:
        """Record a send happening now for work intended at `intended`; returns the lag."""
        lag = max(0.0, self.clock() - intended)
        record(self.lag, max(1, int(lag * 1e6)))
        self.sent += 1
        if lag > self.late_threshold:
            self.late += 1
        return lag

    def lag_percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of send lag, in seconds."""
        if not self.sent:
            return 0.0
        return percentile_values(self.lag, [q]).get(q, 0) / 1e6


class RunClock:
    """A run's time origin on the monotonic and the wall clock, and its event sequence numbers."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.wall0 = 0.0
        self.seq = 0

    def start(self) -> float:
        """Start the run now; returns the wall-clock start."""
        self.wall0 = time.time()
        self.t0 = time.monotonic()
        # Sequence numbers start from the wall clock so a user re-run on the same topics still
        # moves forward in the recommender's per-user ordering.
        self.seq = int(self.wall0 * 1000) * 1000
        return self.wall0

    def at(self, t: float) -> float:
        """Seconds since the start of the run for monotonic time `t`."""
        return t - self.t0

    def wall(self, t: float) -> float:
        """The wall-clock time of monotonic time `t`."""
        return self.wall0 + (t - self.t0)

    def next_seq(self) -> int:
        """The next event's `seq`: increasing across all users and sources of this process."""
        self.seq += 1
        return self.seq

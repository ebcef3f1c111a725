"""Publish replay rows to Kafka: paced at a speed factor, or as fast as possible.

Pacing is open loop (`recloop.simulator.pacing.Pacer`): each row has an intended send time, the first
row's plus its original gap (capped at `max_gap`) divided by `speed`; a slow send never delays
the schedule, and how late each send left is recorded.

Sends go through the simulator's `BatchSender`: the Java client's partitioning (murmur2 of
the key, computed once per user, so a user's events all land on one partition in their
original order) and records appended straight into per-partition record batches, submitted by
one task per partition: no per-record future or partitioner call, which is most of a plain
`send()`'s cost. As fast as possible, the sender's `room()` holds the replay back while the
broker is behind.

Timestamps (`event_time` and the Kafka record timestamp) follow `time_mode`:
`keep` the original, `shift` so the stream starts now (original spacing), or `scale` so they
match the replayed pacing (the intended send time; as fast as possible, the send time).

`ReplaySource` is the same schedule as an async iterator of `(intended_monotonic, UserEvent)`,
for a scenario runner that merges replayed and simulated users on its own producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hdrh.histogram import HdrHistogram

from recloop.core.contract import (
    ContractError,
    EventType,
    UserEvent,
    decode_recommendation,
    encode,
)
from recloop.core.errors import RunError, kafka_unreachable
from recloop.core.settings import Settings
from recloop.core.topics import create_hint, topic_partitions
from recloop.simulator import metrics
from recloop.simulator.replay.amplify import (
    Selection,
    clone,
    in_replay_order,
    schedule_offsets,
    select,
)
from recloop.simulator.replay.sources import Row
from recloop.simulator.requests import RequestTracker, Source
from recloop.simulator.sender import BatchSender
from recloop.simulator.stats import RunStats

TimeMode = Literal["keep", "shift", "scale"]
SOURCE = "replay"
START_LEAD = 0.05
"""Seconds between planning the start and the first intended send, so the first sends are
not late just because the producer's first batch is being set up."""


class ReplayError(RunError):
    """The replay could not publish (broker unreachable, topic missing, sends failing)."""


@dataclass(slots=True)
class Plan:
    """Rows in replay order with their send offsets (seconds from the start, one loop)."""

    rows: list[Row]
    offsets: list[float]
    first_time: float
    original_span: float
    span: float
    speed: float
    max_gap: float | None

    @classmethod
    def build(cls, rows: list[Row], speed: float, max_gap: float | None = None) -> Plan:
        """Plan `rows`, which must already be in replay order (`amplify.in_replay_order`)."""
        offsets = schedule_offsets((r.time for r in rows), speed, max_gap)
        first = rows[0].time if rows else 0.0
        return cls(
            rows=rows,
            offsets=offsets,
            first_time=first,
            original_span=(rows[-1].time - first) if rows else 0.0,
            span=offsets[-1] if offsets else 0.0,
            speed=speed,
            max_gap=max_gap,
        )

    @property
    def as_fast_as_possible(self) -> bool:
        return math.isinf(self.speed)


def make_plan(
    rows: list[Row],
    *,
    selection: Selection | None = None,
    copies: int = 0,
    clone_shift: float = 60.0,
    speed: float = 1.0,
    max_gap: float | None = None,
) -> Plan:
    """Select, clone and order `rows`, then schedule them at `speed` (math.inf: no pacing)."""
    chosen = select(rows, selection) if selection is not None else list(rows)
    return Plan.build(in_replay_order(clone(chosen, copies, clone_shift)), speed, max_gap)


@dataclass(slots=True)
class Options:
    """How to replay. `loops` 0 means forever (stop with `duration` or Ctrl-C)."""

    topic: str
    time_mode: TimeMode = "scale"
    loops: int = 1
    loop_gap: float = 1.0
    """Original-time seconds between the end of one loop and the start of the next."""
    renumber_seq: bool = True
    duration: float | None = None
    run_id: str = "replay"
    linger_ms: int = 5
    max_batch_bytes: int = 512 * 1024
    compression: str | None = None
    acks: int | str = 1


class Rewriter:
    """Turns a planned row into the event to send: loop suffix, `seq`, times."""

    def __init__(self, plan: Plan, options: Options, start_wall: float) -> None:
        self.plan = plan
        self.options = options
        self.start_wall = start_wall
        self.seq: dict[str, int] = {}
        gap = options.loop_gap if plan.max_gap is None else min(options.loop_gap, plan.max_gap)
        self.original_period = plan.original_span + options.loop_gap
        self.period = 0.0 if plan.as_fast_as_possible else plan.span + gap / plan.speed

    def record_time(self, row: Row, loop: int, offset: float, now: float) -> float:
        """The new record timestamp of `row` in `loop`, sent `offset` s into the replay (or
        `now`, as fast as possible)."""
        mode = self.options.time_mode
        if mode == "keep":
            return row.time + loop * self.original_period
        if mode == "shift":
            return self.start_wall + (row.time - self.plan.first_time) + loop * self.original_period
        return now if self.plan.as_fast_as_possible else self.start_wall + offset

    def event(self, row: Row, loop: int, record_time: float, produce_time: float) -> UserEvent:
        """The event to send: `event_time` moves with the record timestamp (`keep`, `shift`)
        or is the new record timestamp (`scale`)."""
        ev = row.event
        assert ev is not None
        if self.options.time_mode == "scale":
            event_time = record_time
        else:
            event_time = max(0.0, ev.event_time + (record_time - row.time))
        changes: dict[str, object] = {"event_time": event_time, "produce_time": produce_time}
        if loop:
            suffix = f"~l{loop}"
            changes["event_id"] = ev.event_id + suffix
            if ev.session_id:
                changes["session_id"] = ev.session_id + suffix
        if self.options.renumber_seq:
            n = self.seq.get(ev.user_id, 0)
            self.seq[ev.user_id] = n + 1
            changes["seq"] = n
        return msgspec.structs.replace(ev, **changes)

    def loops(self) -> Iterator[int]:
        loop = 0
        while self.options.loops == 0 or loop < self.options.loops:
            yield loop
            loop += 1


class ReplaySource:
    """A replay as an async iterator of `(intended_monotonic, UserEvent)` for a scenario runner.

    It never sleeps: the runner's `Pacer` waits for each intended time, so replayed and
    simulated users merged by intended time share one open-loop schedule. `event_time` and
    `produce_time` are set to the intended wall-clock time (the runner may restamp them).
    """

    def __init__(self, plan: Plan, options: Options) -> None:
        if plan.as_fast_as_possible:
            raise ValueError("a scenario replay source needs a finite speed factor")
        self.plan = plan
        self.options = options

    async def events(
        self, start_monotonic: float, start_wall: float | None = None
    ) -> AsyncIterator[tuple[float, UserEvent]]:
        wall0 = time.time() if start_wall is None else start_wall
        rw = Rewriter(self.plan, self.options, wall0)
        for loop in rw.loops():
            base = loop * rw.period
            for row, offset in zip(self.plan.rows, self.plan.offsets, strict=True):
                if row.event is None:
                    continue
                at = base + offset
                intended_wall = wall0 + at
                yield (
                    start_monotonic + at,
                    rw.event(
                        row, loop, rw.record_time(row, loop, at, intended_wall), intended_wall
                    ),
                )
            await asyncio.sleep(0)


@dataclass(slots=True)
class TrackerSummary:
    """Recommendations matched to replayed triggering events (latency p50/p99/max in ms)."""

    expected: int
    answered: int
    latency_intended_ms: dict[str, float]
    latency_actual_ms: dict[str, float]
    stats: RunStats | None = None
    """The full figures, as a simulation's (`recloop.simulator.stats`)."""


def _percentiles(figures: dict[str, float | None], name: str) -> dict[str, float]:
    """p50/p99/max of `name` in ms from `RunStats.figures()` (inf: too many unanswered)."""
    out = {}
    for key in ("p50", "p99", "max"):
        value = figures[f"{name}.{key}"]
        if value is not None:
            out[key] = value * 1000
    return out


class RecommendationTracker:
    """Consumes the recommendations topic and matches answers to replayed events by event id.

    The matching and the figures are the simulator's own (`recloop.simulator.requests`): the
    replay's `Source` (its `RunStats` and metrics labelled `source="replay"`) and a
    `RequestTracker` on the wall clock, so latency is recorded from the intended send time (free
    of coordinated omission) and from the actual send time, and unanswered requests count as
    infinitely slow, as in a simulation. This class adds the consumer.
    """

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.source = Source.bind(SOURCE, run_id)
        # A replay waits for its answers (`wait`) rather than giving up on them.
        self.requests = RequestTracker(
            math.inf,
            frozenset(EventType(t) for t in settings.worker.trigger_on),
            t0=time.time(),
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def stats(self) -> RunStats:
        return self.source.stats

    async def start(self) -> None:
        """Position at the end of the topic, so only answers to this replay are read."""
        topic = self.settings.topics.recommendations
        consumer = AIOKafkaConsumer(
            **self.settings.consumer_kwargs(), enable_auto_commit=False, auto_offset_reset="latest"
        )
        await consumer.start()
        try:
            partitions = (await topic_partitions(self.settings, [topic]))[topic]
            if not partitions:
                raise ReplayError(f"topic {topic!r} has no partitions; create it first")
        except BaseException:
            await consumer.stop()
            raise
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before the first replayed send
            await consumer.position(tp)
        self._consumer = consumer
        self.requests.t0 = time.time()
        self._task = asyncio.create_task(self._run())

    @property
    def expected(self) -> int:
        """Triggering events sent (each should be answered)."""
        return self.stats.counts["requests"]

    @property
    def answered(self) -> int:
        return self.stats.counts["recommendations"]

    def expect(self, event: UserEvent, intended_wall: float, actual_wall: float) -> None:
        self.requests.sent(event, self.source, intended_wall, actual_wall)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        rec = decode_recommendation(record.value)
                    except ContractError:
                        continue
                    self.requests.match(rec.event_id, now)
            self._changed.set()

    def match(self, event_id: str, now: float) -> tuple[float, float] | None:
        """Record the answer to `event_id` arriving at wall time `now`; returns its latency
        (seconds from the intended and from the actual send time), None if not ours."""
        p = self.requests.match(event_id, now)
        if p is None:
            return None
        return max(0.0, now - p.intended), max(0.0, now - p.sent)

    async def wait(self, timeout: float) -> bool:
        """Wait until every expected answer arrived; False on timeout."""
        pending = self.requests.pending
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))
        return not pending

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def summary(self) -> TrackerSummary:
        figures = self.stats.figures()
        return TrackerSummary(
            expected=self.expected,
            answered=self.answered,
            latency_intended_ms=_percentiles(figures, "latency"),
            latency_actual_ms=_percentiles(figures, "actual_latency"),
            stats=self.stats,
        )


@dataclass(slots=True)
class ReplayResult:
    """What a replay did. Lags are seconds; `rate` is events per second achieved."""

    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    lag_p50: float = 0.0
    lag_p99: float = 0.0
    lag_max: float = 0.0
    late: int = 0
    sent_lag_p99: float = 0.0
    """p99 of lag measured after `send()` returned (includes the client's own cost)."""
    by_type: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    recommendations: TrackerSummary | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Replayer:
    """Publishes a `Plan` to `options.topic`, reporting progress through `sent`."""

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        options: Options,
        tracker: RecommendationTracker | None = None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.options = options
        self.tracker = tracker
        # One source for sending and answers: with a tracker, its source (and run id labels).
        self.source = tracker.source if tracker is not None else Source.bind(SOURCE, options.run_id)
        self.pacer = self.source.pacer
        self.result = ReplayResult()
        self._sent_lag = HdrHistogram(1, 3_600_000_000, 3)
        self._published: Counter[str] = Counter()
        self._stop_at: float | None = None

    @property
    def total(self) -> int | None:
        """Rows this replay will send (None when looping forever)."""
        return len(self.plan.rows) * self.options.loops if self.options.loops else None

    def _producer(self) -> AIOKafkaProducer:
        afap = self.plan.as_fast_as_possible
        return AIOKafkaProducer(
            **self.settings.kafka_kwargs(),
            client_id=f"{self.settings.client_id}-replay",
            acks=self.options.acks,
            linger_ms=50 if afap else self.options.linger_ms,
            max_batch_size=self.options.max_batch_bytes,
            compression_type=self.options.compression,
            request_timeout_ms=30_000,
        )

    def _on_send_error(self, n: int, exc: BaseException | None) -> None:
        self.result.failed += n
        if exc is not None:
            self.result.first_error = self.result.first_error or repr(exc)

    async def run(self) -> ReplayResult:
        topic = self.options.topic
        producer = self._producer()
        try:
            await producer.start()
        except Exception as exc:
            await producer.stop()
            raise ReplayError(
                kafka_unreachable(self.settings.bootstrap, exc, self.settings.security.protocol)
            ) from exc
        try:
            partitions = await producer.partitions_for(topic)
            if not partitions:
                raise ReplayError(
                    f"topic {topic!r} does not exist on {self.settings.bootstrap}; create it "
                    f"with {create_hint(self.settings, 'events', topic)}"
                )
            metrics.TARGET_RATE.labels(self.options.run_id, SOURCE).set(self._target_rate())
            if self.tracker is not None:
                await self.tracker.start()
            start = time.monotonic()
            if self.options.duration is not None:
                self._stop_at = start + self.options.duration
            sender = BatchSender(producer, topic, sorted(partitions), self._on_send_error)
            sender.start()
            publisher = asyncio.create_task(self._publish_sent_every(0.5))
            finished = False
            try:
                if self.plan.as_fast_as_possible:
                    await self._run_fast(sender)
                else:
                    await self._run_paced(sender, start + START_LEAD)
                finished = True
            finally:
                # Everything queued leaves and is acknowledged (or fails) before the result is
                # read; after an error, the sender gets only a moment.
                await sender.close(None if finished else 1.0)
                publisher.cancel()
                self._publish_sent()
            self.result.seconds = time.monotonic() - start
        finally:
            await producer.stop()
        r = self.result
        if self.pacer.sent:
            r.lag_p50 = self.pacer.lag_percentile(50)
            r.lag_p99 = self.pacer.lag_percentile(99)
            r.lag_max = self.pacer.lag.get_max_value() / 1e6
            r.late = self.pacer.late
            r.sent_lag_p99 = self._sent_lag.get_value_at_percentile(99) / 1e6
        if r.failed:
            hint = ""
            if "InvalidTimestamp" in (r.first_error or ""):
                hint = (
                    " (the broker rejects record timestamps too far from now, by default more "
                    "than 1 h ahead: `shift` sent faster than 1x runs ahead of the clock; use "
                    "--timestamps scale)"
                )
            raise ReplayError(
                f"{r.failed} of {r.sent} sends failed; first error: {r.first_error}{hint}"
            )
        return r

    def _publish_sent(self) -> None:
        """Move the per-type send counts and the tallied lags into Prometheus (the hot loops
        only bump a Counter)."""
        self.source.publish()
        for etype, n in self.result.by_type.items():
            if delta := n - self._published[etype]:
                self.source.sent_by_type[EventType(etype)].inc(delta)
                self._published[etype] = n

    async def _publish_sent_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self._publish_sent()

    def _target_rate(self) -> float:
        if self.plan.as_fast_as_possible or self.plan.span <= 0:
            return 0.0
        return len(self.plan.rows) / self.plan.span

    async def _run_paced(self, sender: BatchSender, start: float) -> None:
        wall0 = time.time() + (start - time.monotonic())
        rw = Rewriter(self.plan, self.options, wall0)
        pacer = self.pacer
        sent_lag = self._sent_lag
        result = self.result
        tracker = self.tracker
        for loop in rw.loops():
            base = start + loop * rw.period
            for row, offset in zip(self.plan.rows, self.plan.offsets, strict=True):
                intended = base + offset
                if self._stop_at is not None and intended > self._stop_at:
                    return
                lag = await pacer.wait_until(intended)
                now = time.time()
                at = intended - start
                ts = rw.record_time(row, loop, at, now)
                if row.event is not None:
                    event = rw.event(row, loop, ts, now)
                    value = encode(event)
                    result.by_type[event.event_type.value] += 1
                else:
                    event = None
                    value = row.value
                _send(sender, row, value, ts)
                sent_lag.record_value(max(1, int((time.monotonic() - intended) * 1e6)))
                result.sent += 1
                self.source.observe_lag(lag)
                if tracker is not None and event is not None:
                    tracker.expect(event, wall0 + at, now)
                if result.sent % 256 == 0:
                    # A late pacer returns without yielding: let the submit tasks and the
                    # tracker's consumer run while catching up.
                    await asyncio.sleep(0)

    def _expired(self) -> bool:
        return self._stop_at is not None and time.monotonic() > self._stop_at

    async def _run_fast(self, sender: BatchSender) -> None:
        rows = self.plan.rows
        rw = Rewriter(self.plan, self.options, time.time())
        result = self.result
        tracker = self.tracker
        by_type = result.by_type
        chunk = 2000
        for loop in rw.loops():
            if self._expired():
                break
            for lo in range(0, len(rows), chunk):
                if self._expired():
                    break
                now = time.time()
                for row in rows[lo : lo + chunk]:
                    record_time = rw.record_time(row, loop, 0.0, now)
                    if row.event is not None:
                        event = rw.event(row, loop, record_time, now)
                        value = encode(event)
                        by_type[event.event_type.value] += 1
                        if tracker is not None:
                            tracker.expect(event, now, now)
                    else:
                        value = row.value
                    _send(sender, row, value, record_time)
                    result.sent += 1
                # Let the submit tasks run between chunks, and wait while the broker is behind.
                await sender.room()


def _send(sender: BatchSender, row: Row, value: bytes | None, record_time: float) -> None:
    """Queue `row` with `value` and its record timestamp (epoch seconds)."""
    try:
        sender.send(row.key, value, int(record_time * 1000), row.headers)
    except ValueError:
        raise ReplayError(f"{row.origin}: record larger than a batch") from None


async def progress_loop(
    replayer: Replayer, report: Callable[[int, int | None], None], every: float = 0.25
) -> None:
    """Call `report(sent, total)` every `every` seconds until cancelled."""
    while True:
        report(replayer.result.sent, replayer.total)
        await asyncio.sleep(every)

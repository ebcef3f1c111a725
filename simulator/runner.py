"""The simulation's I/O shell: Kafka clients and the event loop's tasks.

One asyncio scheduler releases every timed action of the `SessionEngine`'s schedule (session
arrivals, user events, patience deadlines, replayed events) when its intended time comes,
never because an earlier send was slow; how late each send left is recorded (`Pacer.record`).
Every event leaves through `emit` and one `BatchSender`. A consumer reads the recommendations
topic; the `RequestTracker` matches each answer to its triggering event by `event_id` and
records latency from the intended and the actual send time, and the engine lets the waiting
users react in batches. The simulator talks to the recommender only through Kafka and
`recloop.core.contract`.

A scenario's `replay:` section adds recorded users: their events enter the same schedule at
their intended times (a feeder task keeps it filled a little ahead), leave through the same
sender, and their answers are matched and timed the same way, into a second `Source` (its
own `RunStats`, metrics labelled `source="replay"`). Replayed users do not react; they follow
the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from recloop.core.contract import (
    ContractError,
    Recommendation,
    UserEvent,
    decode_recommendation,
    encode,
)
from recloop.core.errors import RunError, kafka_unreachable
from recloop.core.settings import Settings
from recloop.core.topics import TopicError, assign_at_end, create_hint
from recloop.simulator import metrics as m
from recloop.simulator.pacing import SPIN_SECONDS, RunClock
from recloop.simulator.population import Population, Shard, build_population
from recloop.simulator.replay.scenario import ScenarioReplay, load_scenario_replay
from recloop.simulator.requests import Pending, RequestTracker, Source
from recloop.simulator.scenario import Scenario
from recloop.simulator.sender import BatchSender
from recloop.simulator.sessions import REPLAY, SessionEngine
from recloop.simulator.stats import RunStats, percentile_values
from recloop.simulator.thresholds import Verdict, evaluate

DRAIN_SECONDS = 3.0
"""After the last stage, how long to wait for outstanding recommendations."""

REPLAY_LOOKAHEAD = 0.5
"""Seconds ahead of their intended time that replayed events are moved into the heap."""


class SimulationError(RunError):
    """The simulation could not run (broker unreachable, topic missing, bad population)."""


@dataclass(slots=True)
class Snapshot:
    """What the live view and the Prometheus exporter show, once per tick."""

    elapsed: float
    duration: float
    target_rate: float
    achieved_rate: float
    active_sessions: int
    figures: dict[str, float | None]
    verdicts: list[Verdict]
    counts: dict[str, int]
    replay_counts: dict[str, int] | None = None
    """Counters of the replayed users, when the scenario replays a recording."""
    replay_figures: dict[str, float | None] | None = None
    """Figures of the replayed users (the web dashboard's per-source table)."""
    last_second: dict[str, float | None] | None = None
    """Latency p50/p90/p99 (s) of the last complete second, for charts over time."""


@dataclass(slots=True)
class RunResult:
    """The outcome of one simulator process."""

    run_id: str
    scenario: Scenario
    shard: Shard
    stats: RunStats
    verdicts: list[Verdict]
    aborted: bool
    started: float
    finished: float
    versions: dict[str, str] = field(default_factory=dict)
    recommender: dict[str, str] = field(default_factory=dict)
    replay_stats: RunStats | None = None
    """What the replayed users' events measured (None without a `replay:` section)."""

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts) and not self.aborted


class Simulation:
    """One simulator process running `scenario` against whatever answers on the topics.

    The I/O shell: the Kafka clients and the event loop's tasks (the scheduler, the
    recommendations consumer, the ticker and the replay feeder). Users and their decisions are
    the `SessionEngine`'s; requests in flight and their latency the `RequestTracker`'s; each
    source (simulated, replayed) has its own `Source`.
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        *,
        shard: Shard = Shard(),
        run_id: str | None = None,
        on_tick: Callable[[Snapshot], None] | None = None,
        population: tuple[Population, object] | None = None,
        replay: ScenarioReplay | None = None,
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.shard = shard
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.on_tick = on_tick
        self.events_topic = scenario.topics.events or settings.topics.events
        self.recs_topic = scenario.topics.recommendations or settings.topics.recommendations
        pop, truth = population or build_population(
            scenario.population, scenario.user, scenario.seed, shard
        )
        self.thresholds = scenario.parsed_thresholds()
        self.clock = RunClock()
        self.simulated = Source.bind(
            "sim", self.run_id, late_threshold=scenario.late_threshold, n_items=len(pop.item_ids)
        )
        self.tracker = RequestTracker(scenario.recommendation_timeout)
        self.engine = SessionEngine(
            scenario, shard, self.run_id, self.simulated, self.clock, self.emit, (pop, truth)
        )
        self.recommender: dict[str, str] = {}
        self.aborted = False
        self.replay = replay
        if self.replay is None and scenario.replay is not None:
            self.replay = load_scenario_replay(scenario.replay, shard, self.run_id)
        self.replayed: Source | None = None
        if self.replay is not None:
            self.replayed = Source.bind(
                "replay",
                self.run_id,
                late_threshold=scenario.late_threshold,
                n_items=len(pop.item_ids),
                timeout_on_give_up=True,
            )
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.sender: BatchSender | None = None

    # -- sending ----------------------------------------------------------------------------

    def emit(
        self,
        source: Source,
        key: bytes,
        event: UserEvent,
        intended: float,
        row: int = -1,
        awaited: bool = False,
    ) -> float:
        """Send one event of `source` now, for its intended time; returns the send time.

        A triggering event is tracked until its answer comes (`row` is the simulated user's,
        `awaited` whether they wait for it)."""
        t0 = self.clock.t0
        stats = source.stats
        stats.count("events_intended", intended - t0)
        lag = source.pacer.record(intended)
        now = time.monotonic()
        if source.observe_lag(lag):
            stats.count("late_sends", now - t0)
        assert self.sender is not None
        self.sender.send(key, encode(event))
        stats.count("events_sent", now - t0)
        source.tally.inc(source.sent_by_type[event.event_type])
        self.tracker.sent(event, source, intended, now, row, awaited)
        return now

    def send_replayed(self, intended: float, recorded: UserEvent) -> None:
        """Send one replayed event now, for its intended time; triggers are matched and timed.

        The event keeps its user, type, item, session and order; it gets a run-unique event id,
        the runner's increasing `seq` (so the recommender's per-user ordering holds, also
        against a simulated user with the same id) and the actual produce time.
        """
        assert self.replayed is not None
        event = msgspec.structs.replace(
            recorded,
            event_id=f"{self.run_id}~{recorded.event_id}",
            seq=self.clock.next_seq(),
            produce_time=time.time(),
        )
        self.emit(self.replayed, event.user_id.encode(), event, intended)

    async def feed_replay(self, end: float) -> None:
        """Move replayed events into the schedule `REPLAY_LOOKAHEAD` s before their time."""
        assert self.replay is not None
        if not self.replay.plan.rows:  # this shard has no replayed users
            return
        start = self.clock.t0 + self.replay.start
        fed = 0
        async for intended, event in self.replay.source.events(start, self.clock.wall(start)):
            if intended >= end:
                return
            ahead = intended - REPLAY_LOOKAHEAD - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            self.engine.schedule.push(intended, REPLAY, -1, event)
            fed += 1
            if fed % 256 == 0:
                await asyncio.sleep(0)

    def _on_send_error(self, n: int, exc: BaseException | None) -> None:
        self.simulated.stats.count("send_errors", self.clock.at(time.monotonic()), n)

    # -- recommendations --------------------------------------------------------------------

    def on_recommendations(self, recs: list[Recommendation], now: float) -> None:
        """Match recommendations to requests; simulated users react to theirs as one batch."""
        answers: list[tuple[Recommendation, Pending]] = []
        for rec in recs:
            p = self.tracker.match(rec.event_id, now)
            if p is None:
                self.unmatched(rec, now)
                continue
            self.recommender = {"strategy": rec.strategy, "model_version": rec.model_version}
            if p.source is self.simulated:
                answers.append((rec, p))
            else:  # replayed users do not react: count what they were shown
                stats = p.source.stats
                stats.count("impressions", self.clock.at(now), len(rec.items))
                stats.expose(self.engine.item_indices(rec))
        if answers:
            self.engine.answered(answers, now)

    def unmatched(self, rec: Recommendation, now: float) -> None:
        """An answer to none of the requests in flight (too late, or to another run's)."""
        if rec.user_id in self.engine.by_id:
            self.simulated.stats.count("unmatched_recommendations", self.clock.at(now))
        elif self.replay is not None and rec.user_id in self.replay.users:
            assert self.replayed is not None
            self.replayed.stats.count("unmatched_recommendations", self.clock.at(now))

    # -- loops ------------------------------------------------------------------------------

    async def scheduler(self, end: float, until_idle: bool = False) -> None:
        schedule = self.engine.schedule
        heap = schedule.heap
        handled = 0
        next_idle_check = 0.0
        while not self.aborted:
            now = time.monotonic()
            if now >= end:
                return
            if now >= next_idle_check:
                # Prune requests given up on a few at a time, rather than all of the ticker's
                # half second at once (a stall of the schedule at thousands of requests/s).
                next_idle_check = now + 0.05
                if not self.tracker.in_flight(now) and until_idle:
                    return
            while heap and heap[0][0] <= now:
                t, _, kind, row, arg = schedule.pop()
                if kind == REPLAY:
                    assert isinstance(arg, UserEvent)
                    self.send_replayed(t, arg)
                else:
                    self.engine.act(t, kind, row, arg)
                handled += 1
                if handled % 256 == 0:
                    await asyncio.sleep(0)  # let the consumer run while catching up
                now = time.monotonic()
            delay = (heap[0][0] if heap else now + 0.01) - time.monotonic()
            if delay > SPIN_SECONDS:
                await asyncio.sleep(min(delay - SPIN_SECONDS, 0.01))
            else:
                await asyncio.sleep(0)

    async def consume(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=20, max_records=2000)
            now = time.monotonic()
            recs: list[Recommendation] = []
            for records in batches.values():
                for r in records:
                    try:
                        recs.append(decode_recommendation(r.value or b""))
                    except ContractError:
                        self.simulated.stats.count("unmatched_recommendations", self.clock.at(now))
            if recs:
                self.on_recommendations(recs, now)

    async def ticker(self, end: float) -> None:
        stats = self.simulated.stats
        last_sent = 0
        last_t = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            snap = self.snapshot(now, (stats.counts["events_sent"] - last_sent) / (now - last_t))
            last_sent, last_t = stats.counts["events_sent"], now
            self.tracker.in_flight(now)  # prune requests given up on
            self.publish()
            self.engine.metrics.target_rate.set(snap.target_rate)
            self.engine.metrics.active.set(self.engine.active)
            for v in snap.verdicts:
                m.THRESHOLD_BREACHED.labels(run_id=self.run_id, threshold=v.threshold).set(
                    0 if v.passed else 1
                )
            if self.on_tick:
                self.on_tick(snap)
            if self.scenario.abort_on_breach and not all(v.passed for v in snap.verdicts):
                self.aborted = True

    def publish(self) -> None:
        """Move the sources' tallied per-event updates into Prometheus."""
        self.simulated.publish()
        if self.replayed is not None:
            self.replayed.publish()

    def snapshot(self, now: float, achieved: float) -> Snapshot:
        stats = self.simulated.stats
        figures = stats.figures()
        elapsed = self.clock.at(now)
        i = int(elapsed) - 1
        target = stats.timeline[i].counts["events_intended"] if 0 <= i < len(stats.timeline) else 0
        return Snapshot(
            elapsed=elapsed,
            duration=self.scenario.duration,
            target_rate=float(target),
            achieved_rate=achieved,
            active_sessions=self.engine.active,
            figures=figures,
            verdicts=evaluate(self.thresholds, self.live_figures(figures), final=False),
            counts=dict(stats.counts),
            replay_counts=None if self.replayed is None else dict(self.replayed.stats.counts),
            replay_figures=None if self.replayed is None else self.replayed.stats.figures(),
            last_second=last_second_latency(stats, i),
        )

    def live_figures(self, figures: dict[str, float | None]) -> dict[str, float | None]:
        # While running, requests still within their patience are in flight, not failures.
        f = dict(figures)
        for k in list(f):
            if k.startswith("latency.") and f[k] == math.inf:
                f[k] = None
        return f

    # -- the run ----------------------------------------------------------------------------

    async def _start_clients(self) -> None:
        kw = self.settings.kafka_kwargs()
        self.producer = AIOKafkaProducer(
            **kw, client_id=f"recloop-sim-{self.run_id}", linger_ms=2, acks=1
        )
        self.consumer = AIOKafkaConsumer(
            **self.settings.consumer_kwargs(),
            client_id=f"recloop-sim-{self.run_id}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        try:
            await self._connect()
        except BaseException:
            # Close what was opened (stopping an unstarted client is a no-op), so a failed start
            # ends with its one error line, not with aiokafka's "Unclosed ..." warnings.
            if (sender := getattr(self, "sender", None)) is not None:  # set once connected
                await sender.close()
            await self.producer.stop()
            await self.consumer.stop()
            raise

    async def _connect(self) -> None:
        try:
            await self.producer.start()
            await self.consumer.start()
            topics = await self.consumer.topics()
        except KafkaError as exc:
            raise SimulationError(
                kafka_unreachable(self.settings.bootstrap, exc, self.settings.security.protocol)
            ) from None
        for role, name in (("events", self.events_topic), ("recommendations", self.recs_topic)):
            if name not in topics:
                raise SimulationError(
                    f"topic {name!r} does not exist on {self.settings.bootstrap}; create it "
                    f"with {create_hint(self.settings, role, name)}, or point RECLOOP_TOPICS__* "
                    "or the scenario's topics: at existing ones"
                )
        # Fetch the events topic's metadata now: the first send would otherwise wait for it
        # while the schedule runs on, making the first second of every run late.
        events_partitions = await self.producer.partitions_for(self.events_topic)
        self.sender = BatchSender(
            self.producer, self.events_topic, sorted(events_partitions), self._on_send_error
        )
        # The simulated users' partitions, hashed before the clock starts (50,000 users: 0.2 s).
        self.sender.prime(user.key for user in self.engine.users)
        self.sender.start()
        try:
            await assign_at_end(self.consumer, self.producer, self.recs_topic)
        except TopicError as exc:
            raise SimulationError(str(exc)) from None

    async def run(self) -> RunResult:
        """Run the scenario to the end (or to a breached threshold with abort_on_breach)."""
        await self._start_clients()
        assert self.producer is not None and self.consumer is not None
        assert self.sender is not None
        # Users, the heap and the stats live for the whole run: keep them out of the cyclic
        # GC's generations, whose full collections would otherwise stall the schedule.
        gc.collect()
        gc.freeze()
        started = self.clock.start()
        self.tracker.t0 = self.clock.t0
        self.engine.start()
        end = self.clock.t0 + self.scenario.duration
        consumer = asyncio.create_task(self.consume())
        ticker = asyncio.create_task(self.ticker(end))
        tasks = [consumer, ticker]
        if self.replay is not None:
            tasks.append(asyncio.create_task(self.feed_replay(end)))
        try:
            await self.scheduler(end)
            # Drain: no new arrivals; keep serving deadlines and reactions until every recent
            # request is answered or the drain time is over.
            drain = min(DRAIN_SECONDS, self.scenario.recommendation_timeout)
            await self.scheduler(time.monotonic() + drain, until_idle=True)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.sender.close()
            with contextlib.suppress(KafkaError):
                await self.producer.flush()
            await self.producer.stop()
            await self.consumer.stop()
        now = time.monotonic()
        # Requests younger than the recommendation timeout may still be answered: they are in
        # flight, not failures. Older unanswered ones count as infinitely slow in percentiles.
        self.tracker.in_flight(now)
        self.tracker.uncount_in_flight()
        # So every request counted is answered or timed out (the rest are in flight).
        self.engine.count_given_up(self.tracker.pending, now)
        self.engine.end_all(now)
        self.publish()
        stats = self.simulated.stats
        verdicts = evaluate(self.thresholds, stats.figures(), final=True)
        for v in verdicts:
            m.THRESHOLD_BREACHED.labels(run_id=self.run_id, threshold=v.threshold).set(
                0 if v.passed else 1
            )
        return RunResult(
            run_id=self.run_id,
            scenario=self.scenario,
            shard=self.shard,
            stats=stats,
            verdicts=verdicts,
            aborted=self.aborted,
            started=started,
            finished=time.time(),
            versions={
                "population": self.engine.pop.version,
                "behaviour": self.engine.behaviour.version,
            },
            recommender=self.recommender,
            replay_stats=None if self.replayed is None else self.replayed.stats,
        )


def last_second_latency(stats: RunStats, i: int) -> dict[str, float | None] | None:
    """p50/p90/p99 latency (seconds, from the intended time) of second `i` of the timeline."""
    if not 0 <= i < len(stats.timeline) or not stats.timeline[i].latency.get_total_count():
        return None
    v = percentile_values(stats.timeline[i].latency, [50, 90, 99])
    return {f"p{q}": v[q] / 1e6 for q in (50, 90, 99)}


def run_simulation(
    scenario: Scenario,
    settings: Settings,
    *,
    shard: Shard = Shard(),
    run_id: str | None = None,
    on_tick: Callable[[Snapshot], None] | None = None,
) -> RunResult:
    """Blocking wrapper around `Simulation.run`."""
    sim = Simulation(scenario, settings, shard=shard, run_id=run_id, on_tick=on_tick)
    return asyncio.run(sim.run())

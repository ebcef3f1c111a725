"""The simulation loop: open-loop arrivals, event sending, recommendation matching, reactions.

One asyncio scheduler holds every timed action (session arrivals, user events, patience
deadlines) in a heap keyed by intended time and releases each when its time comes, never
because an earlier send was slow; how late each send left is recorded (`Pacer.record`). A
consumer reads the recommendations topic, matches each one to its triggering event by
`event_id`, records latency from the intended and the actual send time, and hands the slates
to the behaviour model in batches. The simulator talks to the recommender only through Kafka
and `recloop.core.contract`.

A scenario's `replay:` section adds recorded users: their events enter the same heap at their
intended times (a feeder task keeps it filled a little ahead), leave through the same sender,
and their answers are matched and timed the same way, into a second `RunStats` and metrics
labelled `source="replay"`. Replayed users do not react; they follow the recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from recloop.core.contract import (
    ContractError,
    EventType,
    Recommendation,
    UserEvent,
    decode_recommendation,
    encode,
)
from recloop.core.errors import RunError, kafka_unreachable
from recloop.core.settings import Settings
from recloop.core.topics import TopicError, assign_at_end
from recloop.simulator import metrics as m
from recloop.simulator.behaviour import (
    Behaviour,
    ModelBehaviour,
    WorldBehaviour,
    true_top_k,
    uniforms,
)
from recloop.simulator.pacing import SPIN_SECONDS, Pacer
from recloop.simulator.population import Population, Shard, build_population
from recloop.simulator.replay.scenario import ScenarioReplay, load_scenario_replay
from recloop.simulator.scenario import Scenario
from recloop.simulator.sender import BatchSender
from recloop.simulator.stats import RunStats
from recloop.simulator.thresholds import Verdict, evaluate
from recloop.simulator.users import Decision, EndReason, SimUser, decide, drift

TRIGGERS = frozenset({EventType.SESSION_START, EventType.CLICK, EventType.REQUEST})
"""Events that ask the recommender for a slate (the worker's default `trigger_on`)."""
HIT_K = 10
DRAIN_SECONDS = 3.0
"""After the last stage, how long to wait for outstanding recommendations."""

REPLAY_LOOKAHEAD = 0.5
"""Seconds ahead of their intended time that replayed events are moved into the heap."""

ARRIVAL, SEND, DEADLINE, REPLAY = 0, 1, 2, 3


class SimulationError(RunError):
    """The simulation could not run (broker unreachable, topic missing, bad population)."""


@dataclass(slots=True)
class Outgoing:
    """An event a user will send at its intended time."""

    kind: EventType
    item: int | None = None
    request_id: str | None = None
    position: int | None = None
    awaits: bool = False
    """The user waits for the recommendation this event triggers."""


@dataclass(slots=True)
class Pending:
    """A triggering event sent and not yet answered."""

    row: int
    """The simulated user's row, or -1 for a replayed event."""
    intended: float
    sent: float
    awaited: bool


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
    """One simulator process running `scenario` against whatever answers on the topics."""

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
        self.pop = pop
        self.behaviour: Behaviour = (
            WorldBehaviour(truth)
            if scenario.population.source == "world"
            else ModelBehaviour(truth, scenario.population.behaviour)
        )
        self.item_index = pop.item_index()
        self.users = [
            SimUser(r, int(g), uid, [int(i) for i in pop.seed_history[r] if i > 0])
            for r, (g, uid) in enumerate(zip(pop.global_index, pop.user_ids, strict=True))
        ]
        self.by_id = {u.user_id: u for u in self.users}
        self.thresholds = scenario.parsed_thresholds()
        self.stats = RunStats(
            n_items=len(pop.item_ids), exposure=np.zeros(len(pop.item_ids), np.int64)
        )
        self.pacer = Pacer(scenario.late_threshold)
        self.stats.schedule_lag = self.pacer.lag
        self.rng = np.random.default_rng([scenario.seed, 11, shard.index, shard.count])
        self.fresh = self.rng.permutation(len(self.users))
        self.next_fresh = 0
        self.returners: list[tuple[float, int]] = []
        self.heap: list[tuple[float, int, int, int, object]] = []
        self.counter = 0
        self.pending: dict[str, Pending] = {}
        self.reply_routes: dict[str, str] = {}
        self.active = 0
        self.recommender: dict[str, str] = {}
        self._labels = {"run_id": self.run_id, "source": "sim"}
        self._sent_by_type = {
            t: m.EVENTS_SENT.labels(event_type=t.value, **self._labels) for t in EventType
        }
        self.aborted = False
        self.replay = replay
        if self.replay is None and scenario.replay is not None:
            self.replay = load_scenario_replay(scenario.replay, shard, self.run_id)
        self.replay_stats: RunStats | None = None
        if self.replay is not None:
            self.replay_stats = RunStats(
                n_items=len(pop.item_ids), exposure=np.zeros(len(pop.item_ids), np.int64)
            )
            self.replay_pacer = Pacer(scenario.late_threshold)
            self.replay_stats.schedule_lag = self.replay_pacer.lag
            self._replay_labels = {"run_id": self.run_id, "source": "replay"}
            self._replay_sent_by_type = {
                t: m.EVENTS_SENT.labels(event_type=t.value, **self._replay_labels)
                for t in EventType
            }

    # -- scheduling -------------------------------------------------------------------------

    def push(self, t: float, kind: int, row: int = -1, arg: object = None) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (t, self.counter, kind, row, arg))

    def at(self, t: float) -> float:
        """Seconds since the start of the run for monotonic time `t`."""
        return t - self.t0

    def wall(self, t: float) -> float:
        return self.wall0 + (t - self.t0)

    def next_arrival(self, t: float) -> float | None:
        """Next Poisson arrival after `t` (thinning against the stage's current rate)."""
        end = self.t0 + self.scenario.duration
        while t < end:
            rate = self.scenario.rate_at(self.at(t)) / self.shard.count
            if rate <= 0:
                t += 0.05
                continue
            # Exponential gaps at the current rate; rates change slowly next to a gap.
            t += float(self.rng.exponential(1.0 / rate))
            if t < end:
                return t
        return None

    def pick_user(self, t: float) -> SimUser | None:
        if self.returners and self.returners[0][0] <= t:
            _, row = heapq.heappop(self.returners)
            return self.users[row]
        for _ in range(len(self.users)):
            if self.next_fresh < len(self.fresh):
                row = int(self.fresh[self.next_fresh])
                self.next_fresh += 1
            else:
                row = int(self.rng.integers(len(self.users)))
            user = self.users[row]
            if not user.active:
                return user
        return None

    # -- actions ----------------------------------------------------------------------------

    def arrival(self, t: float) -> None:
        nxt = self.next_arrival(t)
        if nxt is not None:
            self.push(nxt, ARRIVAL)
        user = self.pick_user(t)
        if user is None:
            return
        if user.sessions:
            self.stats.count("returns", self.at(t))
            if user.sessions == 1:
                self.stats.users_returned += 1
            # Interest drift: preferences move a little between sessions.
            # Seeded per (user, session), so drift does not depend on arrival order.
            rng = np.random.default_rng([self.scenario.seed, user.global_index, user.sessions])
            noise = rng.standard_normal(self.pop.preference.shape[1]).astype(np.float32)
            self.pop.preference[user.row] = drift(
                self.pop.preference[user.row], self.scenario.user.drift, noise
            )
        else:
            self.stats.users_seen += 1
        user.start_session(self.run_id)
        self.active += 1
        self.stats.count("sessions_started", self.at(t))
        self.m_started.inc()
        self.send(user, t, Outgoing(EventType.SESSION_START, awaits=True))

    def send(self, user: SimUser, intended: float, out: Outgoing) -> None:
        """Send one event now, for its intended time; triggers start waiting for an answer."""
        self.stats.count("events_intended", self.at(intended))
        self.seq += 1
        event_id = f"{self.run_id}-{self.shard.index}-{self.seq}"  # unique across shards
        item = None if out.item is None else self.pop.item_ids[out.item]
        event = UserEvent(
            event_id=event_id,
            user_id=user.user_id,
            event_type=out.kind,
            event_time=self.wall(intended),
            seq=self.seq,
            item_id=item,
            produce_time=time.time(),
            request_id=out.request_id,
            position=out.position,
            session_id=user.session_id,
        )
        lag = self.pacer.record(intended)
        self.m_lag.observe(lag)
        now = time.monotonic()
        if lag > self.scenario.late_threshold:
            self.stats.count("late_sends", self.at(now))
            self.m_late.inc()
        self.sender.send(user.key, encode(event))
        self.stats.count("events_sent", self.at(now))
        self._sent_by_type[out.kind].inc()
        user.depth += 1
        if out.item is not None:
            user.remember(out.item)
        if out.kind in TRIGGERS:
            self.stats.count("requests", self.at(now))
            self.pending[event_id] = Pending(user.row, intended, now, out.awaits)
            if out.awaits:
                user.waiting = event_id
                patience = float(self.pop.patience[user.row])
                self.push(intended + patience, DEADLINE, user.row, event_id)

    def send_replayed(self, intended: float, recorded: UserEvent) -> None:
        """Send one replayed event now, for its intended time; triggers are matched and timed.

        The event keeps its user, type, item, session and order; it gets a run-unique event id,
        the runner's increasing `seq` (so the recommender's per-user ordering holds, also
        against a simulated user with the same id) and the actual produce time.
        """
        stats = self.replay_stats
        assert stats is not None
        stats.count("events_intended", self.at(intended))
        self.seq += 1
        event_id = f"{self.run_id}~{recorded.event_id}"
        event = msgspec.structs.replace(
            recorded, event_id=event_id, seq=self.seq, produce_time=time.time()
        )
        lag = self.replay_pacer.record(intended)
        self.m_replay_lag.observe(lag)
        now = time.monotonic()
        if lag > self.scenario.late_threshold:
            stats.count("late_sends", self.at(now))
            self.m_replay_late.inc()
        self.sender.send(event.user_id.encode(), encode(event))
        stats.count("events_sent", self.at(now))
        self._replay_sent_by_type[event.event_type].inc()
        if event.event_type in TRIGGERS:
            stats.count("requests", self.at(now))
            self.pending[event_id] = Pending(-1, intended, now, False)

    async def feed_replay(self, end: float) -> None:
        """Move replayed events into the heap `REPLAY_LOOKAHEAD` s before their intended time."""
        assert self.replay is not None
        if not self.replay.plan.rows:  # this shard has no replayed users
            return
        start = self.t0 + self.replay.start
        fed = 0
        async for intended, event in self.replay.source.events(start, self.wall(start)):
            if intended >= end:
                return
            ahead = intended - REPLAY_LOOKAHEAD - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            self.push(intended, REPLAY, -1, event)
            fed += 1
            if fed % 256 == 0:
                await asyncio.sleep(0)

    def _on_send_error(self, n: int) -> None:
        self.stats.count("send_errors", self.at(time.monotonic()), n)

    def deadline(self, t: float, user: SimUser, event_id: str) -> None:
        if user.waiting != event_id or not user.active:
            return
        self.stats.count("timeouts", self.at(t))
        self.m_timeouts.inc()
        self.send(user, t, Outgoing(EventType.LEAVE))
        self.end_session(user, t, EndReason.ABANDONED)

    def end_session(
        self, user: SimUser, t: float, reason: EndReason, back: bool = False, gap: float = 1.0
    ) -> None:
        user.active = False
        user.waiting = None
        self.active -= 1
        self.stats.count("sessions_ended", self.at(t))
        self.stats.ended_by[reason.value] = self.stats.ended_by.get(reason.value, 0) + 1
        self.stats.depth_sum += user.depth
        if reason is EndReason.ABANDONED:
            self.stats.count("abandoned", self.at(t))
        m.SESSIONS_ENDED.labels(reason=reason.value, **self._labels).inc()
        self.m_depth.observe(user.depth)
        if back:
            wait = gap * max(1e-3, self.scenario.user.return_after)
            heapq.heappush(self.returners, (t + wait, user.row))

    # -- recommendations --------------------------------------------------------------------

    def on_recommendations(self, recs: list[Recommendation], now: float) -> None:
        """Match recommendations to requests and let the waiting users react, as one batch."""
        batch: list[tuple[SimUser, Recommendation]] = []
        for rec in recs:
            p = self.pending.pop(rec.event_id, None)
            if p is None:
                if rec.user_id in self.by_id:
                    self.stats.count("unmatched_recommendations", self.at(now))
                elif self.replay is not None and rec.user_id in self.replay.users:
                    assert self.replay_stats is not None
                    self.replay_stats.count("unmatched_recommendations", self.at(now))
                continue
            self.recommender = {"strategy": rec.strategy, "model_version": rec.model_version}
            if p.row < 0:
                self.replayed_answer(rec, p, now)
                continue
            self.stats.count("recommendations", self.at(now))
            self.m_recs.inc()
            self.stats.record_latency(self.at(now), now - p.intended, now - p.sent)
            self.m_lat_intended.observe(now - p.intended)
            self.m_lat_actual.observe(now - p.sent)
            user = self.users[p.row]
            if user.waiting != rec.event_id or not user.active:
                if p.awaited:  # the user gave up before it came
                    self.stats.count("late_recommendations", self.at(now))
                continue
            user.waiting = None
            batch.append((user, rec))
        if batch:
            self.react(batch, now)

    def replayed_answer(self, rec: Recommendation, p: Pending, now: float) -> None:
        """Time an answer to a replayed event (the same figures as for simulated users)."""
        stats = self.replay_stats
        assert stats is not None
        t = self.at(now)
        stats.count("recommendations", t)
        self.m_replay_recs.inc()
        stats.record_latency(t, now - p.intended, now - p.sent)
        self.m_replay_lat_intended.observe(now - p.intended)
        self.m_replay_lat_actual.observe(now - p.sent)
        stats.count("impressions", t, len(rec.items))
        get = self.item_index.get
        known = np.fromiter((get(s.item_id, -1) for s in rec.items), np.int64, len(rec.items))
        stats.expose(known)

    def react(self, batch: list[tuple[SimUser, Recommendation]], now: float) -> None:
        width = max(1, max(len(r.items) for _, r in batch))
        slates = np.full((len(batch), width), -1, np.int64)
        get = self.item_index.get
        for i, (_, rec) in enumerate(batch):
            slates[i, : len(rec.items)] = [get(s.item_id, -1) for s in rec.items]
        rows = np.fromiter((u.row for u, _ in batch), np.int64, len(batch))
        pref = self.pop.preference[rows]
        steps = np.fromiter((u.step for u, _ in batch), np.float64, len(batch))
        hist_len = 50
        histories = np.zeros((len(batch), hist_len), np.int64)
        repeat = np.zeros(len(batch))
        for i, (u, _rec) in enumerate(batch):
            h = u.history[-hist_len:]
            if h:
                histories[i, hist_len - len(h) :] = h
            known = slates[i][slates[i] >= 0]
            if len(known):
                repeat[i] = sum(1 for x in known.tolist() if x in u.shown) / len(known)
        reaction = self.behaviour.react(pref, histories, slates, steps)
        gidx = self.pop.global_index[rows]
        draws = np.fromiter((u.draws for u, _ in batch), np.int64, len(batch))
        u_all = uniforms(self.scenario.seed, gidx, draws, 2 * width + 6)
        sat = np.fromiter((u.clicks / max(1, u.step + 1) for u, _ in batch), np.float64, len(batch))
        us = self.scenario.user
        decisions = decide(
            reaction,
            u_all,
            steps,
            repeat,
            self.pop.session_length[rows],
            fatigue=us.fatigue,
            boredom=us.boredom,
            organic_share=us.organic_share,
            return_probability=us.return_probability,
            satisfaction=sat,
        )
        t_rel = self.at(now)
        truth = true_top_k(pref, self.pop.item_vectors, HIT_K, self.pop.first_item)
        for i, ((user, rec), d) in enumerate(zip(batch, decisions, strict=True)):
            user.draws += 1
            known = slates[i][slates[i] >= 0]
            self.stats.count("impressions", t_rel, len(rec.items))
            self.m_impr.inc(len(rec.items))
            if len(known):
                self.stats.expose(known)
                self.stats.novelty_sum += float(-np.log2(self.pop.item_popularity[known]).sum())
                user.shown.update(known.tolist())
            hits = len(np.intersect1d(known, truth[i]))
            self.stats.count("judged_slates", t_rel)
            self.stats.count("hits", t_rel, hits)
            if hits:
                self.stats.count("hit_slates", t_rel)
            self.schedule_decision(user, rec, d, slates[i], now)

    def schedule_decision(
        self, user: SimUser, rec: Recommendation, d: Decision, slate: np.ndarray, now: float
    ) -> None:
        think = float(self.pop.think_time[user.row]) * d.think
        t = now + think
        user.step += 1
        if d.organic:
            # Organic browsing: an item the user finds on their own, not from the slate.
            pref = self.pop.preference[user.row]
            # The best of 20 items from a stretch of the catalogue chosen by the user's draw.
            n = len(self.pop.item_ids) - self.pop.first_item
            start = self.pop.first_item + int(d.pick * n)
            cand = self.pop.first_item + (np.arange(start, start + 20) - self.pop.first_item) % n
            item = int(cand[np.argmax(self.pop.item_vectors[cand] @ pref)])
            self.push(t, SEND, user.row, Outgoing(EventType.VIEW, item=item))
            self.stats.count("organic", self.at(now))
            t += think * 0.5
        if d.click is not None and slate[d.click] >= 0:
            item = int(slate[d.click])
            user.clicks += 1
            self.stats.count("clicks", self.at(now))
            self.m_clicks.inc()
            click = Outgoing(
                EventType.CLICK,
                item=item,
                request_id=rec.request_id,
                position=d.click,
                awaits=d.leave is None,
            )
            self.push(t, SEND, user.row, click)
            if d.buy:
                user.bought = True
                self.stats.count("purchases", self.at(now))
                self.m_buys.inc()
                for k, kind in ((0.2, EventType.CART), (0.4, EventType.PURCHASE)):
                    out = Outgoing(kind, item=item, request_id=rec.request_id, position=d.click)
                    self.push(t + k * think, SEND, user.row, out)
                t += 0.5 * think
        elif d.leave is None:
            self.push(t, SEND, user.row, Outgoing(EventType.REQUEST, awaits=True))
        if d.leave is not None:
            self.push(t + 0.01, SEND, user.row, Outgoing(EventType.LEAVE))
            self.end_session(user, t, d.leave, back=d.comes_back, gap=d.gap)

    # -- loops ------------------------------------------------------------------------------

    def in_flight(self, now: float) -> int:
        """Requests sent less than the recommendation timeout ago and not answered yet."""
        # Pending is in send order, so given-up requests are at the front: pruning is amortised
        # O(1) per request. An answer that comes after that is counted as unmatched.
        timeout = self.scenario.recommendation_timeout
        pending = self.pending
        while pending:
            first = next(iter(pending))
            if now - pending[first].intended < timeout:
                break
            if pending.pop(first).row < 0 and self.replay_stats is not None:
                # Replayed users have no patience: a given-up request is their timeout.
                self.replay_stats.count("timeouts", self.at(now))
        return len(pending)

    async def scheduler(self, end: float, until_idle: bool = False) -> None:
        handled = 0
        next_idle_check = 0.0
        while not self.aborted:
            now = time.monotonic()
            if now >= end:
                return
            if until_idle and now >= next_idle_check:
                next_idle_check = now + 0.05
                if not self.in_flight(now):
                    return
            while self.heap and self.heap[0][0] <= now:
                t, _, kind, row, arg = heapq.heappop(self.heap)
                if kind == ARRIVAL:
                    self.arrival(t)
                elif kind == SEND:
                    user = self.users[row]
                    assert isinstance(arg, Outgoing)
                    if user.active or arg.kind is EventType.LEAVE or not arg.awaits:
                        self.send(user, t, arg)
                elif kind == DEADLINE:
                    assert isinstance(arg, str)
                    self.deadline(t, self.users[row], arg)
                elif kind == REPLAY:
                    assert isinstance(arg, UserEvent)
                    self.send_replayed(t, arg)
                handled += 1
                if handled % 256 == 0:
                    await asyncio.sleep(0)  # let the consumer run while catching up
                now = time.monotonic()
            delay = (self.heap[0][0] if self.heap else now + 0.01) - time.monotonic()
            if delay > SPIN_SECONDS:
                await asyncio.sleep(min(delay - SPIN_SECONDS, 0.01))
            else:
                await asyncio.sleep(0)

    async def consume(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=20, max_records=2000)
            now = time.monotonic()
            recs: list[Recommendation] = []
            for records in batches.values():
                for r in records:
                    try:
                        recs.append(decode_recommendation(r.value or b""))
                    except ContractError:
                        self.stats.count("unmatched_recommendations", self.at(now))
            if recs:
                self.on_recommendations(recs, now)

    async def ticker(self, end: float) -> None:
        last_sent = 0
        last_t = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            snap = self.snapshot(
                now, (self.stats.counts["events_sent"] - last_sent) / (now - last_t)
            )
            last_sent, last_t = self.stats.counts["events_sent"], now
            self.in_flight(now)  # prune requests given up on
            self.m_target.set(snap.target_rate)
            self.m_active.set(self.active)
            for v in snap.verdicts:
                m.THRESHOLD_BREACHED.labels(run_id=self.run_id, threshold=v.threshold).set(
                    0 if v.passed else 1
                )
            if self.on_tick:
                self.on_tick(snap)
            if self.scenario.abort_on_breach and not all(v.passed for v in snap.verdicts):
                self.aborted = True

    def snapshot(self, now: float, achieved: float) -> Snapshot:
        figures = self.stats.figures()
        i = int(self.at(now)) - 1
        target = (
            self.stats.timeline[i].counts["events_intended"]
            if 0 <= i < len(self.stats.timeline)
            else 0
        )
        return Snapshot(
            elapsed=self.at(now),
            duration=self.scenario.duration,
            target_rate=float(target),
            achieved_rate=achieved,
            active_sessions=self.active,
            figures=figures,
            verdicts=evaluate(self.thresholds, self.live_figures(figures), final=False),
            counts=dict(self.stats.counts),
            replay_counts=None if self.replay_stats is None else dict(self.replay_stats.counts),
        )

    def live_figures(self, figures: dict[str, float | None]) -> dict[str, float | None]:
        # While running, requests still within their patience are in flight, not failures.
        f = dict(figures)
        for k in list(f):
            if k.startswith("latency.") and f[k] == math.inf:
                f[k] = None
        return f

    # -- the run ----------------------------------------------------------------------------

    def _bind_metrics(self) -> None:
        lab = self._labels
        self.m_started = m.SESSIONS_STARTED.labels(**lab)
        self.m_lag = m.SCHEDULE_LAG.labels(**lab)
        self.m_late = m.LATE_SENDS.labels(**lab)
        self.m_timeouts = m.TIMEOUTS.labels(**lab)
        self.m_recs = m.RECOMMENDATIONS.labels(**lab)
        self.m_lat_intended = m.RECOMMENDATION_LATENCY.labels(basis="intended", **lab)
        self.m_lat_actual = m.RECOMMENDATION_LATENCY.labels(basis="actual", **lab)
        self.m_impr = m.IMPRESSIONS.labels(**lab)
        self.m_clicks = m.CLICKS.labels(**lab)
        self.m_buys = m.PURCHASES.labels(**lab)
        self.m_depth = m.SESSION_DEPTH.labels(**lab)
        self.m_target = m.TARGET_RATE.labels(**lab)
        self.m_active = m.ACTIVE_SESSIONS.labels(**lab)
        if self.replay is not None:
            rl = self._replay_labels
            self.m_replay_lag = m.SCHEDULE_LAG.labels(**rl)
            self.m_replay_late = m.LATE_SENDS.labels(**rl)
            self.m_replay_recs = m.RECOMMENDATIONS.labels(**rl)
            self.m_replay_lat_intended = m.RECOMMENDATION_LATENCY.labels(basis="intended", **rl)
            self.m_replay_lat_actual = m.RECOMMENDATION_LATENCY.labels(basis="actual", **rl)

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
            raise SimulationError(kafka_unreachable(self.settings.bootstrap, exc)) from None
        for name in (self.events_topic, self.recs_topic):
            if name not in topics:
                raise SimulationError(
                    f"topic {name!r} does not exist on {self.settings.bootstrap}; "
                    "create it (the worker or `recloop demo` does) or set the scenario's topics"
                )
        # Fetch the events topic's metadata now: the first send would otherwise wait for it
        # while the schedule runs on, making the first second of every run late.
        events_partitions = await self.producer.partitions_for(self.events_topic)
        self.sender = BatchSender(
            self.producer, self.events_topic, sorted(events_partitions), self._on_send_error
        )
        self.sender.start()
        try:
            await assign_at_end(self.consumer, self.producer, self.recs_topic)
        except TopicError as exc:
            raise SimulationError(str(exc)) from None

    async def run(self) -> RunResult:
        """Run the scenario to the end (or to a breached threshold with abort_on_breach)."""
        self._bind_metrics()
        await self._start_clients()
        # Users, the heap and the stats live for the whole run: keep them out of the cyclic
        # GC's generations, whose full collections would otherwise stall the schedule.
        gc.collect()
        gc.freeze()
        started = time.time()
        self.t0 = time.monotonic()
        self.wall0 = started
        # Sequence numbers start from the wall clock so a user re-run on the same topics still
        # moves forward in the recommender's per-user ordering.
        self.seq = int(started * 1000) * 1000
        first = self.next_arrival(self.t0)
        if first is not None:
            self.push(first, ARRIVAL)
        end = self.t0 + self.scenario.duration
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
        self.in_flight(now)
        replayed = sum(1 for p in self.pending.values() if p.row < 0)
        self.stats.counts["requests"] -= len(self.pending) - replayed
        if self.replay_stats is not None:
            self.replay_stats.counts["requests"] -= replayed
        for user in self.users:
            if user.active:
                self.end_session(user, now, EndReason.END_OF_RUN)
        verdicts = evaluate(self.thresholds, self.stats.figures(), final=True)
        for v in verdicts:
            m.THRESHOLD_BREACHED.labels(run_id=self.run_id, threshold=v.threshold).set(
                0 if v.passed else 1
            )
        return RunResult(
            run_id=self.run_id,
            scenario=self.scenario,
            shard=self.shard,
            stats=self.stats,
            verdicts=verdicts,
            aborted=self.aborted,
            started=started,
            finished=time.time(),
            versions={"population": self.pop.version, "behaviour": self.behaviour.version},
            recommender=self.recommender,
            replay_stats=self.replay_stats,
        )


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

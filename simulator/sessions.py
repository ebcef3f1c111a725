"""The user-session engine: simulated users, their sessions and decisions, and the schedule.

No Kafka here. Every timed action (a session arrival, a user's next event, a patience deadline,
and the runner's replayed events) waits in one `Schedule`, a heap keyed by intended time; the
runner releases each when its time comes and hands the engine's own actions back to `act`. An
event the engine decides to send leaves through the runner's `Emit` at its intended time;
answers come back through `answered`, and the users that were waiting for them react together,
one batch per consumer poll (`react`: numpy, or one onnxruntime call).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from recloop.core.contract import EventType, Recommendation, UserEvent
from recloop.simulator import metrics as m
from recloop.simulator.pacing import RunClock
from recloop.simulator.population import Population, Shard
from recloop.simulator.reactions import (
    Behaviour,
    ModelBehaviour,
    WorldBehaviour,
    true_top_k,
    uniforms,
)
from recloop.simulator.requests import TRIGGERS, Pending, Source
from recloop.simulator.scenario import Scenario
from recloop.simulator.users import Decision, EndReason, SimUser, decide, drift

HIT_K = 10

ARRIVAL, SEND, DEADLINE, REPLAY = 0, 1, 2, 3
"""What a schedule entry is: a session arrival, a user's event, a patience deadline, or (the
runner's) a replayed event."""

Emit = Callable[[Source, bytes, UserEvent, float, int, bool], float]
"""Sends `(source, key, event, intended, row, awaited)` now and returns the send time."""


@dataclass(slots=True)
class Outgoing:
    """An event a user will send at its intended time."""

    kind: EventType
    item: int | None = None
    request_id: str | None = None
    position: int | None = None
    awaits: bool = False
    """The user waits for the recommendation this event triggers."""


class Schedule:
    """Timed actions in a heap by intended time; equal times leave in push order."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, int, object]] = []
        self.counter = 0

    def push(self, t: float, kind: int, row: int = -1, arg: object = None) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (t, self.counter, kind, row, arg))

    def pop(self) -> tuple[float, int, int, int, object]:
        return heapq.heappop(self.heap)


@dataclass(slots=True)
class SessionMetrics:
    """The simulated users' own Prometheus children (replayed users have no sessions)."""

    started: Counter
    timeouts: Counter
    impressions: Counter
    clicks: Counter
    purchases: Counter
    depth: Histogram
    active: Gauge
    target_rate: Gauge
    labels: dict[str, str]
    tally: m.Tally
    """Where the per-event updates wait for the source's next `publish()`."""
    ended_by: dict[EndReason, Counter]

    @classmethod
    def bind(cls, run_id: str, source: str, tally: m.Tally) -> SessionMetrics:
        lab = {"run_id": run_id, "source": source}
        return cls(
            started=m.SESSIONS_STARTED.labels(**lab),
            timeouts=m.TIMEOUTS.labels(**lab),
            impressions=m.IMPRESSIONS.labels(**lab),
            clicks=m.CLICKS.labels(**lab),
            purchases=m.PURCHASES.labels(**lab),
            depth=m.SESSION_DEPTH.labels(**lab),
            active=m.ACTIVE_SESSIONS.labels(**lab),
            target_rate=m.TARGET_RATE.labels(**lab),
            labels=lab,
            tally=tally,
            ended_by={},
        )

    def inc(self, counter: Counter, amount: float = 1) -> None:
        """Count in Prometheus at the source's next publish."""
        self.tally.inc(counter, amount)

    def ended(self, reason: EndReason, depth: int) -> None:
        child = self.ended_by.get(reason)
        if child is None:
            child = self.ended_by[reason] = m.SESSIONS_ENDED.labels(
                reason=reason.value, **self.labels
            )
        self.tally.inc(child)
        self.tally.observe(self.depth, depth)


class SessionEngine:
    """This process's simulated users: arrivals, sessions, reactions, all on one schedule."""

    def __init__(
        self,
        scenario: Scenario,
        shard: Shard,
        run_id: str,
        source: Source,
        clock: RunClock,
        emit: Emit,
        population: tuple[Population, object],
    ) -> None:
        """`population` is this shard's users and the world's truth (`build_population`)."""
        self.scenario = scenario
        self.shard = shard
        self.run_id = run_id
        self.source = source
        self.stats = source.stats
        self.clock = clock
        self.emit = emit
        pop, truth = population
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
        self.rng = np.random.default_rng([scenario.seed, 11, shard.index, shard.count])
        self.fresh = self.rng.permutation(len(self.users))
        self.next_fresh = 0
        self.returners: list[tuple[float, int]] = []
        self.schedule = Schedule()
        self.active = 0
        self.metrics = SessionMetrics.bind(run_id, source.name, source.tally)
        self.duration = scenario.duration  # a sum over the stages: once, not per arrival
        k = min(HIT_K, len(pop.item_ids) - pop.first_item)
        self.truth = np.zeros((len(self.users), k), np.int64)
        """Each user's truly best items (hit-rate ground truth), valid while not `stale`."""
        self.stale = np.ones(len(self.users), bool)

    # -- scheduling -------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first arrival (the clock has started)."""
        first = self.next_arrival(self.clock.t0)
        if first is not None:
            self.schedule.push(first, ARRIVAL)

    def act(self, t: float, kind: int, row: int, arg: object) -> None:
        """Carry out one of the engine's own schedule entries, due at `t`."""
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

    def next_arrival(self, t: float) -> float | None:
        """Next Poisson arrival after `t` (thinning against the stage's current rate)."""
        end = self.clock.t0 + self.duration
        while t < end:
            rate = self.scenario.rate_at(self.clock.at(t)) / self.shard.count
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
            self.schedule.push(nxt, ARRIVAL)
        user = self.pick_user(t)
        if user is None:
            return
        if user.sessions:
            self.stats.count("returns", self.clock.at(t))
            if user.sessions == 1:
                self.stats.users_returned += 1
            # Interest drift: preferences move a little between sessions.
            # Seeded per (user, session), so drift does not depend on arrival order.
            rng = np.random.default_rng([self.scenario.seed, user.global_index, user.sessions])
            noise = rng.standard_normal(self.pop.preference.shape[1]).astype(np.float32)
            self.pop.preference[user.row] = drift(
                self.pop.preference[user.row], self.scenario.user.drift, noise
            )
            self.stale[user.row] = True
        else:
            self.stats.users_seen += 1
        first = not user.sessions
        user.start_session(self.run_id)
        self.active += 1
        self.stats.count("sessions_started", self.clock.at(t))
        self.metrics.inc(self.metrics.started)
        if first and self.scenario.population.source == "model":
            self.send_history(user, t)
        self.send(user, t, Outgoing(EventType.SESSION_START, awaits=True))

    def send_history(self, user: SimUser, t: float) -> None:
        """A learned user's past as `view` events, oldest first, before their first session.

        The behaviour model reacts from the user's seed history; without these events the
        recommender would answer the same user as a stranger (`population.send_history`)."""
        if not self.scenario.population.send_history:
            return
        for item in list(user.history):
            self.send(user, t, Outgoing(EventType.VIEW, item=item), remember=False)
        user.depth = 0  # the past is not part of the session

    def send(self, user: SimUser, intended: float, out: Outgoing, remember: bool = True) -> None:
        """Send one event now, for its intended time; triggers start waiting for an answer."""
        seq = self.clock.next_seq()
        event_id = f"{self.run_id}-{self.shard.index}-{seq}"  # unique across shards
        item = None if out.item is None else self.pop.item_ids[out.item]
        event = UserEvent(
            event_id=event_id,
            user_id=user.user_id,
            event_type=out.kind,
            event_time=self.clock.wall(intended),
            seq=seq,
            item_id=item,
            produce_time=time.time(),
            request_id=out.request_id,
            position=out.position,
            session_id=user.session_id,
        )
        self.emit(self.source, user.key, event, intended, user.row, out.awaits)
        user.depth += 1
        if out.item is not None and remember:
            user.remember(out.item)
        if out.kind in TRIGGERS and out.awaits:
            user.waiting = event_id
            patience = float(self.pop.patience[user.row])
            self.schedule.push(intended + patience, DEADLINE, user.row, event_id)

    def deadline(self, t: float, user: SimUser, event_id: str) -> None:
        if user.waiting != event_id or not user.active:
            return
        self.stats.count("timeouts", self.clock.at(t))
        self.metrics.inc(self.metrics.timeouts)
        self.send(user, t, Outgoing(EventType.LEAVE))
        self.end_session(user, t, EndReason.ABANDONED)

    def end_session(
        self, user: SimUser, t: float, reason: EndReason, back: bool = False, gap: float = 1.0
    ) -> None:
        user.active = False
        user.waiting = None
        self.active -= 1
        self.stats.count("sessions_ended", self.clock.at(t))
        self.stats.ended_by[reason.value] = self.stats.ended_by.get(reason.value, 0) + 1
        self.stats.depth_sum += user.depth
        if reason is EndReason.ABANDONED:
            self.stats.count("abandoned", self.clock.at(t))
        self.metrics.ended(reason, user.depth)
        if back:
            wait = gap * max(1e-3, self.scenario.user.return_after)
            heapq.heappush(self.returners, (t + wait, user.row))

    def count_given_up(self, in_flight: Container[str], now: float) -> None:
        """At the end of a run: a user still waiting for a request that is no longer in flight
        (older than the recommendation timeout, their patience longer still) timed out."""
        for user in self.users:
            if user.active and user.waiting is not None and user.waiting not in in_flight:
                self.stats.count("timeouts", self.clock.at(now))
                self.metrics.inc(self.metrics.timeouts)

    def end_all(self, now: float) -> None:
        """End the sessions still going when the run ends."""
        for user in self.users:
            if user.active:
                self.end_session(user, now, EndReason.END_OF_RUN)

    # -- recommendations --------------------------------------------------------------------

    def item_indices(self, rec: Recommendation) -> np.ndarray:
        """The slate's items as catalogue indices (-1 for items this world does not know)."""
        get = self.item_index.get
        return np.fromiter((get(s.item_id, -1) for s in rec.items), np.int64, len(rec.items))

    def answered(self, answers: list[tuple[Recommendation, Pending]], now: float) -> None:
        """Answers matched to simulated users' requests: the users still waiting react together."""
        batch: list[tuple[SimUser, Recommendation]] = []
        for rec, p in answers:
            user = self.users[p.row]
            if user.waiting != rec.event_id or not user.active:
                if p.awaited:  # the user gave up before it came
                    self.stats.count("late_recommendations", self.clock.at(now))
                continue
            user.waiting = None
            batch.append((user, rec))
        if batch:
            self.react(batch, now)

    def react(self, batch: list[tuple[SimUser, Recommendation]], now: float) -> None:
        width = max(1, max(len(r.items) for _, r in batch))
        slates = np.full((len(batch), width), -1, np.int64)
        for i, (_, rec) in enumerate(batch):
            slates[i, : len(rec.items)] = self.item_indices(rec)
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
        t_rel = self.clock.at(now)
        truth = self.true_top(rows)
        # Hits: how many of each user's truly best items the slate holds (-1 never matches).
        hits = (truth[:, :, None] == slates[:, None, :]).any(axis=2).sum(axis=1)
        impressions = sum(len(rec.items) for _, rec in batch)
        self.stats.count("impressions", t_rel, impressions)
        self.metrics.inc(self.metrics.impressions, impressions)
        self.stats.count("judged_slates", t_rel, len(batch))
        self.stats.count("hits", t_rel, int(hits.sum()))
        self.stats.count("hit_slates", t_rel, int(np.count_nonzero(hits)))
        for i, ((user, rec), d) in enumerate(zip(batch, decisions, strict=True)):
            user.draws += 1
            known = slates[i][slates[i] >= 0]
            if len(known):
                self.stats.expose(known)
                self.stats.novelty_sum += float(-np.log2(self.pop.item_popularity[known]).sum())
                user.shown.update(known.tolist())
            self.schedule_decision(user, rec, d, slates[i], now)

    def true_top(self, rows: np.ndarray) -> np.ndarray:
        """[B, k] the users' truly best items, computed once per preference (drift renews it)."""
        stale = np.unique(rows[self.stale[rows]])
        if len(stale):
            self.truth[stale] = true_top_k(
                self.pop.preference[stale], self.pop.item_vectors, HIT_K, self.pop.first_item
            )
            self.stale[stale] = False
        return self.truth[rows]

    def schedule_decision(
        self, user: SimUser, rec: Recommendation, d: Decision, slate: np.ndarray, now: float
    ) -> None:
        think = float(self.pop.think_time[user.row]) * d.think
        t = now + think
        user.step += 1
        push = self.schedule.push
        if d.organic:
            # Organic browsing: an item the user finds on their own, not from the slate.
            pref = self.pop.preference[user.row]
            # The best of 20 items from a stretch of the catalogue chosen by the user's draw.
            n = len(self.pop.item_ids) - self.pop.first_item
            start = self.pop.first_item + int(d.pick * n)
            cand = self.pop.first_item + (np.arange(start, start + 20) - self.pop.first_item) % n
            item = int(cand[np.argmax(self.pop.item_vectors[cand] @ pref)])
            push(t, SEND, user.row, Outgoing(EventType.VIEW, item=item))
            self.stats.count("organic", self.clock.at(now))
            t += think * 0.5
        if d.click is not None and slate[d.click] >= 0:
            item = int(slate[d.click])
            user.clicks += 1
            self.stats.count("clicks", self.clock.at(now))
            self.metrics.inc(self.metrics.clicks)
            click = Outgoing(
                EventType.CLICK,
                item=item,
                request_id=rec.request_id,
                position=d.click,
                awaits=d.leave is None,
            )
            push(t, SEND, user.row, click)
            if d.buy:
                user.bought = True
                self.stats.count("purchases", self.clock.at(now))
                self.metrics.inc(self.metrics.purchases)
                for k, kind in ((0.2, EventType.CART), (0.4, EventType.PURCHASE)):
                    out = Outgoing(kind, item=item, request_id=rec.request_id, position=d.click)
                    push(t + k * think, SEND, user.row, out)
                t += 0.5 * think
        elif d.leave is None:
            push(t, SEND, user.row, Outgoing(EventType.REQUEST, awaits=True))
        if d.leave is not None:
            push(t + 0.01, SEND, user.row, Outgoing(EventType.LEAVE))
            self.end_session(user, t, d.leave, back=d.comes_back, gap=d.gap)

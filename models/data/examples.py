"""Behaviour-model training examples: (history, slate) -> (clicked, bought, left).

From logs with exposures the slates are the ones really shown. Logs without exposures
(MovieLens, Taobao, RetailRocket) get *sampled impressions*: the item the user really
interacted with plus negatives sampled by the popularity up to that time, in random slots. The
model card says which.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.core.contract import EventType
from recloop.models.data.schema import EVENT_CODE, EmptyDataError, EventLog
from recloop.models.runtime.vocab import Vocabulary

ACTION_CLICK, ACTION_BUY, ACTION_FAVOURITE = 1, 2, 4
"""History action tokens (the runtime's; 3 is the LM's QUERY token)."""
NEGATIVE_TIME_SLICES = 20
"""Sampled negatives come from the popularity up to the event, in steps of 1/20th of the log."""


@dataclass(slots=True)
class BehaviourExamples:
    """Aligned arrays, one row per shown slate."""

    history: np.ndarray
    actions: np.ndarray
    slate: np.ndarray
    click: np.ndarray
    buy: np.ndarray
    leave: np.ndarray
    time: np.ndarray
    sampled_impressions: bool

    def __len__(self) -> int:
        return len(self.slate)

    def take(self, index: np.ndarray) -> BehaviourExamples:
        return BehaviourExamples(
            self.history[index],
            self.actions[index],
            self.slate[index],
            self.click[index],
            self.buy[index],
            self.leave[index],
            self.time[index],
            self.sampled_impressions,
        )

    def split_by_time(
        self, test_fraction: float = 0.2
    ) -> tuple[BehaviourExamples, BehaviourExamples]:
        """Chronological split: the latest `test_fraction` of slates are held out."""
        cut = np.quantile(self.time, 1 - test_fraction)
        return self.take(self.time < cut), self.take(self.time >= cut)


@dataclass(frozen=True, slots=True)
class PopularityRates:
    """The popularity-only behaviour model, fitted on training slates: each item's click rate
    when shown and buy rate when clicked (smoothed towards the overall rates), and the overall
    leave rate. It ignores the user, so it is the floor a behaviour model has to beat."""

    click: np.ndarray
    buy: np.ndarray
    leave: float

    @classmethod
    def fit(cls, data: BehaviourExamples, n_items: int, prior: float = 10.0) -> PopularityRates:
        """`prior` pseudo-observations at the overall rate keep rarely shown items near it."""
        slate = data.slate.ravel()
        shows = np.bincount(slate, minlength=n_items).astype(np.float64)
        clicks = np.bincount(slate, weights=data.click.ravel(), minlength=n_items)
        buys = np.bincount(slate, weights=(data.buy * data.click).ravel(), minlength=n_items)
        click_rate = clicks.sum() / max(shows.sum(), 1.0)
        buy_rate = buys.sum() / max(clicks.sum(), 1.0)
        return cls(
            click=(clicks + prior * click_rate) / (shows + prior),
            buy=(buys + prior * buy_rate) / (clicks + prior),
            leave=float(data.leave.mean()),
        )

    def save(self, path: str | Path) -> None:
        np.savez(path, click=self.click, buy=self.buy, leave=np.float64(self.leave))

    @classmethod
    def load(cls, path: str | Path) -> PopularityRates:
        data = np.load(path)
        return cls(data["click"], data["buy"], float(data["leave"]))

    def react(self, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p_click [B, S], p_buy [B, S], p_leave [B] for slates of item indices."""
        index = np.clip(slates, 0, len(self.click) - 1)
        return self.click[index], self.buy[index], np.full(len(slates), self.leave)


def _history_row(items: deque, length: int) -> tuple[np.ndarray, np.ndarray]:
    h = np.zeros(length, np.int64)
    a = np.zeros(length, np.int64)
    if items:
        arr = np.asarray(items, np.int64)
        h[length - len(arr) :] = arr[:, 0]
        a[length - len(arr) :] = arr[:, 1]
    return h, a


def from_exposures(log: EventLog, vocab: Vocabulary, history_length: int) -> BehaviourExamples:
    """Examples from logged exposures; each user's history is what they clicked before."""
    if not log.exposures:
        raise EmptyDataError(
            "the log has no exposures; use from_interactions (sampled impressions)"
        )
    exposures = sorted(log.exposures, key=lambda e: (e.user_id, e.time))
    hist: dict[str, deque] = defaultdict(lambda: deque(maxlen=history_length))
    rows: dict[str, list] = defaultdict(list)
    for e in exposures:
        h, a = _history_row(hist[e.user_id], history_length)
        slate = vocab.encode(e.slate)
        rows["history"].append(h)
        rows["actions"].append(a)
        rows["slate"].append(slate)
        rows["click"].append(np.asarray(e.clicked, np.float32))
        rows["buy"].append(np.asarray(e.bought, np.float32))
        rows["leave"].append(float(e.left))
        rows["time"].append(e.time)
        for item, clicked, bought in zip(slate, e.clicked, e.bought, strict=True):
            if clicked:
                hist[e.user_id].append((int(item), ACTION_BUY if bought else ACTION_CLICK))
    return BehaviourExamples(
        np.stack(rows["history"]),
        np.stack(rows["actions"]),
        np.stack(rows["slate"]),
        np.stack(rows["click"]),
        np.stack(rows["buy"]),
        np.asarray(rows["leave"], np.float32),
        np.asarray(rows["time"]),
        False,
    )


def from_interactions(
    log: EventLog,
    vocab: Vocabulary,
    history_length: int,
    slate_size: int,
    seed: int,
    max_examples: int | None = None,
    buy_rating: float = 4.0,
    time_slices: int = NEGATIVE_TIME_SLICES,
) -> BehaviourExamples:
    """Sampled impressions: each interaction becomes a slate of the real item plus negatives.

    An *interaction* is a run of one user's consecutive events on one item in one session, so a
    view-heavy log's `view, view, cart, purchase` of an item is one positive that was bought,
    not four positives of which three look unbought. "Bought" means the run holds a purchase
    (or, for rating logs, a rating >= `buy_rating`); "left" means the run ends its session.
    Histories are interactions too, with their action (buy, favourite, click).

    Negatives are drawn by popularity^0.75 *up to the event's time* (the interactions until
    the end of its 1/`time_slices` of the log) and are never the positive item. Drawing them
    from the whole log's popularity showed items that only appear later as negatives of early
    slates, and never as positives there; on catalogues with churn (RetailRocket) a model then
    learns those items as unclickable and ranks them below the negatives exactly when they are
    the real items of the held-out slates (LSTM click AUC 0.354 on a RetailRocket log).
    """
    rng = np.random.default_rng(seed)
    log = log.item_events().sorted()
    if len(log) < 2:
        raise EmptyDataError("too few item events to build behaviour examples")
    encoded = vocab.encode(log.item.astype(str).tolist())
    starts, bought, faved = interaction_runs(log, encoded, buy_rating)
    items, users = encoded[starts], log.user[starts]
    times, sessions = log.time[starts], log.session[starts]
    n_runs = len(starts)
    if n_runs < 2:
        raise EmptyDataError("too few interactions to build behaviour examples")
    same_session_next = np.zeros(n_runs, bool)
    same_session_next[:-1] = (users[1:] == users[:-1]) & (sessions[1:] == sessions[:-1])
    first = np.ones(n_runs, bool)
    first[1:] = users[1:] != users[:-1]
    candidates = np.flatnonzero(~first)
    if max_examples is not None and len(candidates) > max_examples:
        candidates = np.sort(rng.choice(candidates, max_examples, replace=False))
    n = len(candidates)
    history = np.zeros((n, history_length), np.int64)
    actions = np.zeros((n, history_length), np.int64)
    act = np.where(bought, ACTION_BUY, np.where(faved, ACTION_FAVOURITE, ACTION_CLICK))
    user_start = np.maximum.accumulate(np.where(first, np.arange(n_runs), 0))
    for row, i in enumerate(candidates):
        start = max(user_start[i], i - history_length)
        k = i - start
        history[row, history_length - k :] = items[start:i]
        actions[row, history_length - k :] = act[start:i]
    positives = items[candidates]
    negatives = _time_local_negatives(
        items, times, candidates, len(vocab), slate_size - 1, time_slices, rng
    )
    slate = np.concatenate([positives[:, None], negatives], axis=1)
    click = np.zeros((n, slate_size), np.float32)
    click[:, 0] = 1.0
    buy = np.zeros((n, slate_size), np.float32)
    buy[:, 0] = bought[candidates]
    perm = np.argsort(rng.random((n, slate_size)), axis=1)
    slate = np.take_along_axis(slate, perm, 1)
    click = np.take_along_axis(click, perm, 1)
    buy = np.take_along_axis(buy, perm, 1)
    leave = (~same_session_next[candidates]).astype(np.float32)
    return BehaviourExamples(history, actions, slate, click, buy, leave, times[candidates], True)


def behaviour_examples(
    data: EventLog,
    log: EventLog,
    vocab: Vocabulary,
    history_length: int,
    slate_size: int,
    seed: int,
    max_examples: int | None,
) -> BehaviourExamples:
    """Slates from `data`'s exposures if it has any, else sampled impressions from `log` (the
    preprocessed item events): what training and the fidelity report both hold out from."""
    if data.exposures:
        return from_exposures(data, vocab, history_length)
    return from_interactions(log, vocab, history_length, slate_size, seed, max_examples)


def interaction_runs(
    log: EventLog, items: np.ndarray, buy_rating: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of one user's consecutive events on one item in one session, in a sorted log.

    Returns each run's first row, whether it holds a purchase (or a rating >= `buy_rating`)
    and whether it holds a favourite; `items` is the item column to compare (ids or indices).
    """
    new_run = np.ones(len(log), bool)
    new_run[1:] = (
        (log.user[1:] != log.user[:-1])
        | (items[1:] != items[:-1])
        | (log.session[1:] != log.session[:-1])
    )
    starts = np.flatnonzero(new_run)
    purchase = (log.event_type == EVENT_CODE[EventType.PURCHASE]) | (log.value >= buy_rating)
    favourite = log.event_type == EVENT_CODE[EventType.FAVOURITE]
    return (
        starts,
        np.logical_or.reduceat(purchase, starts),
        np.logical_or.reduceat(favourite, starts),
    )


def _time_local_negatives(
    items: np.ndarray,
    times: np.ndarray,
    candidates: np.ndarray,
    n_items: int,
    per_slate: int,
    slices: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """[len(candidates), per_slate] items drawn by popularity^0.75 over the interactions up to
    the end of each candidate's time slice, redrawn where they hit the slate's positive item."""

    def distribution(chosen: np.ndarray) -> np.ndarray:
        counts = np.bincount(chosen, minlength=n_items).astype(np.float64)
        counts[:2] = 0  # padding and out-of-vocabulary are never shown
        prob = counts**0.75
        return prob / prob.sum()

    rank = np.empty(len(items), np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(len(items))
    slice_of = rank * slices // len(items)
    global_prob = distribution(items)
    out = np.zeros((len(candidates), per_slate), np.int64)
    for s in range(slices):
        rows = np.flatnonzero(slice_of[candidates] == s)
        if not len(rows):
            continue
        prob = distribution(items[slice_of <= s])
        if np.count_nonzero(prob) <= per_slate:  # too few items in the slice to choose from
            prob = global_prob
        positive = items[candidates[rows]][:, None]
        drawn = rng.choice(n_items, size=(len(rows), per_slate), p=prob)
        for _ in range(20):
            clash = drawn == positive
            if not clash.any():
                break
            drawn[clash] = rng.choice(n_items, size=int(clash.sum()), p=prob)
        out[rows] = drawn
    return out

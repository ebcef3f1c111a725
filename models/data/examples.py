"""Behaviour-model training examples: (history, slate) -> (clicked, bought, left).

From logs with exposures the slates are the ones really shown. Logs without exposures
(MovieLens, Taobao, RetailRocket) get *sampled impressions*: the item the user really
interacted with plus popularity-sampled negatives in random slots. The model card says which.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from recloop.core.contract import EventType
from recloop.models.data.schema import EVENT_CODE, EmptyDataError, EventLog
from recloop.models.runtime.vocab import Vocabulary

ACTION_CLICK, ACTION_BUY = 1, 2


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
) -> BehaviourExamples:
    """Sampled impressions: each interaction becomes a slate of the real item plus negatives.

    "Bought" means a purchase event, or a rating >= `buy_rating` for rating logs; "left" means
    the interaction was the last of its session.
    """
    rng = np.random.default_rng(seed)
    log = log.item_events().sorted()
    if len(log) < 2:
        raise EmptyDataError("too few item events to build behaviour examples")
    items = vocab.encode(log.item.astype(str).tolist())
    bought = (log.event_type == EVENT_CODE[EventType.PURCHASE]) | (log.value >= buy_rating)
    same_user_next = np.zeros(len(log), bool)
    same_user_next[:-1] = log.user[1:] == log.user[:-1]
    same_session_next = np.zeros(len(log), bool)
    same_session_next[:-1] = same_user_next[:-1] & (log.session[1:] == log.session[:-1])
    counts = np.bincount(items, minlength=len(vocab)).astype(np.float64)
    counts[:2] = 0
    prob = counts**0.75
    prob /= prob.sum()
    first = np.ones(len(log), bool)
    first[1:] = log.user[1:] != log.user[:-1]
    candidates = np.flatnonzero(~first)
    if max_examples is not None and len(candidates) > max_examples:
        candidates = np.sort(rng.choice(candidates, max_examples, replace=False))
    n = len(candidates)
    history = np.zeros((n, history_length), np.int64)
    actions = np.zeros((n, history_length), np.int64)
    act = np.where(bought, ACTION_BUY, ACTION_CLICK)
    user_start = np.maximum.accumulate(np.where(first, np.arange(len(log)), 0))
    for row, i in enumerate(candidates):
        start = max(user_start[i], i - history_length)
        k = i - start
        history[row, history_length - k :] = items[start:i]
        actions[row, history_length - k :] = act[start:i]
    negatives = rng.choice(len(vocab), size=(n, slate_size - 1), p=prob)
    slate = np.concatenate([items[candidates, None], negatives], axis=1)
    click = np.zeros((n, slate_size), np.float32)
    click[:, 0] = 1.0
    buy = np.zeros((n, slate_size), np.float32)
    buy[:, 0] = bought[candidates]
    perm = np.argsort(rng.random((n, slate_size)), axis=1)
    slate = np.take_along_axis(slate, perm, 1)
    click = np.take_along_axis(click, perm, 1)
    buy = np.take_along_axis(buy, perm, 1)
    leave = (~same_session_next[candidates]).astype(np.float32)
    return BehaviourExamples(history, actions, slate, click, buy, leave, log.time[candidates], True)

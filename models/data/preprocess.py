"""Preprocessing: de-duplication, k-core filtering, sessionisation, vocabularies and splits.

Everything here is deterministic: ties are broken by id strings, never by hash order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.models.data.schema import EmptyDataError, EventLog
from recloop.models.runtime.vocab import Vocabulary

DEFAULT_SESSION_GAP = 30 * 60.0
"""Seconds of inactivity that end a session (the usual web-analytics convention)."""


def deduplicate(log: EventLog) -> EventLog:
    """Drop exact repeats of (user, item, event type, time), keeping the first."""
    if not len(log):
        return log
    keys = np.char.add(
        np.char.add(log.user.astype(str), "\x1f" + log.item.astype(str)),
        np.char.add("\x1f" + log.event_type.astype(str), "\x1f" + log.time.astype(str)),
    )
    _, first = np.unique(keys, return_index=True)
    return log.take(np.sort(first))


def k_core(log: EventLog, min_user_events: int = 5, min_item_events: int = 5) -> EventLog:
    """Repeatedly drop users and items with too few item events until both thresholds hold."""
    log = log.item_events()
    while True:
        _, uinv, ucount = np.unique(log.user, return_inverse=True, return_counts=True)
        _, iinv, icount = np.unique(log.item, return_inverse=True, return_counts=True)
        keep = (ucount[uinv] >= min_user_events) & (icount[iinv] >= min_item_events)
        if keep.all():
            break
        log = log.take(keep)
        if not len(log):
            break
    if not len(log):
        raise EmptyDataError(
            f"k-core filtering (users >= {min_user_events}, items >= {min_item_events} events) "
            "left no events; lower the thresholds or use a larger data set"
        )
    return log


def sessionise(log: EventLog, gap_seconds: float = DEFAULT_SESSION_GAP) -> EventLog:
    """Sort by user and time and assign session ids `user#n`, a new session after each gap."""
    log = log.sorted()
    if not len(log):
        return log
    new_user = np.ones(len(log), dtype=bool)
    new_user[1:] = log.user[1:] != log.user[:-1]
    gap = np.zeros(len(log), dtype=bool)
    gap[1:] = (log.time[1:] - log.time[:-1]) > gap_seconds
    starts = new_user | gap
    counter = np.cumsum(starts)
    first_of_user = np.maximum.accumulate(np.where(new_user, counter, 0))
    number = counter - first_of_user
    log.session = np.asarray(
        [f"{u}#{n}" for u, n in zip(log.user, number, strict=True)], dtype=object
    )
    return log


def build_vocabulary(ids: np.ndarray, min_count: int = 1) -> Vocabulary:
    """Vocabulary of ids seen at least `min_count` times, most frequent first, ties by id."""
    values, counts = np.unique(ids[ids != ""].astype(str), return_counts=True)
    keep = counts >= min_count
    values, counts = values[keep], counts[keep]
    order = np.lexsort((values, -counts))
    return Vocabulary([str(v) for v in values[order]])


@dataclass(slots=True)
class UserSequences:
    """Each user's item indices in time order (vocabulary-encoded), plus timing per event."""

    users: list[str]
    items: list[np.ndarray]
    times: list[np.ndarray]
    values: list[np.ndarray]
    sessions: list[np.ndarray]


def user_sequences(log: EventLog, vocab: Vocabulary) -> UserSequences:
    """Group item events by user (users sorted by id), encoded with `vocab`."""
    log = log.item_events().sorted()
    if not len(log):
        raise EmptyDataError("the log has no item events to build sequences from")
    boundaries = np.flatnonzero(log.user[1:] != log.user[:-1]) + 1
    encoded = vocab.encode(log.item.astype(str).tolist())
    out = UserSequences([], [], [], [], [])
    for chunk in np.split(np.arange(len(log)), boundaries):
        out.users.append(str(log.user[chunk[0]]))
        out.items.append(encoded[chunk])
        out.times.append(log.time[chunk])
        out.values.append(log.value[chunk])
        out.sessions.append(log.session[chunk])
    return out


@dataclass(slots=True)
class LeaveLastOut:
    """Per-user chronological split for next-item metrics.

    `train[u]` is everything but the last two items, `valid_target[u]` the second to last and
    `test_target[u]` the last. The test history is train + valid target.
    """

    users: list[str]
    train: list[np.ndarray]
    valid_target: np.ndarray
    test_target: np.ndarray

    def test_histories(self) -> list[np.ndarray]:
        """History to predict `test_target` from."""
        return [np.append(t, v) for t, v in zip(self.train, self.valid_target, strict=True)]


def leave_last_out(sequences: UserSequences, min_length: int = 3) -> LeaveLastOut:
    """Hold out each user's last item for test and second to last for validation."""
    users, train, valid, test = [], [], [], []
    for user, items in zip(sequences.users, sequences.items, strict=True):
        if len(items) < min_length:
            continue
        users.append(user)
        train.append(items[:-2])
        valid.append(items[-2])
        test.append(items[-1])
    if not users:
        raise EmptyDataError(f"no user has at least {min_length} events to split")
    return LeaveLastOut(users, train, np.asarray(valid, np.int64), np.asarray(test, np.int64))


def split_log_leave_last_out(log: EventLog, holdout: int = 2) -> tuple[EventLog, EventLog]:
    """Split a log into (training part, held-out part): each user's last `holdout` item events
    go to the held-out part, so a model trained on the first never sees them."""
    log = log.item_events().sorted()
    rank_from_end = np.zeros(len(log), dtype=np.int64)
    last_of_user = np.ones(len(log), dtype=bool)
    last_of_user[:-1] = log.user[:-1] != log.user[1:]
    # Count positions from the end of each user's run.
    run = 0
    for i in range(len(log) - 1, -1, -1):
        run = 0 if last_of_user[i] else run + 1
        rank_from_end[i] = run
    held = rank_from_end < holdout
    return log.take(~held), log.take(held)


def chronological_split(
    log: EventLog, valid_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[EventLog, EventLog, EventLog]:
    """Global time split: the last `test_fraction` of events by time is test, before it valid."""
    if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError("fractions must be in [0, 1)")
    cut_test = np.quantile(log.time, 1 - test_fraction)
    cut_valid = np.quantile(log.time, 1 - test_fraction - valid_fraction)
    return (
        log.take(log.time < cut_valid),
        log.take((log.time >= cut_valid) & (log.time < cut_test)),
        log.take(log.time >= cut_test),
    )


def left_pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """Stack sequences into [N, length] int64, keeping the last `length` items, padding with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


def cooccurring_pairs(
    sequences: list[np.ndarray], window: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Every (item, item) pair at most `window` positions apart in a sequence, in both orders.

    The shared input of the co-occurrence baseline and of the PPMI embedding initialisation.
    """
    left, right = [], []
    for seq in sequences:
        for off in range(1, window + 1):
            if len(seq) > off:
                left.append(seq[:-off])
                right.append(seq[off:])
    a, b = np.concatenate(left), np.concatenate(right)
    return np.concatenate([a, b]), np.concatenate([b, a])

"""Selection, load amplification and ordering of replay rows.

* `select`: a time window, a user list, a deterministic user sample, event types.
* `clone`: N extra copies of every user under new ids (`<user>~c<n>`), each shifted in time,
  to multiply the load while keeping each user's real behaviour. Event and session ids get the
  same suffix, so ids stay unique across copies.
* `in_replay_order`: a stable time sort that never reorders one user's events, even when
  their recorded timestamps go backwards (a user is clamped to its previous time).

`seq` is not touched here: the replayer renumbers it per user, in send order, so it stays
+1 per event after any filtering, cloning or looping (the worker dead-letters a `seq` that
does not increase as `out_of_order`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from recloop.simulator.replay.sources import Row


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rows to replay. Times are epoch seconds of the original stream."""

    start: float | None = None
    end: float | None = None
    users: frozenset[str] | None = None
    sample: float = 1.0
    """Fraction of users kept, chosen by a hash of the user id and `seed` (stable across runs)."""
    seed: int = 0
    event_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.sample <= 1.0:
            raise ValueError(f"sample fraction must be in (0, 1], got {self.sample}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"time window is empty: end {self.end} <= start {self.start}")


def user_sampled(user: str, fraction: float, seed: int = 0) -> bool:
    """Whether `user` is in a `fraction` sample; deterministic, independent of the data."""
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(f"{seed}:{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def select(rows: Iterable[Row], sel: Selection) -> list[Row]:
    """The rows `sel` keeps, in their original order."""
    out: list[Row] = []
    sampled: dict[str, bool] = {}
    for row in rows:
        if sel.start is not None and row.time < sel.start:
            continue
        if sel.end is not None and row.time >= sel.end:
            continue
        user = row.user
        if sel.users is not None and user not in sel.users:
            continue
        if sel.sample < 1.0:
            keep = sampled.get(user)
            if keep is None:
                keep = sampled[user] = user_sampled(user, sel.sample, sel.seed)
            if not keep:
                continue
        if (
            sel.event_types is not None
            and row.event is not None
            and row.event.event_type.value not in sel.event_types
        ):
            continue
        out.append(row)
    return out


def clone_id(value: str, copy: int) -> str:
    """The id of `value` in copy `copy` (copy 0 is the original)."""
    return value if copy == 0 else f"{value}~c{copy}"


def clone(rows: list[Row], copies: int, shift: float) -> list[Row]:
    """The rows plus `copies` extra copies of every user, copy n shifted by n * `shift` s.

    Raw (non-contract) rows cannot be re-keyed safely and are not cloned.
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    out = list(rows)
    replace = msgspec.structs.replace
    for n in range(1, copies + 1):
        dt = n * shift
        for row in rows:
            ev = row.event
            if ev is None:
                continue
            user = clone_id(ev.user_id, n)
            new = replace(
                ev,
                event_id=clone_id(ev.event_id, n),
                user_id=user,
                session_id=clone_id(ev.session_id, n) if ev.session_id else None,
                event_time=ev.event_time + dt,
            )
            out.append(Row(row.time + dt, user.encode(), new, None, row.headers, row.origin))
    return out


def in_replay_order(rows: list[Row]) -> list[Row]:
    """Rows sorted by time, stable, with each user's own order preserved exactly."""
    last: dict[bytes | str, float] = {}
    for row in rows:
        user = row.key if row.key is not None else row.user
        prev = last.get(user)
        if prev is not None and row.time < prev:
            row.time = prev  # a user's clock never runs backwards in replay
        last[user] = row.time
    return sorted(rows, key=lambda r: r.time)


def schedule_offsets(
    times: Iterable[float], speed: float, max_gap: float | None = None
) -> list[float]:
    """Send offsets in seconds from the first row: gaps capped at `max_gap`, then / `speed`.

    `speed` is math.inf for as fast as possible (all offsets 0).
    """
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    out: list[float] = []
    prev: float | None = None
    elapsed = 0.0
    for t in times:
        if prev is not None:
            gap = max(0.0, t - prev)
            if max_gap is not None:
                gap = min(gap, max_gap)
            elapsed += gap
        prev = t
        out.append(0.0 if math.isinf(speed) else elapsed / speed)
    return out

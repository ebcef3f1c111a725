"""The canonical event schema every loader produces.

One row per user action, stored column-wise (numpy arrays) because logs run to millions of rows:

========== ========= =====================================================================
column     dtype     meaning
========== ========= =====================================================================
user       str       user id (strings, as in `recloop.core.contract`)
item       str       item id; "" for events without an item (session_start, leave)
event_type uint8     index into `EVENT_TYPES` (the `recloop.core.contract.EventType` values)
time       float64   Unix epoch seconds
value      float64   rating, price or other payload; NaN when the source has none
session    str       session id; "" until `preprocess.sessionise` assigns one
========== ========= =====================================================================

Exposures (the slate shown and what the user did with it) are separate `Exposure` records,
because only logged or synthetic worlds have them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import msgspec
import numpy as np

from recloop.core.contract import ITEM_EVENTS, EventType
from recloop.core.errors import InvalidInputError

EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
"""Code -> event type; the `event_type` column holds indices into this tuple."""
EVENT_CODE: dict[EventType, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
ITEM_EVENT_CODES = np.array(sorted(EVENT_CODE[t] for t in ITEM_EVENTS), dtype=np.uint8)


class DataError(InvalidInputError, ValueError):
    """A data set could not be used; the message names the file, line and column when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                f"file {path}" if path else "",
                f"line {line}" if line is not None else "",
                f"column {column!r}" if column else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.column = column


class EmptyDataError(DataError):
    """The data set has no (or too few) usable events for what was asked of it."""


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One canonical event as a record (for JSONL and for tests); `EventLog` is the bulk form."""

    user_id: str
    event_type: EventType
    event_time: float
    item_id: str | None = None
    value: float | None = None
    session_id: str | None = None


class Exposure(msgspec.Struct, frozen=True, kw_only=True):
    """A slate shown to a user and what they did with it; `left` means the session ended here."""

    user_id: str
    session_id: str
    time: float
    slate: list[str]
    clicked: list[bool]
    bought: list[bool]
    left: bool


@dataclass(slots=True)
class EventLog:
    """Column-wise canonical events. Arrays all have the same length."""

    user: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    time: np.ndarray
    value: np.ndarray
    session: np.ndarray
    source: str = "memory"
    exposures: list[Exposure] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "event_type", "time", "value", "session"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"EventLog column {name!r} has {len(getattr(self, name))} rows, expected {n}"
                )

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def from_columns(
        cls,
        user: Iterable[str],
        item: Iterable[str],
        event_type: Iterable[int],
        time: Iterable[float],
        value: Iterable[float] | None = None,
        session: Iterable[str] | None = None,
        source: str = "memory",
    ) -> EventLog:
        """Build a log from Python iterables (item "" for itemless events)."""
        users = np.asarray(list(user), dtype=object)
        n = len(users)
        return cls(
            user=users,
            item=np.asarray(list(item), dtype=object),
            event_type=np.asarray(list(event_type), dtype=np.uint8),
            time=np.asarray(list(time), dtype=np.float64),
            value=np.full(n, np.nan) if value is None else np.asarray(list(value), np.float64),
            session=np.full(n, "", dtype=object)
            if session is None
            else np.asarray(list(session), dtype=object),
            source=source,
        )

    @classmethod
    def from_events(cls, events: Iterable[Event], source: str = "memory") -> EventLog:
        """Build a log from `Event` records."""
        rows = list(events)
        return cls.from_columns(
            [e.user_id for e in rows],
            [e.item_id or "" for e in rows],
            [EVENT_CODE[e.event_type] for e in rows],
            [e.event_time for e in rows],
            [np.nan if e.value is None else e.value for e in rows],
            [e.session_id or "" for e in rows],
            source=source,
        )

    def events(self) -> Iterator[Event]:
        """Iterate the rows as `Event` records."""
        for u, i, t, ts, v, s in zip(
            self.user,
            self.item,
            self.event_type,
            self.time,
            self.value,
            self.session,
            strict=True,
        ):
            yield Event(
                user_id=str(u),
                event_type=EVENT_TYPES[int(t)],
                event_time=float(ts),
                item_id=str(i) or None,
                value=None if np.isnan(v) else float(v),
                session_id=str(s) or None,
            )

    def take(self, index: np.ndarray) -> EventLog:
        """Rows selected by a boolean mask or an index array (exposures are kept)."""
        return EventLog(
            user=self.user[index],
            item=self.item[index],
            event_type=self.event_type[index],
            time=self.time[index],
            value=self.value[index],
            session=self.session[index],
            source=self.source,
            exposures=self.exposures,
        )

    def sorted(self) -> EventLog:
        """Rows in (user, time, item) order: deterministic, whatever order the file had."""
        order = np.lexsort((self.item.astype(str), self.time, self.user.astype(str)))
        return self.take(order)

    def item_events(self) -> EventLog:
        """Only the rows about an item (view, click, cart, purchase, favourite)."""
        return self.take(np.isin(self.event_type, ITEM_EVENT_CODES))

    def fingerprint(self) -> str:
        """A SHA-256 over the content, so a model card can name exactly what it was trained on."""
        digest = hashlib.sha256()
        for column in (self.user, self.item, self.session):
            digest.update("\x1f".join(map(str, column)).encode())
        for array in (self.event_type, self.time, self.value):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def summary(self) -> DataSummary:
        """Counts for `recloop data` and for sanity checks."""
        codes, counts = np.unique(self.event_type, return_counts=True)
        return DataSummary(
            source=self.source,
            events=len(self),
            users=len(np.unique(self.user)) if len(self) else 0,
            items=len(np.unique(self.item[self.item != ""])) if len(self) else 0,
            sessions=len(np.unique(self.session[self.session != ""])) if len(self) else 0,
            exposures=len(self.exposures),
            first_time=float(self.time.min()) if len(self) else 0.0,
            last_time=float(self.time.max()) if len(self) else 0.0,
            by_type={EVENT_TYPES[int(c)].value: int(n) for c, n in zip(codes, counts, strict=True)},
        )


class DataSummary(msgspec.Struct, kw_only=True):
    """What `recloop data` prints about a data set."""

    source: str
    events: int
    users: int
    items: int
    sessions: int
    exposures: int
    first_time: float
    last_time: float
    by_type: dict[str, int]

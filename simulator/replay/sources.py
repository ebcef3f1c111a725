"""Replay sources: a recording, or an external event log via the `models/data` loaders.

Both become a list of `Row`s: the original time, the Kafka key and the contract `UserEvent`
(or, in raw mode, the value bytes untouched), plus where the row came from (file and line) so
every problem can be reported precisely.

External logs are mapped to contract events like this (the loaders of `models/data` already
map each source's event names, e.g. MovieLens ratings -> `click` with the rating as `value`,
Taobao pv/fav/cart/buy -> view/click/cart/purchase, RetailRocket view/addtocart/transaction ->
view/cart/purchase):

* events are sessionised per user (`recloop.models.data.preprocess.sessionise`, 30 minute gap) unless
  the source has session ids, and each session gets a `session_start` event at its first
  event's time, before it; session ids are `user#n`;
* event ids are `<prefix>-<row>` (`<prefix>-<row>-s` for the inserted `session_start`), unique
  within the source; `seq` is assigned at replay time, per user, in replay order.

With the worker's default triggers (session_start, click, request) a MovieLens replay is
answered once per session start and once per rating.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recloop.core.contract import ContractError, EventType, UserEvent, decode_event
from recloop.core.errors import InvalidInputError
from recloop.models.data.loaders import LOG_KINDS, ColumnMapping, LoadReport, open_log
from recloop.models.data.preprocess import DEFAULT_SESSION_GAP, sessionise
from recloop.models.data.schema import EVENT_TYPES, DataError, EventLog
from recloop.simulator.replay.recording import Header, Problem, read_recording


class ReplayInputError(InvalidInputError, ValueError):
    """The replay input is unusable (or, with --strict, has a bad row); names file and line."""


@dataclass(slots=True)
class Row:
    """One event to replay. `time` is the original epoch seconds used for pacing."""

    time: float
    key: bytes | None
    event: UserEvent | None
    value: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None
    origin: str = ""

    @property
    def user(self) -> str:
        if self.event is not None:
            return self.event.user_id
        return self.key.decode(errors="replace") if self.key is not None else ""


@dataclass(slots=True)
class Loaded:
    """Rows from one source, with everything that was skipped and why."""

    rows: list[Row]
    source: str
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    truncated: Problem | None = None
    header: Header | None = None

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def load_recording(
    path: str | Path,
    *,
    topics: set[str] | None = None,
    strict: bool = False,
    raw: bool = False,
    max_bytes: int = 1 << 20,
) -> Loaded:
    """Rows from a recording, in file order (per-partition offset order).

    Contract mode (default) decodes every value as a `UserEvent`; a value that does not decode
    is a problem at its line: with `strict`, `ReplayInputError` is raised before anything is
    sent, else it is skipped and counted. `raw` passes values through untouched.
    """
    reader = read_recording(path)
    rows: list[Row] = []
    loaded = Loaded(rows=rows, source=f"recording:{path}")

    def bad(line: int, reason: str, detail: str) -> None:
        problem = Problem(str(path), line, detail)
        if strict:
            raise ReplayInputError(str(problem))
        loaded.problems.append(problem)
        loaded.skipped[reason] += 1

    for line, rec in reader:
        if topics is not None and rec.topic not in topics:
            continue
        key = rec.key_bytes()
        value = rec.value_bytes()
        time = rec.timestamp / 1000.0
        origin = f"{path}:{line}"
        if raw:
            rows.append(Row(time, key, None, value, rec.headers, origin))
            continue
        if value is None:
            bad(line, "tombstone", "record has no value (a tombstone), not a UserEvent")
            continue
        try:
            event = decode_event(value, max_bytes)
        except ContractError as exc:
            bad(line, exc.reason.value, f"not a valid UserEvent: {exc}")
            continue
        rows.append(Row(time, key or event.user_id.encode(), event, None, rec.headers, origin))
    for problem in reader.problems:
        if strict:
            raise ReplayInputError(str(problem))
        loaded.problems.append(problem)
        loaded.skipped["malformed_line"] += 1
    if reader.truncated is not None:
        if strict:
            raise ReplayInputError(f"{reader.truncated} (recording truncated)")
        loaded.truncated = reader.truncated
    loaded.header = reader.header
    return loaded


def load_event_log(
    spec: str,
    *,
    strict: bool = False,
    mapping: ColumnMapping | None = None,
    session_gap: float = DEFAULT_SESSION_GAP,
    limit: int | None = None,
) -> Loaded:
    """Rows from an external log named `kind:path` (movielens, taobao, retailrocket, csv,
    jsonl, parquet). Without `strict` the loaders skip bad rows and count them by reason."""
    kind, sep, location = spec.partition(":")
    if not sep:
        raise ReplayInputError(f"source {spec!r} must look like kind:path, e.g. movielens:data/ml")
    if kind not in LOG_KINDS:
        raise ReplayInputError(
            f"unknown source kind {kind!r}; use one of {sorted(LOG_KINDS)} or a recording file"
        )
    try:
        log, report = open_log(kind, location, lenient=not strict, mapping=mapping, limit=limit)
    except DataError as exc:
        raise ReplayInputError(str(exc)) from None
    return from_event_log(log, report, prefix=kind, session_gap=session_gap)


def from_event_log(
    log: EventLog,
    report: LoadReport | None = None,
    *,
    prefix: str = "log",
    session_gap: float = DEFAULT_SESSION_GAP,
) -> Loaded:
    """Contract rows from a canonical `EventLog` (see the module docstring for the mapping)."""
    if not len(log):
        raise ReplayInputError(f"{log.source}: no events to replay")
    log = sessionise(log, session_gap) if (log.session == "").any() else log.sorted()
    rows: list[Row] = []
    origin = log.source
    new_session = np.ones(len(log), dtype=bool)
    new_session[1:] = (log.session[1:] != log.session[:-1]) | (log.user[1:] != log.user[:-1])
    session_start = EventType.SESSION_START
    for i, (user, item, code, ts, value, session, starts) in enumerate(
        zip(
            log.user,
            log.item,
            log.event_type,
            log.time.tolist(),
            log.value.tolist(),
            log.session,
            new_session.tolist(),
            strict=True,
        )
    ):
        user_id = str(user)
        key = user_id.encode()
        etype = EVENT_TYPES[int(code)]
        if starts and etype is not session_start:
            start = UserEvent(
                event_id=f"{prefix}-{i}-s",
                user_id=user_id,
                event_type=session_start,
                event_time=ts,
                seq=0,
                session_id=str(session),
            )
            rows.append(Row(ts, key, start, origin=f"{origin} row {i} (session start)"))
        event = UserEvent(
            event_id=f"{prefix}-{i}",
            user_id=user_id,
            event_type=etype,
            event_time=ts,
            seq=0,
            item_id=str(item) or None,
            session_id=str(session),
            value=None if value != value else value,  # NaN -> absent
        )
        rows.append(Row(ts, key, event, origin=f"{origin} row {i}"))
    loaded = Loaded(rows=rows, source=log.source)
    if report is not None:
        loaded.skipped.update(report.skipped)
    return loaded


def load_source(
    source: str,
    *,
    strict: bool = False,
    topics: set[str] | None = None,
    raw: bool = False,
    mapping: ColumnMapping | None = None,
    session_gap: float = DEFAULT_SESSION_GAP,
    limit: int | None = None,
) -> Loaded:
    """A recording file (any path that is not `kind:path`), or an external log spec."""
    kind, sep, _ = source.partition(":")
    if sep and kind in LOG_KINDS:
        if raw:
            raise ReplayInputError("--raw applies to recordings only")
        return load_event_log(
            source, strict=strict, mapping=mapping, session_gap=session_gap, limit=limit
        )
    return load_recording(source, topics=topics, strict=strict, raw=raw)

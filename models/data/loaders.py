"""Loaders from public event-log layouts to the canonical `EventLog`.

Strict by default: the first bad row raises `DataError` naming file, line and column. With
`lenient=True` bad rows are skipped and counted in `LoadReport.skipped` instead.

* MovieLens `ratings.csv` (userId,movieId,rating,timestamp): each rating becomes a `click`
  event with the rating as `value` (a rating says the user watched the film; there is no
  exposure or purchase in MovieLens). `movies.csv` gives titles and genres.
* Taobao / Tianchi `UserBehavior.csv` (no header: user,item,category,behaviour,timestamp):
  pv -> view, fav -> favourite, cart -> cart, buy -> purchase.
* RetailRocket `events.csv` (timestamp in ms,visitorid,event,itemid,transactionid):
  view -> view, addtocart -> cart, transaction -> purchase.
* Generic CSV / JSONL / Parquet with a `ColumnMapping` from canonical names to source columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recloop.core.contract import ITEM_EVENTS, EventType
from recloop.models.data.schema import EVENT_CODE, DataError, EmptyDataError, EventLog

MIN_EVENTS = 10
"""Fewer events than this is not a data set anything can be learnt or measured from."""


@dataclass(slots=True)
class LoadReport:
    """Rows read and (in lenient mode) rows skipped, by reason."""

    path: str
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which source column holds each canonical field (None: the source has no such column)."""

    user: str = "user_id"
    item: str | None = "item_id"
    event_type: str | None = "event_type"
    time: str = "event_time"
    value: str | None = None
    session: str | None = None
    time_unit: str = "s"
    """"s", "ms" or "iso" (ISO 8601 strings)."""
    event_map: dict[str, str] | None = None
    """Source event names -> canonical `EventType` values; None means they already are."""
    default_event: str = EventType.CLICK.value
    """Event type for sources with no event column (e.g. ratings)."""


MOVIELENS = ColumnMapping(
    user="userId", item="movieId", event_type=None, time="timestamp", value="rating"
)
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior", "timestamp")
TAOBAO = ColumnMapping(
    user="user_id",
    item="item_id",
    event_type="behavior",
    time="timestamp",
    event_map={"pv": "view", "fav": "favourite", "cart": "cart", "buy": "purchase"},
)
RETAILROCKET = ColumnMapping(
    user="visitorid",
    item="itemid",
    event_type="event",
    time="timestamp",
    time_unit="ms",
    event_map={"view": "view", "addtocart": "cart", "transaction": "purchase"},
)


class _Builder:
    """Accumulates parsed rows, raising or counting errors by row."""

    def __init__(self, path: Path, mapping: ColumnMapping, lenient: bool) -> None:
        self.path = path
        self.mapping = mapping
        self.lenient = lenient
        self.report = LoadReport(path=str(path))
        self.columns: tuple[list[str], list[str], list[int], list[float], list[float], list[str]]
        self.columns = ([], [], [], [], [], [])
        valid = {t.value for t in EventType}
        self.event_map = mapping.event_map or {v: v for v in valid}
        for source, target in self.event_map.items():
            if target not in valid:
                raise DataError(f"event_map sends {source!r} to unknown event type {target!r}")

    def fail(self, reason: str, message: str, line: int, column: str | None) -> None:
        if self.lenient:
            self.report.skipped[reason] += 1
            return
        raise DataError(message, path=str(self.path), line=line, column=column)

    def check_columns(self, present: Iterable[str], line: int = 1, sparse: bool = False) -> None:
        have = set(present)
        m = self.mapping
        # value and session are optional: a source without them just has NaN / "" there.
        # Sparse rows (JSON objects) may omit item_id on itemless events; rows are checked later.
        for name in (m.user, m.time) if sparse else (m.user, m.item, m.event_type, m.time):
            if name is not None and name not in have:
                raise DataError(
                    f"missing column {name!r}; the file has {sorted(have)}. Pass a column "
                    "mapping that names the right columns.",
                    path=str(self.path),
                    line=line,
                    column=name,
                )

    def add(self, row: dict[str, object], line: int) -> None:
        m = self.mapping
        self.report.rows += 1
        user = str(row.get(m.user, "") or "").strip()
        if not user:
            return self.fail("missing_user", "empty user id", line, m.user)
        raw_type = str(row.get(m.event_type, "")).strip() if m.event_type else m.default_event
        canonical = self.event_map.get(raw_type)
        if canonical is None:
            return self.fail(
                "unknown_event_type",
                f"unknown event type {raw_type!r}; expected one of {sorted(self.event_map)}",
                line,
                m.event_type,
            )
        etype = EventType(canonical)
        item = str(row.get(m.item, "") or "").strip() if m.item else ""
        if etype in ITEM_EVENTS and not item:
            return self.fail(
                "missing_item", f"{etype.value} event without an item id", line, m.item
            )
        try:
            ts = _parse_time(row.get(m.time), m.time_unit)
        except ValueError as exc:
            return self.fail("bad_time", f"unparsable timestamp: {exc}", line, m.time)
        value = math.nan
        if m.value is not None and row.get(m.value) not in (None, ""):
            try:
                value = float(row[m.value])  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return self.fail(
                    "bad_value", f"value {row[m.value]!r} is not a number", line, m.value
                )
        session = str(row.get(m.session, "") or "") if m.session else ""
        users, items, types, times, values, sessions = self.columns
        users.append(user)
        items.append(item)
        types.append(EVENT_CODE[etype])
        times.append(ts)
        values.append(value)
        sessions.append(session)
        return None

    def build(self, source: str) -> EventLog:
        if not self.columns[0]:
            skipped = sum(self.report.skipped.values())
            raise EmptyDataError(
                f"no usable events ({self.report.rows} rows read, {skipped} skipped)",
                path=str(self.path),
            )
        return EventLog.from_columns(*self.columns, source=source)


def _parse_time(raw: object, unit: str) -> float:
    if raw is None or raw == "":
        raise ValueError("empty")
    if unit == "iso":
        parsed = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{raw!r} is not a number of {unit}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{raw!r} is not a valid epoch time")
    return value / 1000.0 if unit == "ms" else value


def _open_checked(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"no such file; check the path ({path.resolve()})", path=str(path))
    return path


def _csv_rows(path: Path, header: tuple[str, ...] | None) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, fieldnames=list(header) if header else None)
        first = 1 if header else 2
        for offset, row in enumerate(reader):
            yield first + offset, row


def _load_csv(
    path: Path,
    mapping: ColumnMapping,
    lenient: bool,
    source: str,
    header: tuple[str, ...] | None = None,
    limit: int | None = None,
) -> tuple[EventLog, LoadReport]:
    builder = _Builder(_open_checked(path), mapping, lenient)
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
    if not first.strip():
        raise EmptyDataError("the file is empty", path=str(path))
    builder.check_columns(header or next(csv.reader([first])))
    for line, row in _csv_rows(path, header):
        if limit is not None and builder.report.rows >= limit:
            break
        if None in row:  # csv puts surplus fields under the None key
            builder.fail(
                "bad_row",
                f"{len(row) - 1 + len(row[None])} fields, expected "  # type: ignore[index]
                f"{len(row) - 1}",
                line,
                None,
            )
            continue
        builder.add(row, line)  # type: ignore[arg-type]
    return builder.build(source), builder.report


def load_movielens(
    directory: str | Path, *, lenient: bool = False, limit: int | None = None
) -> tuple[EventLog, LoadReport]:
    """MovieLens `ratings.csv` from a directory (ml-latest-small, ml-25m, ...)."""
    path = Path(directory)
    ratings = path / "ratings.csv" if path.is_dir() else path
    return _load_csv(ratings, MOVIELENS, lenient, f"movielens:{path}", limit=limit)


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """Catalogue metadata for one item."""

    title: str
    genres: tuple[str, ...]


def load_movielens_items(directory: str | Path) -> dict[str, ItemInfo]:
    """Titles and genres from MovieLens `movies.csv` (an empty dict if the file is absent)."""
    path = Path(directory)
    movies = (path if path.is_dir() else path.parent) / "movies.csv"
    if not movies.is_file():
        return {}
    out: dict[str, ItemInfo] = {}
    for line, row in _csv_rows(movies, None):
        if "movieId" not in row or "title" not in row:
            raise DataError("missing column 'movieId' or 'title'", path=str(movies), line=line)
        genres = tuple(
            g for g in (row.get("genres") or "").split("|") if g and g != "(no genres listed)"
        )
        out[row["movieId"]] = ItemInfo(title=row["title"], genres=genres)
    return out


def load_taobao(
    path: str | Path, *, lenient: bool = False, limit: int | None = None
) -> tuple[EventLog, LoadReport]:
    """Taobao/Tianchi `UserBehavior.csv` (headerless; `limit` reads only the first rows)."""
    p = Path(path)
    return _load_csv(p, TAOBAO, lenient, f"taobao:{p}", header=TAOBAO_COLUMNS, limit=limit)


def load_retailrocket(
    path: str | Path, *, lenient: bool = False, limit: int | None = None
) -> tuple[EventLog, LoadReport]:
    """RetailRocket `events.csv` (a directory holding it, or the file itself)."""
    p = Path(path)
    events = p / "events.csv" if p.is_dir() else p
    return _load_csv(events, RETAILROCKET, lenient, f"retailrocket:{p}", limit=limit)


def load_table(
    path: str | Path, mapping: ColumnMapping, *, lenient: bool = False
) -> tuple[EventLog, LoadReport]:
    """Generic CSV, JSONL or Parquet (by file suffix) with a column mapping."""
    p = _open_checked(Path(path))
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _load_csv(p, mapping, lenient, f"csv:{p}")
    builder = _Builder(p, mapping, lenient)
    if suffix in (".jsonl", ".ndjson"):
        checked = False
        with p.open(encoding="utf-8") as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    builder.fail("bad_json", f"invalid JSON: {exc.msg}", line, None)
                    continue
                if not isinstance(row, dict):
                    builder.fail("bad_json", "each line must be a JSON object", line, None)
                    continue
                if not checked:
                    builder.check_columns(row.keys(), line, sparse=True)
                    checked = True
                builder.add(row, line)
        return builder.build(f"jsonl:{p}"), builder.report
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                "reading Parquet needs pyarrow: pip install pyarrow", path=str(p)
            ) from None
        table = pq.read_table(p)
        builder.check_columns(table.column_names)
        for line, row in enumerate(table.to_pylist(), start=1):
            builder.add(row, line)
        return builder.build(f"parquet:{p}"), builder.report
    raise DataError(f"unknown file type {suffix!r}; use .csv, .jsonl or .parquet", path=str(p))


def write_jsonl(log: EventLog, path: str | Path) -> int:
    """Write canonical events as JSON lines; returns the number written."""
    import msgspec

    encoder = msgspec.json.Encoder()
    count = 0
    with Path(path).open("wb") as handle:
        for event in log.events():
            handle.write(encoder.encode(event) + b"\n")
            count += 1
    return count


LOADERS: dict[str, Callable[..., tuple[EventLog, LoadReport]]] = {
    "movielens": load_movielens,
    "taobao": load_taobao,
    "retailrocket": load_retailrocket,
}
TABLE_KINDS = ("csv", "jsonl", "parquet")
"""Generic files, read by `load_table` (by default in the canonical column names)."""
LOG_KINDS = (*LOADERS, *TABLE_KINDS)
"""Every event-log file kind a `kind:path` spec may name (`open_log`; `load` adds synthetic)."""
CANONICAL_COLUMNS = ColumnMapping(value="value", session="session_id")


def open_log(
    kind: str,
    location: str,
    *,
    lenient: bool = False,
    mapping: ColumnMapping | None = None,
    limit: int | None = None,
) -> tuple[EventLog, LoadReport]:
    """Read the event-log file of `kind` (one of `LOG_KINDS`) at `location`.

    `mapping` applies to the generic table kinds, `limit` (first rows only) to the named ones.
    """
    if kind in LOADERS:
        kwargs = {"limit": limit} if limit is not None else {}
        return LOADERS[kind](location, lenient=lenient, **kwargs)
    if kind in TABLE_KINDS:
        return load_table(location, mapping or CANONICAL_COLUMNS, lenient=lenient)
    raise DataError(f"unknown event log kind {kind!r}; use one of {sorted(LOG_KINDS)}")


def load(spec: str, *, lenient: bool = False, min_events: int = MIN_EVENTS) -> EventLog:
    """Load a data set named `kind:location`.

    Kinds: movielens, taobao, retailrocket (path), csv/jsonl/parquet (path to a file already
    in the canonical column names), synthetic (`synthetic:users=300,items=200,seed=0`).
    """
    kind, sep, location = spec.partition(":")
    if not sep:
        raise DataError(f"data spec {spec!r} must look like kind:path, e.g. movielens:data/ml")
    if kind == "synthetic":
        from recloop.models.data.synthetic import SyntheticWorld

        params = dict(p.split("=", 1) for p in location.split(",") if "=" in p)
        try:
            kwargs = {k: int(v) for k, v in params.items()}
            log = SyntheticWorld.generate(**kwargs).log
        except (TypeError, ValueError) as exc:
            raise DataError(f"bad synthetic spec {location!r}: {exc}") from None
    elif kind in LOG_KINDS:
        log, _ = open_log(kind, location, lenient=lenient)
    else:
        raise DataError(
            f"unknown data kind {kind!r}; use one of {sorted([*LOG_KINDS, 'synthetic'])}"
        )
    if len(log) < min_events:
        raise EmptyDataError(f"{spec}: only {len(log)} events, at least {min_events} are needed")
    return log


def as_array(values: Iterable[str]) -> np.ndarray:
    """Object array of strings (the id column type)."""
    return np.asarray(list(values), dtype=object)

"""The recording file format: zstd-compressed JSON lines, one typed record per line.

Line 1 is a `Header` (format, version, topics, what bounded the capture), then one `Record` per
Kafka record, then a `Trailer` (counts, time range, offsets). The writer flushes a zstd block
every `FLUSH_EVERY` records, so a file cut short (crash, full disk, partial copy) still
decompresses up to the last flushed block; a missing trailer is how truncation is detected,
and every complete line before the damage stays readable.

Keys and values are stored as UTF-8 text when they are (contract values are JSON, so they stay
readable with `zstdcat`), else base64 in `key_b64` / `value_b64`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import msgspec
import zstandard

from recloop.core.errors import InvalidInputError

FORMAT = "recloop-recording"
FORMAT_VERSION = 1
FLUSH_EVERY = 2000
"""Records per zstd block flush: at most this many are lost when a file is cut short."""
_READ_CHUNK = 1 << 20


class Header(msgspec.Struct, tag="header", tag_field="kind", kw_only=True, omit_defaults=True):
    """What a recording holds and how it was captured (first line of the file)."""

    format: str = FORMAT
    version: int = FORMAT_VERSION
    created: float
    topics: list[str]
    source: str = ""
    """Where the records came from: a bootstrap address, or a data set spec."""
    bounds: dict[str, str] = {}
    """What ended the capture was allowed by: max_records, max_seconds, offsets."""
    contract_schema: int | None = None
    """`recloop.core.contract.SCHEMA_VERSION` of the values, when they are contract records."""


class Record(msgspec.Struct, tag="record", tag_field="kind", kw_only=True, omit_defaults=True):
    """One Kafka record as consumed. `timestamp` is epoch milliseconds (Kafka's unit)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None = None
    value: str | None = None
    key_b64: bytes | None = None
    value_b64: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Record:
        """Build a record from raw Kafka bytes, as text when they are valid UTF-8."""
        k, kb = _text_or_bytes(key)
        v, vb = _text_or_bytes(value)
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=timestamp,
            key=k,
            key_b64=kb,
            value=v,
            value_b64=vb,
            headers=list(headers) if headers else None,
        )

    def key_bytes(self) -> bytes | None:
        return self.key.encode() if self.key is not None else self.key_b64

    def value_bytes(self) -> bytes | None:
        return self.value.encode() if self.value is not None else self.value_b64


class Trailer(msgspec.Struct, tag="trailer", tag_field="kind", kw_only=True, omit_defaults=True):
    """Last line: counts and ranges. Its absence means the file was cut short."""

    count: int
    per_topic: dict[str, int]
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    end_offsets: dict[str, dict[int, int]] = {}
    """Per topic and partition, the offset after the last record captured."""
    finished: float = 0.0
    stopped_by: str = ""


Line = Header | Record | Trailer
_encoder = msgspec.json.Encoder()
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
"""The first four bytes of every zstd frame."""
_decoder = msgspec.json.Decoder(Line)


def _text_or_bytes(raw: bytes | None) -> tuple[str | None, bytes | None]:
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, raw


class RecordingError(InvalidInputError, ValueError):
    """A recording could not be read; names the file and line."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        where = f"{path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.detail = message


class MalformedRecordError(RecordingError):
    """One line of a recording is not a valid record."""


class TruncatedRecordingError(RecordingError):
    """The recording ends before its trailer: the file was cut short or damaged."""


class RecordingWriter:
    """Streams records into a recording file; use as a context manager (writes the trailer)."""

    def __init__(self, path: str | Path, header: Header, level: int = 3) -> None:
        self.path = Path(path)
        self.header = header
        self._file: BinaryIO = self.path.open("wb")
        self._zstd = zstandard.ZstdCompressor(level=level).stream_writer(self._file, closefd=False)
        self._zstd.write(_encoder.encode(header) + b"\n")
        self.count = 0
        self.per_topic: dict[str, int] = {}
        self.end_offsets: dict[str, dict[int, int]] = {}
        self.first_timestamp: int | None = None
        self.last_timestamp: int | None = None
        self._since_flush = 0

    def write(self, record: Record) -> None:
        self._zstd.write(_encoder.encode(record) + b"\n")
        self.count += 1
        self.per_topic[record.topic] = self.per_topic.get(record.topic, 0) + 1
        self.end_offsets.setdefault(record.topic, {})[record.partition] = record.offset + 1
        ts = record.timestamp
        if self.first_timestamp is None or ts < self.first_timestamp:
            self.first_timestamp = ts
        if self.last_timestamp is None or ts > self.last_timestamp:
            self.last_timestamp = ts
        self._since_flush += 1
        if self._since_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """End a zstd block so everything written so far survives a crash."""
        self._zstd.flush(zstandard.FLUSH_BLOCK)
        self._file.flush()
        self._since_flush = 0

    def close(self, stopped_by: str = "") -> Trailer:
        trailer = Trailer(
            count=self.count,
            per_topic=self.per_topic,
            first_timestamp=self.first_timestamp,
            last_timestamp=self.last_timestamp,
            end_offsets=self.end_offsets,
            finished=time.time(),
            stopped_by=stopped_by,
        )
        self._zstd.write(_encoder.encode(trailer) + b"\n")
        self._zstd.close()
        self._file.close()
        return trailer

    def abort(self) -> None:
        """Close without a trailer (the file then reads as truncated)."""
        self._zstd.flush(zstandard.FLUSH_FRAME)
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(stopped_by=f"error: {exc_type.__name__}")


@dataclass(slots=True)
class Problem:
    """A line that could not be read, with where it is."""

    path: str
    line: int
    detail: str

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.detail}"


@dataclass(slots=True)
class RecordingReader:
    """Reads a recording line by line.

    Iterating yields `(line_number, Record)`. With `strict`, the first bad line raises
    `MalformedRecordError` and a missing trailer raises `TruncatedRecordingError` (after the
    records before it were yielded). Without it, bad lines are collected in `problems` and a
    cut-short file sets `truncated`; the records before the damage are all yielded.
    """

    path: Path
    strict: bool = False
    header: Header | None = None
    trailer: Trailer | None = None
    problems: list[Problem] = field(default_factory=list)
    truncated: Problem | None = None

    def __iter__(self) -> Iterator[tuple[int, Record]]:
        line_no = 0
        for line_no, raw in self._lines():
            if self.header is None:
                self.header = self._read_header(line_no, raw)
                continue
            if self.trailer is not None:
                self._bad(line_no, "data after the trailer")
                continue
            try:
                item = _decoder.decode(raw)
            except msgspec.DecodeError as exc:  # ValidationError is a subclass
                self._bad(line_no, f"not a valid recording line: {exc}")
                continue
            if isinstance(item, Record):
                yield line_no, item
            elif isinstance(item, Header):
                self._bad(line_no, "header not on the first line")
            else:
                self.trailer = item
        if self.header is None and self.truncated is None:
            raise RecordingError("not a RecLoop recording (no header)", path=self.path)
        if self.trailer is None and self.truncated is None:
            self._truncate(line_no + 1, "the file ends without a trailer (cut short?)")
        elif self.trailer is not None and self.truncated is None:
            records = sum(self.trailer.per_topic.values())
            if self.trailer.count != records:
                self._truncate(line_no, "trailer counts disagree with each other")

    def _read_header(self, line: int, raw: bytes) -> Header:
        """The header on line 1; anything else means the file is not a recording at all."""
        try:
            item = _decoder.decode(raw)
        except msgspec.DecodeError:
            item = None
        if line != 1 or not isinstance(item, Header):
            raise RecordingError(
                f"not a RecLoop recording (line {line} is not a {FORMAT} header)", path=self.path
            )
        if item.format != FORMAT or item.version > FORMAT_VERSION:
            raise RecordingError(
                f"format {item.format!r} version {item.version} is not a "
                f"{FORMAT} version <= {FORMAT_VERSION}; upgrade RecLoop to read it",
                path=self.path,
                line=line,
            )
        return item

    def _bad(self, line: int, detail: str) -> None:
        if self.strict:
            raise MalformedRecordError(detail, path=self.path, line=line)
        self.problems.append(Problem(str(self.path), line, detail))

    def _truncate(self, line: int, detail: str) -> None:
        self.truncated = Problem(str(self.path), line, detail)
        if self.strict:
            raise TruncatedRecordingError(detail, path=self.path, line=line)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if not self.path.is_file():
            raise RecordingError("no such file", path=self.path.resolve())
        line_no = 0
        rest = b""
        with self.path.open("rb") as handle:
            # Check the zstd frame magic first: other bytes are not a recording at all, which
            # is a different fault from a real recording cut short (reported as truncated).
            if handle.read(len(_ZSTD_MAGIC)) != _ZSTD_MAGIC:
                raise RecordingError(
                    "not a RecLoop recording (not zstd-compressed)", path=self.path
                )
            handle.seek(0)
            reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
            while True:
                try:
                    chunk = reader.read(_READ_CHUNK)
                except zstandard.ZstdError as exc:
                    self._truncate(line_no + 1, f"compressed data is damaged ({exc})")
                    return
                if not chunk:
                    break
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for raw in lines:
                    line_no += 1
                    if raw:
                        yield line_no, raw
        if rest:
            # The last line has no newline: the writer always ends lines, so it was cut.
            self._truncate(line_no + 1, "the last line is incomplete (cut short?)")


def read_recording(path: str | Path, *, strict: bool = False) -> RecordingReader:
    """A reader over `path`; iterate it for `(line, Record)`."""
    return RecordingReader(Path(path), strict=strict)


def info(path: str | Path) -> RecordingReader:
    """Read a whole recording for its header, trailer and problems (records discarded)."""
    reader = read_recording(path)
    for _ in reader:
        pass
    return reader

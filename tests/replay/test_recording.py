"""The recording format: round trip, metadata, truncation and malformed lines."""

from __future__ import annotations

import pytest
import zstandard

from recloop.core.contract import encode
from recloop.simulator.replay import recording as rec
from recloop.simulator.replay.recording import (
    Header,
    MalformedRecordError,
    Record,
    RecordingWriter,
    TruncatedRecordingError,
    read_recording,
)
from recloop.simulator.replay.sources import ReplayInputError, load_recording
from tests.support import make_events


def _write(path, n: int = 5000) -> list[Record]:
    records = [
        Record.of("ev", i % 3, i // 3, 1_700_000_000_000 + i, f"u{i % 7}".encode(), b'{"i":%d}' % i)
        for i in range(n)
    ]
    records.append(Record.of("ev", 0, 99999, 1, b"\xff\xfe", b"\x00\x01binary", [("h", b"\xff")]))
    with RecordingWriter(path, Header(created=1.0, topics=["ev"])) as writer:
        for r in records:
            writer.write(r)
    return records


def test_round_trip_keeps_every_field_and_metadata(tmp_path) -> None:
    path = tmp_path / "r.rec.zst"
    records = _write(path)
    reader = read_recording(path, strict=True)
    got = [r for _, r in reader]
    assert got == records
    assert got[-1].key_bytes() == b"\xff\xfe" and got[-1].value_bytes() == b"\x00\x01binary"
    assert reader.header is not None and reader.header.topics == ["ev"]
    assert reader.trailer is not None
    assert reader.trailer.count == len(records)
    assert reader.trailer.per_topic == {"ev": len(records)}
    assert reader.trailer.first_timestamp == 1
    assert reader.truncated is None and not reader.problems


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.999])
def test_truncated_file_is_reported_and_the_rest_is_readable(tmp_path, keep: float) -> None:
    path = tmp_path / "r.rec.zst"
    records = _write(path, 20_000)
    data = path.read_bytes()
    cut = tmp_path / "cut.rec.zst"
    cut.write_bytes(data[: int(len(data) * keep)])

    reader = read_recording(cut)
    got = [r for _, r in reader]
    assert reader.truncated is not None, "truncation must be detected"
    assert got == records[: len(got)], "records before the damage are intact"
    # Blocks are flushed every FLUSH_EVERY records: at most about that many are lost.
    assert len(got) >= int(len(records) * keep) - 2 * rec.FLUSH_EVERY - 100

    with pytest.raises(TruncatedRecordingError, match=r"cut\.rec\.zst"):
        for _ in read_recording(cut, strict=True):
            pass


def test_malformed_line_is_reported_with_its_line(tmp_path) -> None:
    path = tmp_path / "bad.rec.zst"
    events = make_events(3, 4)
    lines = [rec._encoder.encode(Header(created=1.0, topics=["ev"]))]
    for i, e in enumerate(events):
        lines.append(rec._encoder.encode(Record.of("ev", 0, i, 1000 * i, b"k", encode(e))))
    lines[4] = b'{"kind":"record","topic":"ev"'  # line 5: broken JSON
    lines[6] = rec._encoder.encode(Record.of("ev", 0, 5, 5, b"k", b'{"not":"an event"}'))  # line 7
    lines.append(b'{"kind":"trailer","count":10,"per_topic":{"ev":10}}')
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n"))

    with pytest.raises(MalformedRecordError, match=r"bad.rec.zst, line 5"):
        for _ in read_recording(path, strict=True):
            pass

    loaded = load_recording(path)
    assert len(loaded.rows) == len(events) - 2
    assert {p.line for p in loaded.problems} == {5, 7}
    assert loaded.skipped_total == 2

    with pytest.raises(ReplayInputError, match=r"line 7: not a valid UserEvent.*event_id"):
        load_recording(path, strict=True)


def test_not_a_recording(tmp_path) -> None:
    path = tmp_path / "x.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b'{"a":1}\n'))
    with pytest.raises(rec.RecordingError):
        for _ in read_recording(path):
            pass
    with pytest.raises(rec.RecordingError, match="no such file"):
        for _ in read_recording(tmp_path / "missing.zst"):
            pass

"""The event contract: round trips, and errors that name the field and the reason."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.core.contract import (
    SCHEMA_VERSION,
    ContractError,
    DeadLetterReason,
    EventType,
    Recommendation,
    ScoredItem,
    StageTimes,
    UserEvent,
    decode_dead_letter,
    decode_event,
    decode_recommendation,
    encode,
)

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "event_type": "view",
    "event_time": 1.5,
    "seq": 0,
    "item_id": "42",
}


def _raw(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return msgspec.json.encode({k: v for k, v in doc.items() if v is not ...})


def _error(raw: bytes, max_bytes: int = 65536) -> ContractError:
    with pytest.raises(ContractError) as info:
        decode_event(raw, max_bytes)
    return info.value


events = st.builds(
    UserEvent,
    event_id=st.text(min_size=1, max_size=20),
    user_id=st.text(min_size=1, max_size=20),
    event_type=st.sampled_from([EventType.SESSION_START, EventType.LEAVE, EventType.REQUEST]),
    event_time=st.floats(min_value=0, max_value=4e9),
    seq=st.integers(min_value=0, max_value=2**40),
    item_id=st.none() | st.text(min_size=1, max_size=20),
    request_id=st.none() | st.text(min_size=1, max_size=20),
    position=st.none() | st.integers(min_value=0, max_value=100),
    value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)


@given(events)
def test_events_round_trip(event: UserEvent) -> None:
    assert decode_event(encode(event)) == event


def test_recommendation_round_trip_and_compact_items() -> None:
    rec = Recommendation(
        request_id="r",
        user_id="u",
        event_id="e",
        items=[ScoredItem("7", 0.5), ScoredItem("3", 0.25)],
        model_version="v1",
        strategy="popular",
        times=StageTimes(event=1.0, consumed=2.0),
    )
    raw = encode(rec)
    assert b'"items":[["7",0.5],["3",0.25]]' in raw
    assert decode_recommendation(raw) == rec


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{nope", DeadLetterReason.DECODE_ERROR, None),
        (b"", DeadLetterReason.DECODE_ERROR, None),
        (_raw(event_type="X").replace(b"X", b"\x80"), DeadLetterReason.DECODE_ERROR, None),
        (_raw(user_id="X").replace(b"X", b"\xff\xfe"), DeadLetterReason.DECODE_ERROR, None),
        (_raw(seq="1"), DeadLetterReason.VALIDATION_ERROR, "seq"),
        (_raw(seq=-1), DeadLetterReason.VALIDATION_ERROR, "seq"),
        (_raw(event_type="teleport"), DeadLetterReason.VALIDATION_ERROR, "event_type"),
        (_raw(event_id=...), DeadLetterReason.VALIDATION_ERROR, "event_id"),
        (_raw(user_id=""), DeadLetterReason.VALIDATION_ERROR, "user_id"),
        (_raw(item_id=...), DeadLetterReason.VALIDATION_ERROR, "item_id"),
        (_raw(event_time="yesterday"), DeadLetterReason.VALIDATION_ERROR, "event_time"),
        (_raw(schema=SCHEMA_VERSION + 1), DeadLetterReason.VALIDATION_ERROR, "schema"),
        (_raw(surprise=1), None, None),  # unknown fields are ignored: forward compatible
    ],
)
def test_bad_events_name_reason_and_field(
    raw: bytes, reason: DeadLetterReason | None, field: str | None
) -> None:
    if reason is None:
        assert decode_event(raw).event_id == "e1"
        return
    err = _error(raw)
    assert (err.reason, err.field) == (reason, field)
    assert err.detail and reason.value in str(err)


def test_oversized_is_rejected_before_parsing() -> None:
    err = _error(_raw(item_id="x" * 300), max_bytes=256)
    assert err.reason is DeadLetterReason.OVERSIZED
    assert "RECLOOP_MAX_MESSAGE_BYTES" in err.detail


def test_dead_letter_keeps_the_raw_message() -> None:
    raw = b'{"broken": '
    letter = _error(raw).dead_letter(raw, topic="t", partition=3, offset=9, key=b"k")
    back = decode_dead_letter(encode(letter))
    assert (back.raw, back.topic, back.partition, back.offset, back.key) == (raw, "t", 3, 9, b"k")
    assert back.reason is DeadLetterReason.DECODE_ERROR

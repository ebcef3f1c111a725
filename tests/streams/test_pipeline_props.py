"""Property-based tests of the per-event processor: no input can crash it.

Every message is either accepted (a valid event) or rejected with a dead letter whose reason
is one of the closed set; state only changes for accepted, in-order events.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.core.contract import DeadLetterReason, EventType, UserEvent, encode
from recloop.core.settings import WorkerConfig
from recloop.streams.pipeline import Pending, Pipeline, Rejected, _request_id
from recloop.streams.state import decode_state
from recloop.streams.strategies import RandomStrategy

MAX_BYTES = 2048


def _pipeline() -> tuple[Pipeline, dict[bytes, bytes]]:
    table: dict[bytes, bytes] = {}
    cfg = WorkerConfig(strategy="random", model_dir=Path("/nonexistent"))
    return Pipeline(cfg, RandomStrategy(["a", "b", "c"]), table, MAX_BYTES), table


VALID = {
    "event_id": "e1",
    "user_id": "u1",
    "event_type": "click",
    "event_time": 1.0,
    "seq": 0,
    "item_id": "a",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with fields removed, replaced by junk, or extra fields added."""
    doc: dict[str, object] = dict(VALID)
    for name in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=3)):
        if draw(st.booleans()):
            doc.pop(name, None)
        else:
            doc[name] = draw(json_values)
    if draw(st.booleans()):
        doc[draw(st.text(max_size=8))] = draw(json_values)
    if draw(st.booleans()):
        doc["schema"] = draw(st.integers(-3, 5))
    return json.dumps(doc, allow_nan=True).encode()


@st.composite
def corrupted_bytes(draw: st.DrawFn) -> bytes:
    """A valid encoding truncated or with bytes flipped."""
    raw = bytearray(json.dumps(VALID).encode())
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    for _ in range(draw(st.integers(0, 4))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


any_message = (
    st.binary(max_size=300)
    | mutated_events()
    | corrupted_bytes()
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(min_size=MAX_BYTES + 1, max_size=MAX_BYTES + 50)
)


def _check(result: Pending | Rejected | None, raw: bytes) -> None:
    if isinstance(result, Rejected):
        letter = result.letter
        assert letter.reason in set(DeadLetterReason)
        assert letter.detail
        assert letter.raw == raw
        assert (letter.topic, letter.partition, letter.offset) == ("events", 0, 7)
        # The dead letter itself must be encodable for the dead-letter topic.
        assert msgspec.json.decode(encode(letter))["reason"] == letter.reason.value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=any_message, key=st.none() | st.binary(max_size=10) | st.just(b"u1"))
def test_no_message_crashes_the_processor(raw: bytes, key: bytes | None) -> None:
    pipeline, table = _pipeline()
    result = pipeline.on_event(raw, key, "events", 0, 7)
    _check(result, raw)
    if isinstance(result, Rejected):
        assert table == {}, "a rejected message must not change state"
        if len(raw) > MAX_BYTES:
            assert result.letter.reason is DeadLetterReason.OVERSIZED
    else:
        event = msgspec.json.decode(raw, type=UserEvent)
        assert key in (None, event.user_id.encode())
        assert decode_state(table[event.user_id.encode()]).last_seq == event.seq
    # The batch step takes whatever the processor let through.
    if isinstance(result, Pending):
        (rec,) = pipeline.answer([result])
        assert rec.event_id == result.event.event_id


@settings(max_examples=150, deadline=None)
@given(seqs=st.lists(st.integers(0, 12), min_size=1, max_size=25))
def test_out_of_order_events_are_dead_lettered_and_state_only_moves_forward(
    seqs: list[int],
) -> None:
    pipeline, table = _pipeline()
    last = -1
    applied: list[int] = []
    for n, seq in enumerate(seqs):
        event = UserEvent(
            event_id=f"e{n}", user_id="u1", event_type=EventType.VIEW, event_time=1.0,
            seq=seq, item_id=str(seq),
        )  # fmt: skip
        result = pipeline.on_event(encode(event), b"u1", "events", 0, 7)
        if seq <= last:
            assert isinstance(result, Rejected)
            assert result.letter.reason is DeadLetterReason.OUT_OF_ORDER
            assert result.letter.field == "seq"
        else:
            assert result is None  # a view does not trigger by default
            applied.append(seq)
            last = seq
    state = decode_state(table[b"u1"])
    assert state.last_seq == last
    assert state.counts == {"view": len(applied)}
    assert state.history == [str(s) for s in applied][-50:]


def test_redelivery_is_answered_again_without_changing_state() -> None:
    pipeline, table = _pipeline()
    click = UserEvent(
        event_id="c1", user_id="u1", event_type=EventType.CLICK, event_time=1.0, seq=0, item_id="a"
    )
    first = pipeline.on_event(encode(click), b"u1", "events", 0, 1)
    before = table[b"u1"]
    again = pipeline.on_event(encode(click), b"u1", "events", 0, 1)
    assert isinstance(first, Pending) and isinstance(again, Pending)
    assert table[b"u1"] == before
    (r1,) = pipeline.answer([first])
    (r2,) = pipeline.answer([again])
    assert r1.request_id == r2.request_id


def test_a_failing_strategy_turns_the_batch_into_dead_letters() -> None:
    pipeline, _ = _pipeline()
    click = UserEvent(
        event_id="c1", user_id="u1", event_type=EventType.CLICK, event_time=1.0, seq=0, item_id="a"
    )
    pending = pipeline.on_event(encode(click), b"u1", "events", 0, 1)
    assert isinstance(pending, Pending)
    (letter,) = pipeline.failed([pending], RuntimeError("boom"))
    assert letter.reason is DeadLetterReason.PROCESSING_ERROR
    assert "boom" in letter.detail and letter.key == b"u1"
    assert msgspec.json.decode(letter.raw, type=UserEvent) == click


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_request_id_is_uuid5(user_id: str, event_id: str) -> None:
    """The request id is computed without `uuid.UUID` for speed; it must stay the uuid5."""
    event = UserEvent(
        event_id=event_id, user_id=user_id, event_type=EventType.REQUEST, event_time=1.0, seq=0
    )
    name = f"recloop:{user_id}:{event_id}"
    assert _request_id(event) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))

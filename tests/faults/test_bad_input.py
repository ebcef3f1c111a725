"""Bad input at scale through a live worker, and the dead-letter reasons the contract documents.

10,000 malformed messages from a seeded generator (truncated JSON, invalid UTF-8, garbage,
wrong types, missing fields, unknown event types, huge strings, wrong schema, key/user
mismatch, out-of-order seq, oversized payloads) go to a real `recloop worker`: it must stay
up, dead-letter every one with the reason its kind calls for, and count them in /metrics.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from recloop.brokers import EmbeddedBroker, free_port
from recloop.core.contract import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DeadLetterReason,
    EventType,
    UserEvent,
    decode_dead_letter,
    encode,
)
from recloop.core.settings import Settings, Strategy, WorkerConfig
from recloop.processes import wait_for_recommender
from tests.conftest import Broker
from tests.support import ROOT, WorkerProcess, collect, produce, unique_topics

N_MALFORMED = 10_000
R = DeadLetterReason
Message = tuple[bytes | None, bytes, DeadLetterReason]
"""Key, value and the reason the worker must dead-letter it with."""


def _event(rng: random.Random, user: str, seq: int, /, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"{user}-{seq}-{rng.randrange(10**9)}",
        "user_id": user,
        "event_type": "view",
        "item_id": str(rng.randrange(500)),
        "event_time": 1_700_000_000.0 + seq,
        "seq": seq,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def _json(event: dict[str, object]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _truncated(rng: random.Random, i: int) -> Message:
    raw = _json(_event(rng, f"t{i}", 0))
    return f"t{i}".encode(), raw[: rng.randrange(len(raw))], R.DECODE_ERROR


def _invalid_utf8(rng: random.Random, i: int) -> Message:
    user = f"x{i}"
    raw = _json(_event(rng, user, 0, session_id="SESSION"))
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"\xf0\x28\x8c"])
    return user.encode(), raw.replace(b"SESSION", bad), R.DECODE_ERROR


def _garbage(rng: random.Random, i: int) -> Message:
    raw = rng.choice(
        [
            b"",
            b"null",
            b"[]",
            b"42",
            b'"a string"',
            b"{",
            b"}{",
            # msgspec checks the type at a value's first byte, so "9..." would be a validation
            # error: a NUL first keeps random bytes undecodable.
            b"\x00" + rng.randbytes(rng.randrange(64)),
            b"<event/>",
        ]
    )
    if raw in (b"null", b"[]", b"42", b'"a string"'):
        return None, raw, R.VALIDATION_ERROR  # JSON, but not an object
    return None, raw, R.DECODE_ERROR


_WRONG_TYPES: list[dict[str, object]] = [
    {"seq": "1"},
    {"seq": -1},
    {"seq": 1.5},
    {"event_time": "yesterday"},
    {"event_time": -5},
    {"event_time": None},
    {"user_id": 17},
    {"user_id": ""},
    {"item_id": ["a", "b"]},
    {"position": -1},
    {"value": "high"},
    {"event_type": 3},
    {"event_type": "teleport"},
    {"event_type": "VIEW"},
    {"event_type": "click", "item_id": None},
]


def _wrong_type(rng: random.Random, i: int) -> Message:
    user = f"w{i}"
    change = dict(rng.choice(_WRONG_TYPES))
    if change.get("user_id") is not None and not isinstance(change["user_id"], str):
        key = None
    else:
        key = str(change.get("user_id", user)).encode() or None
    return key, _json(_event(rng, user, 0, **change)), R.VALIDATION_ERROR


def _missing_field(rng: random.Random, i: int) -> Message:
    user = f"m{i}"
    field = rng.choice(["event_id", "user_id", "event_type", "event_time", "seq", "item_id"])
    key = None if field == "user_id" else user.encode()
    return key, _json(_event(rng, user, 0, **{field: ...})), R.VALIDATION_ERROR


def _huge_string(rng: random.Random, i: int) -> Message:
    # Longer than the contract's 256 characters but well under the size limit.
    user = f"h{i}"
    field = rng.choice(["event_id", "item_id", "session_id", "request_id"])
    text = "".join(rng.choices("abcxyzé漢🙂", k=rng.randrange(257, 4000)))
    return user.encode(), _json(_event(rng, user, 0, **{field: text})), R.VALIDATION_ERROR


def _bad_schema(rng: random.Random, i: int) -> Message:
    user = f"s{i}"
    schema = rng.choice([0, 2, 99])
    return user.encode(), _json(_event(rng, user, 0, schema=schema)), R.VALIDATION_ERROR


def _wrong_key(rng: random.Random, i: int) -> Message:
    user = f"k{i}"
    return f"not-{user}".encode(), _json(_event(rng, user, 0)), R.VALIDATION_ERROR


def _oversized(rng: random.Random, i: int) -> Message:
    user = f"o{i}"
    padding = "p" * (DEFAULT_MAX_MESSAGE_BYTES + rng.randrange(1, 40_000))
    return user.encode(), _json(_event(rng, user, 0, session_id=padding)), R.OVERSIZED


KINDS: list[tuple[Callable[[random.Random, int], Message], int]] = [
    (_truncated, 20),
    (_invalid_utf8, 10),
    (_garbage, 10),
    (_wrong_type, 20),
    (_missing_field, 10),
    (_huge_string, 8),
    (_bad_schema, 5),
    (_wrong_key, 5),
    (_oversized, 2),
]
"""Generators and their weights; out-of-order events are the rest (see `malformed`)."""


def malformed(seed: int, n: int) -> tuple[list[tuple[bytes | None, bytes]], list[Message]]:
    """`n` malformed messages (and the valid ones that set up out-of-order seqs), in send order.

    Returns every record to send and the malformed ones with their expected reason. For an
    out-of-order case a valid `view` at seq 10 (taken, not a trigger, so nothing comes back)
    goes first, then an older or equal seq of the same user, which must be dead-lettered.
    """
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS, strict=True)
    n_out_of_order = n // 10
    records: list[tuple[bytes | None, bytes]] = []
    bad: list[Message] = []
    for i in range(n - n_out_of_order):
        message = rng.choices(kinds, weights)[0](rng, i)
        records.append(message[:2])
        bad.append(message)
    for i in range(n_out_of_order):
        user = f"q{i}"
        records.append((user.encode(), _json(_event(rng, user, 10))))
        late = (user.encode(), _json(_event(rng, user, rng.randrange(11))), R.OUT_OF_ORDER)
        records.append(late[:2])
        bad.append(late)
    return records, bad


def _metrics(port: int) -> dict[str, float]:
    """recloop_worker_dead_letters_total by reason."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = r'^recloop_worker_dead_letters_total\{reason="([^"]+)"\} ([0-9.e+]+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}


def test_generator_makes_what_it_claims() -> None:
    """Each generated message really fails the contract the way it is labelled (in process)."""
    from recloop.core.contract import ContractError, decode_event

    _, bad = malformed(seed=1, n=2000)
    for key, raw, reason in bad:
        if reason is R.OUT_OF_ORDER:
            assert decode_event(raw).seq <= 10
            continue
        try:
            event = decode_event(raw)
        except ContractError as err:
            assert err.reason is reason, (raw[:200], err)
        else:  # only the key can be wrong
            assert reason is R.VALIDATION_ERROR and key != event.user_id.encode(), raw[:200]


def test_ten_thousand_malformed_messages_are_all_dead_lettered(
    broker: Broker, tmp_path: Path
) -> None:
    records, bad = malformed(seed=12, n=N_MALFORMED)
    expected = collections.Counter(reason.value for _, _, reason in bad)
    assert len(expected) == 4 and len(bad) == N_MALFORMED  # all but processing_error
    port = free_port()
    settings = Settings(
        bootstrap=broker.bootstrap,
        topics=unique_topics("bad"),
        worker=WorkerConfig(strategy=Strategy.RANDOM, metrics_port=port, data_dir=tmp_path),
        **(EmbeddedBroker.client_settings() if broker.kind == "tansu" else {}),  # type: ignore[arg-type]
    )
    worker = WorkerProcess(settings).start()
    try:
        asyncio.run(wait_for_recommender(settings, timeout=60))
        started = time.monotonic()
        asyncio.run(produce(broker.bootstrap, settings.topics.events, records))
        values = asyncio.run(
            collect(
                broker.bootstrap,
                settings.topics.dead_letters,
                lambda vs: len(vs) >= N_MALFORMED,
                timeout=45,
            )
        )
        elapsed = time.monotonic() - started
        # Nothing more arrives (each message is dead-lettered once) and the worker still answers.
        asyncio.run(wait_for_recommender(settings, timeout=20))
        assert worker.alive(), worker.log()[-3000:]
        counted = _metrics(port)
    finally:
        worker.stop()
    letters = [decode_dead_letter(v) for v in values]
    assert len(letters) == N_MALFORMED, f"{len(letters)} dead letters in {elapsed:.0f}s"
    got = collections.Counter(letter.reason.value for letter in letters)
    assert got == expected
    assert counted == {reason: float(n) for reason, n in expected.items()}
    # Every message is there once, whole, with the reason its kind calls for.
    assert collections.Counter((lt.raw, lt.reason) for lt in letters) == collections.Counter(
        (raw, reason) for _, raw, reason in bad
    )
    assert all(lt.detail and lt.topic == settings.topics.events for lt in letters)
    assert all(lt.offset is not None and lt.partition is not None for lt in letters)
    assert {lt.field for lt in letters if lt.reason is R.OUT_OF_ORDER} == {"seq"}
    log = worker.log()
    assert "Traceback" not in log and "processing failed" not in log, log[-3000:]


def _readme_reasons(path: Path, anchor: str) -> set[str]:
    text = path.read_text()
    section = text[text.index(anchor) :]
    block = section[: section.index("\n\n")]
    return set(re.findall(r"`([a-z_]+)`", block))


def test_documented_reasons_are_the_contract_and_each_is_produced() -> None:
    """README, streams README and the contract's enum name the same reasons; none is dead."""
    contract = {reason.value for reason in DeadLetterReason}
    readme = _readme_reasons(ROOT / "README.md", "* `DeadLetter` on") - {
        "reason",
        "detail",
        "field",
        "seq",
        "item_id",
    }
    streams = _readme_reasons(ROOT / "streams" / "README.md", "Dead-letter reasons:")
    assert readme == contract, readme ^ contract
    assert streams == contract, streams ^ contract
    # What the live test above produces, plus processing_error, which no input can cause
    # without a bug: a strategy that raises, through the worker's own pipeline.
    produced = {reason.value for _, _, reason in malformed(seed=12, n=N_MALFORMED)[1]}
    produced.add(_processing_error().value)
    assert produced == contract


def _processing_error() -> DeadLetterReason:
    from recloop.streams.pipeline import Pending, Pipeline
    from recloop.streams.strategies import RandomStrategy

    class Broken(RandomStrategy):
        def recommend(self, *args: object, **kwargs: object) -> list[list[tuple[str, float]]]:
            raise RuntimeError("strategy bug")

    pipeline = Pipeline(WorkerConfig(strategy=Strategy.RANDOM), Broken(), {}, 1 << 16)
    click = UserEvent(
        event_id="e", user_id="u", event_type=EventType.CLICK, event_time=1.0, seq=0, item_id="i"
    )
    pending = pipeline.on_event(encode(click), b"u", "events", 0, 0)
    assert isinstance(pending, Pending)
    try:
        pipeline.answer([pending])
    except RuntimeError as exc:
        (letter,) = pipeline.failed([pending], exc)
        return letter.reason
    raise AssertionError("the broken strategy did not raise")

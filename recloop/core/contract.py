"""The one versioned event contract for everything that travels on Kafka.

Three record types, all JSON on the wire (msgspec structs, so encoding and validation are fast
and errors name the offending field):

* `UserEvent` on the events topic, keyed by user id: what a (simulated or replayed) user did.
* `Recommendation` on the recommendations topic, keyed by user id: a ranked slate answering one
  triggering event, with a timestamp for each stage of the pipeline.
* `DeadLetter` on the dead-letter topic: a message that could not be taken, with the reason.

Any recommender that reads `UserEvent`s and writes `Recommendation`s can be stress-tested.
Times are Unix epoch seconds as floats.
"""

from __future__ import annotations

import enum
import re
import time
from typing import Annotated, TypeVar

import msgspec

from recloop.core.errors import InvalidInputError

SCHEMA_VERSION = 1
"""Bumped on any incompatible change; decoders reject versions they do not know."""

_T = TypeVar("_T")

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Epoch = Annotated[float, msgspec.Meta(ge=0)]


class EventType(enum.StrEnum):
    """What a user did. `request` asks the recommender for a slate without any other action;
    `favourite` marks an item as liked or saved for later (Taobao's `fav`), which is neither a
    click nor a purchase. New types are appended, so existing codes keep their positions."""

    SESSION_START = "session_start"
    VIEW = "view"
    CLICK = "click"
    CART = "cart"
    PURCHASE = "purchase"
    LEAVE = "leave"
    REQUEST = "request"
    FAVOURITE = "favourite"


ITEM_EVENTS = frozenset(
    {EventType.VIEW, EventType.CLICK, EventType.CART, EventType.PURCHASE, EventType.FAVOURITE}
)
"""Event types that are about one item and so must carry `item_id`."""


class UserEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One user action. `seq` increases by one per user, so gaps and reordering are visible."""

    event_id: NonEmptyStr
    user_id: NonEmptyStr
    event_type: EventType
    event_time: Epoch
    seq: Annotated[int, msgspec.Meta(ge=0)]
    item_id: NonEmptyStr | None = None
    produce_time: Epoch | None = None
    request_id: NonEmptyStr | None = None
    """The recommendation this event reacts to, if any."""
    position: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """0-based slot of `item_id` in that recommendation's slate."""
    session_id: NonEmptyStr | None = None
    value: float | None = None
    """Rating, price or any numeric payload the source log has."""
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema version {self.schema}, expected {SCHEMA_VERSION}")
        if self.event_type in ITEM_EVENTS and self.item_id is None:
            raise ValueError(f"`item_id` is required for event_type {self.event_type.value!r}")


class ScoredItem(msgspec.Struct, frozen=True, array_like=True):
    """One slate entry, encoded as a compact `[item_id, score]` pair."""

    item_id: str
    score: float


class StageTimes(msgspec.Struct, kw_only=True, omit_defaults=True):
    """When the triggering event passed each stage; differences give per-stage latency."""

    event: Epoch
    produced: Epoch | None = None
    consumed: Epoch | None = None
    inferred: Epoch | None = None
    emitted: Epoch | None = None


class Recommendation(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A ranked slate for one user, answering the event `event_id`."""

    request_id: NonEmptyStr
    user_id: NonEmptyStr
    event_id: NonEmptyStr
    items: list[ScoredItem]
    model_version: str
    strategy: str
    times: StageTimes
    schema: int = SCHEMA_VERSION


class DeadLetterReason(enum.StrEnum):
    """Why a message was dead-lettered; used as a metric label, so the set is closed.

    There is no "unknown user": a user the worker has never seen is a cold start, answered
    like any other (tests/faults/test_bad_input.py checks this list against both READMEs)."""

    OVERSIZED = "oversized"
    DECODE_ERROR = "decode_error"
    VALIDATION_ERROR = "validation_error"
    OUT_OF_ORDER = "out_of_order"
    PROCESSING_ERROR = "processing_error"


class DeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A message that could not be processed, kept whole (`raw`, base64 in JSON) with the reason."""

    reason: DeadLetterReason
    detail: str
    field: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    raw: bytes = b""
    received_time: Epoch = 0.0
    schema: int = SCHEMA_VERSION


class ContractError(InvalidInputError, ValueError):
    """A message broke the contract. `reason` is machine-readable, `field` names the culprit."""

    def __init__(self, reason: DeadLetterReason, detail: str, field: str | None = None) -> None:
        where = f" (field `{field}`)" if field else ""
        super().__init__(f"{reason.value}{where}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field

    def dead_letter(
        self,
        raw: bytes,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
    ) -> DeadLetter:
        """The dead-letter record for the message that raised this error."""
        return DeadLetter(
            reason=self.reason,
            detail=self.detail,
            field=self.field,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            raw=raw,
            received_time=time.time(),
        )


DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(UserEvent)
_rec_decoder = msgspec.json.Decoder(Recommendation)
_dlq_decoder = msgspec.json.Decoder(DeadLetter)
# msgspec ends validation messages with "- at `$.field`" (or `$.items[3].score`).
_MISSING = re.compile(r"missing required field `([^`]*)`")
_PATH = re.compile(r"\s*-\s*at\s*`\$\.?([^`]*)`\s*$")


def encode(record: UserEvent | Recommendation | DeadLetter) -> bytes:
    """Serialise any contract record to JSON bytes."""
    return _encoder.encode(record)


def _decode(decoder: msgspec.json.Decoder[_T], raw: bytes, max_bytes: int) -> _T:
    if len(raw) > max_bytes:
        raise ContractError(
            DeadLetterReason.OVERSIZED,
            f"message is {len(raw)} bytes, the limit is {max_bytes} "
            "(raise RECLOOP_MAX_MESSAGE_BYTES if this is intended)",
        )
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        field = match.group(1) if match and match.group(1) else None
        detail = _PATH.sub("", message) if match else message
        if missing := _MISSING.search(detail):
            # A missing nested field is reported at its parent's path.
            field = f"{field}.{missing.group(1)}" if field else missing.group(1)
        elif field is None and "`item_id` is required" in message:
            field = "item_id"
        elif field is None and "schema version" in message:
            field = "schema"
        raise ContractError(DeadLetterReason.VALIDATION_ERROR, detail, field) from None
    except msgspec.DecodeError as exc:
        raise ContractError(DeadLetterReason.DECODE_ERROR, f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        # msgspec raises this (not DecodeError) for invalid UTF-8 inside some string values.
        raise ContractError(DeadLetterReason.DECODE_ERROR, f"not valid UTF-8: {exc}") from None


def decode_event(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> UserEvent:
    """Decode and validate a `UserEvent`, raising `ContractError` that names what is wrong."""
    return _decode(_event_decoder, raw, max_bytes)


def decode_recommendation(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Recommendation:
    """Decode and validate a `Recommendation`, raising `ContractError` on any violation."""
    return _decode(_rec_decoder, raw, max_bytes)


def decode_dead_letter(raw: bytes) -> DeadLetter:
    """Decode a `DeadLetter` record (for tools that read the dead-letter topic)."""
    return _dlq_decoder.decode(raw)

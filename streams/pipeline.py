"""The worker's per-event and per-batch logic, free of Faust so it can be unit-tested.

Per event (`Pipeline.on_event`, run by Faust with the right event context for table writes):
decode and validate, classify against the user's state, fold it in, and decide whether it
calls for a recommendation. Per batch (`Pipeline.answer`): one inference call for every
pending request, off the event loop, then the recommendations.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, MutableMapping

import msgspec

from recloop.core.contract import (
    ContractError,
    DeadLetter,
    DeadLetterReason,
    EventType,
    Recommendation,
    ScoredItem,
    StageTimes,
    UserEvent,
    decode_event,
    encode,
)
from recloop.core.settings import WorkerConfig
from recloop.streams import metrics
from recloop.streams.state import UserState, apply, classify, decode_state, encode_state
from recloop.streams.strategies import RandomStrategy, Ranker


class Pending(msgspec.Struct):
    """A triggering event waiting for its recommendation."""

    event: UserEvent
    history: list[str]
    consumed: float
    request_id: str = ""
    """uuid5 of user and event id (computed once, in the processor)."""


class Rejected(msgspec.Struct):
    """A message that goes to the dead-letter topic."""

    letter: DeadLetter


class Pipeline:
    """Turns raw event messages into state updates and batched recommendations."""

    def __init__(
        self,
        config: WorkerConfig,
        strategy: Ranker,
        table: MutableMapping[bytes, bytes],
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.table = table
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.triggers = frozenset(EventType(t) for t in config.trigger_on)
        self.next_offset: dict[tuple[str, int], int] = {}
        """Per (topic, partition): the offset after the last message processed (for lag)."""

    def on_event(
        self, raw: bytes, key: bytes | None, topic: str, partition: int, offset: int
    ) -> Pending | Rejected | None:
        """Process one message; return what the batch step must do with it."""
        consumed = self.clock()
        self.next_offset[(topic, partition)] = offset + 1
        try:
            event = decode_event(raw, self.max_message_bytes)
            user_key = event.user_id.encode()
            if key is not None and key != user_key:
                raise ContractError(
                    DeadLetterReason.VALIDATION_ERROR,
                    f"message key {key!r} differs from user_id {event.user_id!r}; "
                    "events must be keyed by user id so each user stays on one partition",
                    "user_id",
                )
        except ContractError as err:
            letter = err.dead_letter(raw, topic=topic, partition=partition, offset=offset, key=key)
            return Rejected(letter)
        metrics.events_counter(event.event_type.value).inc()
        state = decode_state(self.table.get(user_key))
        order = classify(state, event)
        if not order.fresh and not order.redelivered:
            err = ContractError(
                DeadLetterReason.OUT_OF_ORDER,
                f"seq {event.seq} arrived after seq {state.last_seq} for this user",
                "seq",
            )
            letter = err.dead_letter(raw, topic=topic, partition=partition, offset=offset, key=key)
            return Rejected(letter)
        if order.fresh:
            if order.gap:
                metrics.SEQUENCE_GAPS.inc(order.gap)
            apply(state, event, self.config.history_length)
            if isinstance(self.strategy, RandomStrategy) and event.item_id is not None:
                self.strategy.observe(event.item_id)
        else:
            metrics.REDELIVERED.inc()
        if event.event_type not in self.triggers:
            # A redelivery rewrites the (unchanged) state too: with a persistent store the
            # local copy can be ahead of the changelog after a crash (the changelog record was
            # still in the producer), and this puts the changelog back in step.
            self.table[user_key] = encode_state(state)
            return None
        request_id = _request_id(event)
        if order.fresh:
            # The request id is fixed before inference so the state can name it.
            state.last_request_id = request_id
        self.table[user_key] = encode_state(state)
        # `state` was decoded for this event alone, so its history can be handed over uncopied.
        return Pending(event=event, history=state.history, consumed=consumed, request_id=request_id)

    def answer(self, batch: list[Pending]) -> list[Recommendation]:
        """Rank items for every pending request in one strategy call (blocking; run off-loop)."""
        if not batch:
            return []
        strategy = self.strategy  # read once: a hot reload swaps it, this batch keeps its version
        started = time.perf_counter()
        if self.config.inject_delay_seconds:
            time.sleep(self.config.inject_delay_seconds)
        slates = strategy.recommend(
            [p.history for p in batch], self.config.slate_size, self.config.exclude_seen
        )
        elapsed = time.perf_counter() - started
        metrics.inference_histogram(strategy.name).observe(elapsed)
        metrics.BATCH_SIZE.observe(len(batch))
        inferred = self.clock()
        return [
            Recommendation(
                request_id=p.request_id or _request_id(p.event),
                user_id=p.event.user_id,
                event_id=p.event.event_id,
                items=[ScoredItem(item, score) for item, score in slate],
                model_version=strategy.version,
                strategy=strategy.name,
                times=StageTimes(
                    event=p.event.event_time,
                    produced=p.event.produce_time,
                    consumed=p.consumed,
                    inferred=inferred,
                ),
            )
            for p, slate in zip(batch, slates, strict=True)
        ]

    def failed(self, batch: list[Pending], exc: BaseException) -> list[DeadLetter]:
        """Dead letters for a batch whose inference raised, so the stream can go on."""
        detail = f"strategy {self.strategy.name!r} failed: {type(exc).__name__}: {exc}"
        return [
            DeadLetter(
                reason=DeadLetterReason.PROCESSING_ERROR,
                detail=detail[:1000],
                key=p.event.user_id.encode(),
                raw=encode(p.event),
                received_time=p.consumed,
            )
            for p in batch
        ]


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def _request_id(event: UserEvent) -> str:
    """Deterministic request id per event, so a redelivered event gets the same id.

    `uuid.uuid5(NAMESPACE_URL, "recloop:<user>:<event>")`, computed without the `UUID` object
    (a third of the per-event cost of `on_event` in the profile); `test_request_id_is_uuid5`
    checks that the two agree."""
    name = f"recloop:{event.user_id}:{event.event_id}".encode()
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def record_emitted(rec: Recommendation) -> None:
    """Stamp the emit time and observe stage latencies for one recommendation."""
    t = rec.times
    t.emitted = time.time()
    metrics.recommendations_counter(rec.strategy).inc()
    if t.consumed is not None:
        metrics.PROCESSING_SECONDS.observe(max(0.0, t.emitted - t.consumed))
        if t.produced is not None:
            metrics.STAGE_QUEUE.observe(max(0.0, t.consumed - t.produced))
        if t.inferred is not None:
            metrics.STAGE_BATCH_AND_INFER.observe(max(0.0, t.inferred - t.consumed))
            metrics.STAGE_EMIT.observe(max(0.0, t.emitted - t.inferred))


def record_dead_letter(letter: DeadLetter) -> None:
    """Count a dead letter by reason."""
    metrics.dead_letters_counter(letter.reason.value).inc()


__all__ = ["Pending", "Pipeline", "Rejected", "UserState", "record_dead_letter", "record_emitted"]

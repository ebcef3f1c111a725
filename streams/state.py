"""Per-user state kept in the worker's Faust table (one msgspec record per user, JSON bytes)."""

from __future__ import annotations

import msgspec

from recloop.core.contract import EventType, UserEvent

RECENT_IDS = 32
"""How many recent event ids a user keeps, to tell a redelivery from a reordered event."""


class UserState(msgspec.Struct, kw_only=True):
    """What the worker remembers about one user."""

    history: list[str] = []
    """Recent item ids, oldest first, bounded by the worker's history length."""
    counts: dict[str, int] = {}
    """Events seen, by event type."""
    last_seq: int = -1
    session_id: str | None = None
    session_events: int = 0
    last_event_time: float = 0.0
    last_request_id: str | None = None
    recent_event_ids: list[str] = []


class Ordering(msgspec.Struct, frozen=True):
    """How an event relates to what the user's state has already seen."""

    fresh: bool
    """Not seen before and not older than the last event: apply it."""
    redelivered: bool
    """Already applied (at-least-once redelivery after a restart): answer again, change nothing."""
    gap: int
    """Sequence numbers skipped before this event (lost or not yet arrived upstream)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    """Serialise a state for the table."""
    return _encoder.encode(state)


def decode_state(raw: bytes | None) -> UserState:
    """Deserialise a state from the table (a new user when `raw` is None)."""
    return UserState() if raw is None else _decoder.decode(raw)


def classify(state: UserState, event: UserEvent) -> Ordering:
    """Decide whether `event` is new, a redelivery, or out of order for this user."""
    if event.event_id in state.recent_event_ids:
        return Ordering(fresh=False, redelivered=True, gap=0)
    if event.seq <= state.last_seq:
        return Ordering(fresh=False, redelivered=False, gap=0)
    return Ordering(fresh=True, redelivered=False, gap=max(0, event.seq - state.last_seq - 1))


def apply(state: UserState, event: UserEvent, history_length: int) -> UserState:
    """Fold a fresh event into the state (mutates and returns it)."""
    kind = event.event_type.value
    state.counts[kind] = state.counts.get(kind, 0) + 1
    state.last_seq = event.seq
    state.last_event_time = event.event_time
    if event.event_type is EventType.SESSION_START or event.session_id != state.session_id:
        state.session_id = event.session_id
        state.session_events = 0
    state.session_events += 1
    if event.item_id is not None and event.event_type is not EventType.LEAVE:
        state.history.append(event.item_id)
        del state.history[:-history_length]
    state.recent_event_ids.append(event.event_id)
    del state.recent_event_ids[:-RECENT_IDS]
    return state

"""One simulated user's session state and the decisions a user takes on a slate.

A session: start, receive a slate, scan it in order and click the first item that appeals
(maybe buy it), then request more, browse organically, or leave. Leaving comes from the
behaviour model's leave probability raised by fatigue (steps so far) and boredom (share of the
slate already shown this session), from the user's session length, or from impatience: a
request unanswered within the user's patience abandons the session. Satisfied users are more
likely to return for another session; preferences drift a little between sessions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from recloop.simulator.reactions import Reaction


class EndReason(enum.StrEnum):
    """Why a session ended (the `reason` label of recloop_sim_sessions_ended_total)."""

    FATIGUE = "fatigue"
    BOREDOM = "boredom"
    ABANDONED = "abandoned"
    SATISFIED = "satisfied"
    END_OF_RUN = "end_of_run"


@dataclass(slots=True)
class SimUser:
    """Mutable state of one user of this process's shard."""

    row: int
    global_index: int
    user_id: str
    history: list[int]
    draws: int = 0
    sessions: int = 0
    session_id: str = ""
    active: bool = False
    step: int = 0
    depth: int = 0
    clicks: int = 0
    bought: bool = False
    waiting: str | None = None
    """Event id of the request this user waits on, if any."""
    shown: set[int] = field(default_factory=set)
    key: bytes = b""
    """The Kafka key (the user id's bytes)."""

    def __post_init__(self) -> None:
        self.key = self.user_id.encode()

    def start_session(self, run_id: str) -> None:
        self.sessions += 1
        self.session_id = f"{run_id}:{self.user_id}:{self.sessions}"
        self.active = True
        self.step = self.depth = self.clicks = 0
        self.bought = False
        self.waiting = None
        self.shown = set()

    def remember(self, item: int, length: int = 50) -> None:
        self.history.append(item)
        del self.history[:-length]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one user does after seeing a slate."""

    click: int | None
    """Slot clicked (the first one that appealed), or None."""
    buy: bool
    leave: EndReason | None
    organic: bool
    comes_back: bool
    think: float
    """Multiplier of the user's mean think time for this step."""
    pick: float
    """Uniform for choosing the organic item."""
    gap: float
    """Exponential(1) draw scaling the time until a return visit."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def decide(
    reaction: Reaction,
    u: np.ndarray,
    steps: np.ndarray,
    repeat_share: np.ndarray,
    session_length: np.ndarray,
    *,
    fatigue: float,
    boredom: float,
    organic_share: float,
    return_probability: float,
    satisfaction: np.ndarray,
) -> list[Decision]:
    """Decisions for a batch. `u` is [B, 2S+6] uniforms (see `reactions.uniforms`)."""
    b, s = reaction.p_click.shape
    clicked = u[:, :s] < reaction.p_click
    any_click = clicked.any(axis=1)
    first = np.where(any_click, clicked.argmax(axis=1), 0)
    buy = any_click & (u[np.arange(b), s + first] < reaction.p_buy[np.arange(b), first])
    p_leave = 1 / (
        1 + np.exp(-(_logit(reaction.p_leave) + fatigue * steps + boredom * repeat_share))
    )
    leaves = u[:, 2 * s] < p_leave
    tired = steps + 1 >= session_length
    organic = u[:, 2 * s + 1] < organic_share
    back = u[:, 2 * s + 2] < return_probability * (0.5 + np.clip(satisfaction, 0, 1))
    think = 0.5 + u[:, 2 * s + 3]
    pick = u[:, 2 * s + 4]
    gap = -np.log1p(-u[:, 2 * s + 5])
    out = []
    for i in range(b):
        reason: EndReason | None = None
        if tired[i]:
            reason = EndReason.FATIGUE
        elif leaves[i]:
            if buy[i]:
                reason = EndReason.SATISFIED
            elif not any_click[i] or repeat_share[i] >= 0.3:
                reason = EndReason.BOREDOM
            else:
                reason = EndReason.FATIGUE
        out.append(
            Decision(
                click=int(first[i]) if any_click[i] else None,
                buy=bool(buy[i]),
                leave=reason,
                organic=bool(organic[i]),
                comes_back=bool(back[i]),
                think=float(think[i]),
                pick=float(pick[i]),
                gap=float(gap[i]),
            )
        )
    return out


def drift(preference: np.ndarray, amount: float, noise: np.ndarray) -> np.ndarray:
    """Move a preference vector a little (interest drift between sessions), keeping its norm."""
    norm = float(np.linalg.norm(preference)) or 1.0
    moved = preference + amount * norm * noise / max(1e-9, float(np.linalg.norm(noise)))
    return (moved * norm / max(1e-9, float(np.linalg.norm(moved)))).astype(np.float32)

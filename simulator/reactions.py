"""How users react to a slate, for a whole batch of users at once.

`WorldBehaviour` uses a synthetic world's true click model on each user's (drifting) preference;
`ModelBehaviour` runs the learnt behaviour model (onnxruntime). Either way the click
probability of a slot depends on the item recommended there, so a recommender that shows users
what they like gets more clicks. Randomness comes from `uniforms`, a counter-based generator
keyed by (seed, user, draw number), so decisions depend only on the seed and what was shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arithmetic wraps, which is what we want)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def uniforms(seed: int, users: np.ndarray, draws: np.ndarray, width: int) -> np.ndarray:
    """[B, width] uniforms in [0, 1) from (seed, global user index, draw counter)."""
    with np.errstate(over="ignore"):
        base = _mix(
            np.uint64(seed & 0xFFFFFFFF) * _GOLD
            + users.astype(np.uint64) * np.uint64(0x100000001B3)
            + (draws.astype(np.uint64) << np.uint64(20))
        )
        cols = np.arange(width, dtype=np.uint64) * _GOLD
        bits = _mix(base[:, None] + cols[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class Reaction:
    """[B, S] click and buy-given-click probabilities and [B] leave probability."""

    p_click: np.ndarray
    p_buy: np.ndarray
    p_leave: np.ndarray


class Behaviour(Protocol):
    """Batched reactions: `slates` holds item indices, -1 for items outside the catalogue."""

    name: str
    version: str

    def react(
        self, preference: np.ndarray, histories: np.ndarray, slates: np.ndarray, steps: np.ndarray
    ) -> Reaction: ...


class WorldBehaviour:
    """The synthetic world's ground-truth click model, applied to the users' current preference."""

    name = "world"

    def __init__(self, world: object) -> None:
        from recloop.models.data.synthetic import SyntheticWorld

        assert isinstance(world, SyntheticWorld)
        self.world = world
        self.version = f"world-seed:{world.log.source}"

    def react(
        self, preference: np.ndarray, histories: np.ndarray, slates: np.ndarray, steps: np.ndarray
    ) -> Reaction:
        from recloop.models.data.synthetic import reaction_probabilities

        w = self.world
        known = slates >= 0
        idx = np.where(known, slates, 0)
        affinity = np.einsum("bsd,bd->bs", w.item_vectors[idx], preference)
        s = slates.shape[1]
        pos = np.resize(w.position_bias, s) if s > len(w.position_bias) else w.position_bias[:s]
        best = np.where(known, affinity, -1.0).max(axis=1)
        p_click, p_buy, p_leave = reaction_probabilities(
            w.params, affinity, w.popularity[idx], pos, steps, best
        )
        return Reaction(np.where(known, p_click, 0.0), np.where(known, p_buy, 0.0), p_leave)


class ModelBehaviour:
    """The learnt behaviour model (LSTM or LM) from a model directory, via onnxruntime."""

    name = "model"

    def __init__(self, model_dir: object, kind: str = "lstm") -> None:
        from recloop.models.runtime import BehaviourRuntime, ModelDir

        assert isinstance(model_dir, ModelDir)
        self.runtime = BehaviourRuntime(model_dir, kind, threads=1)
        self.version = model_dir.version

    def react(
        self, preference: np.ndarray, histories: np.ndarray, slates: np.ndarray, steps: np.ndarray
    ) -> Reaction:
        from recloop.models.runtime import OOV

        known = slates >= 0
        s = np.where(known, slates, OOV)[:, : self.runtime.max_slate]
        out = self.runtime.react(histories, s)
        width = s.shape[1]
        p_click = np.zeros(slates.shape, np.float64)
        p_buy = np.zeros(slates.shape, np.float64)
        p_click[:, :width] = np.where(known[:, :width], out.p_click, 0.0)
        p_buy[:, :width] = np.where(known[:, :width], out.p_buy, 0.0)
        return Reaction(p_click, p_buy, out.p_leave.astype(np.float64))


def true_top_k(
    preference: np.ndarray, item_vectors: np.ndarray, k: int, first_item: int
) -> np.ndarray:
    """[B, k] item indices each user truly likes best (ground truth for hit rate)."""
    scores = preference @ item_vectors.T
    scores[:, :first_item] = -np.inf
    k = min(k, scores.shape[1] - first_item)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]

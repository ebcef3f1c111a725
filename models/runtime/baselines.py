"""Baseline recommenders on the same interface: most-popular and item co-occurrence.

Both read numpy arrays the trainer writes into the model directory, so every comparison has a
floor computed from exactly the same training split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recloop.models.runtime.card import ModelDir
from recloop.models.runtime.session import as_histories
from recloop.models.runtime.vocab import OOV, PAD

_EXCLUDED = -np.inf


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return (
        np.take_along_axis(part, order, axis=1).astype(np.int64),
        np.take_along_axis(part_scores, order, axis=1).astype(np.float32),
    )


def _mask_seen(scores: np.ndarray, histories: np.ndarray) -> None:
    rows = np.repeat(np.arange(histories.shape[0]), histories.shape[1])
    scores[rows, histories.ravel()] = _EXCLUDED


class PopularRecommender:
    """Recommends the most frequent training items (optionally minus what the user has seen)."""

    def __init__(self, counts: np.ndarray, version: str, history_length: int) -> None:
        self.version = version
        self.history_length = history_length
        self._scores = np.log1p(counts.astype(np.float32))
        self._scores[[PAD, OOV]] = _EXCLUDED

    @classmethod
    def load(cls, model_dir: str | Path | ModelDir) -> PopularRecommender:
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        counts = np.load(md.file("popularity"))
        return cls(counts, f"{md.version}+popular", md.card.history_length)

    def recommend(
        self, histories: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        h = as_histories(histories, self.history_length)
        scores = np.broadcast_to(self._scores, (h.shape[0], len(self._scores))).copy()
        if exclude_seen:
            _mask_seen(scores, h)
        return _top_k(scores, k)


class CooccurrenceRecommender:
    """Item-to-item: sums each recent history item's nearest co-occurring neighbours.

    `neighbours[i]` / `weights[i]` hold item i's top co-occurring items (cosine-normalised counts
    within a window of the training sequences); the most recent items weigh most, and a tiny
    popularity prior breaks ties and fills users with no informative history.
    """

    def __init__(
        self,
        neighbours: np.ndarray,
        weights: np.ndarray,
        counts: np.ndarray,
        version: str,
        history_length: int,
        recent: int = 20,
        decay: float = 0.9,
    ) -> None:
        self.version = version
        self.history_length = history_length
        self._neighbours = neighbours.astype(np.int64)
        self._weights = weights.astype(np.float32)
        self._prior = 1e-3 * np.log1p(counts.astype(np.float32)) / max(1.0, np.log1p(counts.max()))
        self._prior[[PAD, OOV]] = _EXCLUDED
        self._recent = recent
        self._decay = decay

    @classmethod
    def load(cls, model_dir: str | Path | ModelDir) -> CooccurrenceRecommender:
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        data = np.load(md.file("cooccurrence"))
        counts = np.load(md.file("popularity"))
        return cls(
            data["neighbours"],
            data["weights"],
            counts,
            f"{md.version}+cooccurrence",
            md.card.history_length,
        )

    def recommend(
        self, histories: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        h = as_histories(histories, self.history_length)
        b, n_items = h.shape[0], len(self._prior)
        recent = h[:, -self._recent :]
        recency = self._decay ** np.arange(recent.shape[1] - 1, -1, -1, dtype=np.float32)
        valid = (recent > OOV).astype(np.float32) * recency  # padding and OOV contribute nothing
        neigh = self._neighbours[recent]  # [B, R, N]
        contrib = self._weights[recent] * valid[:, :, None]
        flat = (np.arange(b)[:, None, None] * n_items + neigh).ravel()
        # bincount is a fast scatter-add (np.add.at is an order of magnitude slower).
        scores = np.bincount(flat, weights=contrib.ravel(), minlength=b * n_items)
        scores = scores.reshape(b, n_items).astype(np.float32) + self._prior
        scores[:, [PAD, OOV]] = _EXCLUDED
        if exclude_seen:
            _mask_seen(scores, h)
        return _top_k(scores, k)

"""User generator: samples new users that behave like the training population.

The ONNX graph maps (mixture component, standard-normal noise) to a user feature vector
`[preference (d), log sessions/day, log events/session, log seconds between events,
log session seconds]`; the mixture weights and clipping ranges live in `generator.npz`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.models.runtime.card import ModelDir, ModelLoadError
from recloop.models.runtime.session import open_session
from recloop.models.runtime.vocab import OOV

STAT_NAMES = ("sessions_per_day", "session_length", "inter_arrival_seconds", "patience_seconds")


@dataclass(frozen=True, slots=True)
class GeneratedUsers:
    """n generated users (all arrays have n rows)."""

    preference: np.ndarray
    seed_history: np.ndarray
    sessions_per_day: np.ndarray
    session_length: np.ndarray
    inter_arrival_seconds: np.ndarray
    patience_seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.preference)


class UserGeneratorRuntime:
    """Samples `GeneratedUsers`; `.item_embeddings` [V, d] shares the preference space."""

    def __init__(self, model_dir: ModelDir, threads: int | None = None) -> None:
        self.model_dir = model_dir
        self.version = model_dir.version
        entry = model_dir.model("generator")
        self.session = open_session(model_dir.path, entry, threads)
        data = np.load(model_dir.file("generator"))
        self.weights = data["weights"].astype(np.float64)
        self.weights /= self.weights.sum()
        self.low = data["low"].astype(np.float32)
        self.high = data["high"].astype(np.float32)
        self.history_temperature = float(data["history_temperature"])
        self.item_embeddings: np.ndarray = np.load(model_dir.file("item_embeddings")).astype(
            np.float32
        )
        self.dim = int(self.item_embeddings.shape[1])
        self.history_length = model_dir.card.history_length
        self._log_pop = np.log1p(np.load(model_dir.file("popularity")).astype(np.float64))
        self._output = self.session.get_outputs()[0].name
        feature_dim = self.dim + len(STAT_NAMES)
        if len(self.low) != feature_dim:
            raise ModelLoadError(
                f"{model_dir.path}: generator has {len(self.low)} features, expected {feature_dim}"
            )

    @classmethod
    def load(
        cls, model_dir: str | Path | ModelDir, threads: int | None = None
    ) -> UserGeneratorRuntime:
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        return cls(md, threads)

    def sample(self, n: int, seed: int = 0) -> GeneratedUsers:
        """Sample n users; the same seed gives the same users."""
        if n < 1:
            raise ValueError("n must be at least 1")
        rng = np.random.default_rng(seed)
        component = rng.choice(len(self.weights), size=n, p=self.weights).astype(np.int64)
        noise = rng.standard_normal((n, len(self.low))).astype(np.float32)
        (features,) = self.session.run([self._output], {"component": component, "noise": noise})
        # Clip to the range seen in training: a Gaussian tail must not create absurd users.
        features = np.clip(features, self.low, self.high)
        pref = np.ascontiguousarray(features[:, : self.dim], dtype=np.float32)
        stats = np.exp(features[:, self.dim :]).astype(np.float32)
        return GeneratedUsers(
            preference=pref,
            seed_history=self._histories(pref, stats[:, 1], rng),
            sessions_per_day=stats[:, 0],
            session_length=stats[:, 1],
            inter_arrival_seconds=stats[:, 2],
            patience_seconds=stats[:, 3],
        )

    def _histories(
        self, pref: np.ndarray, length: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Items drawn without replacement from softmax(preference . item / T) (Gumbel top-k)."""
        n, big_l = len(pref), self.history_length
        logits = (pref @ self.item_embeddings.T).astype(np.float64) / self.history_temperature
        logits[:, : OOV + 1] = -np.inf
        keys = logits + rng.gumbel(size=logits.shape)
        counts = np.clip(np.rint(length), 1, big_l).astype(np.int64)
        order = np.argsort(-keys, axis=1)[:, :big_l]
        out = np.zeros((n, big_l), dtype=np.int64)
        for row in range(n):
            picked = order[row, : counts[row]][::-1]  # least likely first: the best is most recent
            out[row, big_l - counts[row] :] = picked
        return out

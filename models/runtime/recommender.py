"""The ONNX transformer recommender and the `Recommender` protocol every recommender follows."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from recloop.models.runtime.card import ModelDir, ModelLoadError
from recloop.models.runtime.session import as_histories, open_session
from recloop.models.runtime.vocab import Vocabulary


@runtime_checkable
class Recommender(Protocol):
    """Scores the catalogue for a batch of left-padded histories and returns the top k."""

    version: str
    history_length: int

    def recommend(
        self, histories: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """([B, k] int64 item indices, [B, k] float32 scores), best first."""
        ...


class _Loaded:
    """One immutable loaded version; swapping replaces the whole object in one assignment."""

    def __init__(self, model_dir: ModelDir, threads: int | None) -> None:
        self.model_dir = model_dir
        entry = model_dir.model("recommender")
        self.session: ort.InferenceSession = open_session(model_dir.path, entry, threads)
        outputs = {o.name for o in self.session.get_outputs()}
        # Output roles come from the card config (written from the exported session), not literals.
        self.items_output = str(entry.config.get("items_output", ""))
        self.scores_output = str(entry.config.get("scores_output", ""))
        if {self.items_output, self.scores_output} - outputs:
            raise ModelLoadError(
                f"{model_dir.path}: card names outputs {self.items_output!r}, "
                f"{self.scores_output!r}; graph has {sorted(outputs)}"
            )
        self.history_input = str(entry.config.get("history_input", "history"))
        self.exclude_input = str(entry.config.get("exclude_input", "exclude_seen"))
        self.max_k = int(entry.config.get("max_k", 100))
        # Graphs written by `serving.serving_graph` take the top-k size as an input with a
        # default (an overridable initializer): asking for k, not max_k, saves most of TopK.
        self.k_input = str(entry.config.get("k_input", ""))
        if self.k_input and self.k_input not in {
            i.name for i in self.session.get_overridable_initializers()
        }:
            raise ModelLoadError(
                f"{model_dir.path}: card names k input {self.k_input!r}, graph has none"
            )
        self.version = model_dir.version
        self.history_length = model_dir.card.history_length


class RecommenderRuntime:
    """SASRec-style transformer in ONNX: top-k over the whole catalogue inside the graph."""

    def __init__(self, model_dir: ModelDir, threads: int | None = None) -> None:
        self._threads = threads
        self._state = _Loaded(model_dir, threads)
        self._swap_lock = threading.Lock()

    @classmethod
    def load(
        cls, model_dir: str | Path | ModelDir, threads: int | None = None
    ) -> RecommenderRuntime:
        """Load from a model directory (path or already-loaded `ModelDir`)."""
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        return cls(md, threads)

    @property
    def version(self) -> str:
        return self._state.version

    @property
    def history_length(self) -> int:
        return self._state.history_length

    @property
    def items(self) -> Vocabulary:
        """The item vocabulary of the loaded version."""
        return self._state.model_dir.items

    @property
    def max_k(self) -> int:
        return self._state.max_k

    def recommend(
        self, histories: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for each left-padded history row."""
        state = self._state  # one read: a concurrent swap cannot mix two versions in a call
        if not 1 <= k <= state.max_k:
            raise ValueError(f"k must be in [1, {state.max_k}] for this model, got {k}")
        h = as_histories(histories, state.history_length)
        flag = np.full(h.shape[0], 1.0 if exclude_seen else 0.0, dtype=np.float32)
        feed = {state.history_input: h, state.exclude_input: flag}
        if state.k_input:
            feed[state.k_input] = np.array([k], np.int64)
        items, scores = state.session.run([state.items_output, state.scores_output], feed)
        return items[:, :k].astype(np.int64), scores[:, :k].astype(np.float32)

    def swap(self, model_dir: str | Path | ModelDir) -> str:
        """Load a new version fully, then switch to it atomically; returns the new version.

        A failed load raises `ModelLoadError` and leaves the current version serving.
        """
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        with self._swap_lock:
            loaded = _Loaded(md, self._threads)
            self._state = loaded
        return loaded.version

"""Recommendation strategies behind one interface, chosen by `worker.strategy`.

`onnx` (the transformer), `popular` and `cooccurrence` come from a model directory trained by
`recloop train`; `random` needs no model and draws from the items the worker has seen (or the
model's vocabulary when there is one), so the loop runs before any training.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

ScoredSlate = list[tuple[str, float]]


class StrategyError(RuntimeError):
    """A strategy could not be built (missing or invalid model directory)."""


class Strategy(Protocol):
    """Ranks items for a batch of users from their recent item histories."""

    name: str
    version: str

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]: ...


class RandomStrategy:
    """Uniformly random items from a growing catalogue: the floor every recommender must beat."""

    name = "random"
    version = "random-1"

    def __init__(self, catalogue: list[str] | None = None, seed: int = 0) -> None:
        self._items: list[str] = list(catalogue or [])
        self._known: set[str] = set(self._items)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def observe(self, item_id: str) -> None:
        """Add an item seen in the stream to the catalogue."""
        if item_id not in self._known:
            with self._lock:
                self._known.add(item_id)
                self._items.append(item_id)

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]:
        with self._lock:
            items = list(self._items)
        out: list[ScoredSlate] = []
        for history in histories:
            seen = set(history) if exclude_seen else set()
            pool = [i for i in items if i not in seen] if seen else items
            if not pool:
                out.append([])
                continue
            picks = self._rng.choice(len(pool), size=min(k, len(pool)), replace=False)
            scores = self._rng.random(len(picks))
            order = np.argsort(-scores)
            out.append([(pool[picks[j]], float(scores[j])) for j in order])
        return out


class ModelStrategy:
    """Adapts a `models.runtime` recommender (ONNX transformer or a baseline) to `Strategy`."""

    def __init__(self, name: str, model_dir: Path) -> None:
        from models.runtime import (
            CooccurrenceRecommender,
            ModelDir,
            ModelLoadError,
            PopularRecommender,
            RecommenderRuntime,
        )

        loaders = {
            "onnx": RecommenderRuntime,
            "popular": PopularRecommender,
            "cooccurrence": CooccurrenceRecommender,
        }
        try:
            self._model_dir = ModelDir(model_dir)
            self._model = loaders[name].load(model_dir)
        except (ModelLoadError, FileNotFoundError) as exc:
            raise StrategyError(
                f"strategy {name!r} needs a trained model directory at {model_dir}: {exc} "
                "(run `recloop train --out {model_dir}` or set RECLOOP_WORKER__MODEL_DIR)"
            ) from exc
        self.name = name
        self.version = self._model.version
        self._vocab = self._model_dir.items
        self.history_length = int(getattr(self._model, "history_length", 50))

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]:
        length = self.history_length
        batch = np.zeros((len(histories), length), dtype=np.int64)
        for row, history in enumerate(histories):
            if history:
                ids = self._vocab.encode(history[-length:])
                batch[row, length - len(ids) :] = ids
        indices, scores = self._model.recommend(batch, k, exclude_seen=exclude_seen)
        out: list[ScoredSlate] = []
        for row_ids, row_scores in zip(indices, scores, strict=True):
            names = self._vocab.decode(row_ids)
            out.append([(n, float(s)) for n, s in zip(names, row_scores, strict=True) if n])
        return out


def build_strategy(name: str, model_dir: Path) -> Strategy:
    """The strategy called `name`, loading its model from `model_dir` where it needs one."""
    if name == "random":
        catalogue: list[str] = []
        items = model_dir / "items.json"
        if items.is_file():
            import json

            catalogue = [i for i in json.loads(items.read_text())[2:] if i]
        return RandomStrategy(catalogue)
    if name in {"onnx", "popular", "cooccurrence"}:
        return ModelStrategy(name, model_dir)
    raise StrategyError(f"unknown strategy {name!r}; choose onnx, popular, cooccurrence or random")

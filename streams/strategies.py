"""Recommendation strategies behind one interface, chosen by `worker.strategy`.

`onnx` (the transformer), `popular` and `cooccurrence` come from a model directory trained by
`recloop train`; `random` needs no model and draws from the items the worker has seen (or the
model's vocabulary when there is one), so the loop runs before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from recloop.core.errors import InvalidInputError
from recloop.core.settings import Strategy

ScoredSlate = list[tuple[str, float]]


class StrategyError(InvalidInputError):
    """A strategy could not be built (missing or invalid model directory)."""


class Ranker(Protocol):
    """A strategy's implementation: ranks items for a batch of users from their item histories."""

    name: str
    version: str

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]: ...


SAMPLE_FACTOR = 4
"""The random strategy samples with rejection when the catalogue holds more than this many
times the items it must avoid or pick; below that it filters the catalogue."""


class RandomStrategy:
    """Uniformly random items from a growing catalogue: the floor every recommender must beat."""

    name = Strategy.RANDOM
    version = "random-1"

    def __init__(self, catalogue: list[str] | None = None, seed: int = 0) -> None:
        self._items: list[str] = list(catalogue or [])
        self._known: set[str] = set(self._items)
        self._rng = np.random.default_rng(seed)

    def observe(self, item_id: str) -> None:
        """Add an item seen in the stream to the catalogue (from the event loop only: the one
        writer, so no lock; `recommend`, in a thread, reads a prefix of the appended list)."""
        if item_id not in self._known:
            self._known.add(item_id)
            self._items.append(item_id)

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]:
        # The catalogue only grows by appends, so its first `n` entries are a stable snapshot
        # without a copy (copying and filtering all of it per request cost 119 us against the
        # transformer's 90, `scripts/bench_worker.py` `ranking`).
        items = self._items
        n = len(items)
        out: list[ScoredSlate] = []
        for history in histories:
            seen = set(history) if exclude_seen else set()
            if n > SAMPLE_FACTOR * (len(seen) + k):
                picks = self._sample(items, n, seen, k)
            else:  # a small catalogue: filter it, exactly
                pool = [i for i in items[:n] if i not in seen]
                chosen = self._rng.choice(len(pool), size=min(k, len(pool)), replace=False)
                picks = [pool[j] for j in chosen]
            scores = self._rng.random(len(picks))
            order = np.argsort(-scores)
            out.append([(picks[j], float(scores[j])) for j in order])
        return out

    def _sample(self, items: list[str], n: int, seen: set[str], k: int) -> list[str]:
        """`k` distinct items of `items[:n]`, none in `seen`, uniformly: draws with rejection
        (at most 1 in `SAMPLE_FACTOR` draws is rejected, so a few rounds suffice)."""
        picked: dict[str, None] = {}
        while len(picked) < k:
            for i in self._rng.integers(n, size=2 * k):
                item = items[i]
                if item not in seen and item not in picked:
                    picked[item] = None
                    if len(picked) == k:
                        break
        return list(picked)


class ModelStrategy:
    """Adapts a `recloop.models.runtime` recommender (ONNX transformer or a baseline) to `Strategy`.

    Item ids the model has never seen are encoded as out-of-vocabulary (index 1), never an
    error; reserved indices and excluded (-inf) scores never reach a slate.
    """

    def __init__(self, name: Strategy | str, model_dir: Path, threads: int | None = 1) -> None:
        from recloop.models.runtime import (
            CooccurrenceRecommender,
            ModelDir,
            ModelLoadError,
            PopularRecommender,
            RecommenderRuntime,
        )

        name = Strategy(name)
        loaders = {
            Strategy.ONNX: RecommenderRuntime,
            Strategy.POPULAR: PopularRecommender,
            Strategy.COOCCURRENCE: CooccurrenceRecommender,
        }
        try:
            md = ModelDir(model_dir)
            # Load from the already validated ModelDir so the vocabulary and the model come
            # from the same card even if a new version lands in between.
            # One intra-op thread by default: with more, onnxruntime's pool threads spin-wait
            # after every run and took ~40% of a core from the event loop on 2 cores.
            self._model = (
                RecommenderRuntime.load(md, threads)
                if name is Strategy.ONNX
                else loaders[name].load(md)
            )
        except (ModelLoadError, FileNotFoundError, OSError, ValueError, KeyError) as exc:
            raise _needs_model(name, exc) from exc
        self.name = name
        self.card_version = md.version
        self.version = str(self._model.version)
        self._vocab = md.items
        self.history_length = int(getattr(self._model, "history_length", 50))
        self._max_k = int(getattr(self._model, "max_k", 10**9))

    def recommend(
        self, histories: list[list[str]], k: int, exclude_seen: bool
    ) -> list[ScoredSlate]:
        if not histories:
            return []
        length = self.history_length
        batch = np.zeros((len(histories), length), dtype=np.int64)
        for row, history in enumerate(histories):
            if history:
                ids = self._vocab.encode(history[-length:])
                batch[row, length - len(ids) :] = ids
        indices, scores = self._model.recommend(
            batch, max(1, min(k, self._max_k)), exclude_seen=exclude_seen
        )
        # One decode, one mask and one `tolist` for the whole batch: per item, numpy scalars
        # (`np.isfinite(s)`, `float(s)`) cost more than the rest of the answer.
        indices, scores = np.asarray(indices), np.asarray(scores)
        keep = ((indices > _RESERVED_MAX) & np.isfinite(scores)).tolist()
        names = np.asarray(self._vocab.decode(indices), dtype=object).reshape(indices.shape)
        return [
            [(n, s) for n, s, k in zip(row_names, row_scores, row_keep, strict=True) if k]
            for row_names, row_scores, row_keep in zip(
                names.tolist(), scores.astype(float).tolist(), keep, strict=True
            )
        ]


_RESERVED_MAX = 1
"""Vocabulary indices 0 (padding) and 1 (out-of-vocabulary) are never recommended."""


class ModelWatcher:
    """Hot reload: notices a new model version in the model directory and builds it.

    It watches `card.json` (the trainer replaces the directory or the card atomically), so a
    check is one `stat` unless the card changed. The caller swaps the strategy in one
    assignment; batches already running finish on the old version and the stream itself is
    untouched, so no event is lost or answered twice by a reload.
    """

    def __init__(
        self,
        name: Strategy,
        model_dir: Path,
        current_card_version: str | None,
        threads: int | None = 1,
    ) -> None:
        self.name = name
        self.threads = threads
        self.model_dir = model_dir
        self.card_version = current_card_version
        self._stamp = self._card_stamp()
        self.last_error: str | None = None

    def _card_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.model_dir / "card.json").stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def check(self) -> ModelStrategy | None:
        """A freshly loaded strategy if the card names a new version, else None (blocking)."""
        stamp = self._card_stamp()
        if stamp is None or stamp == self._stamp:
            return None
        try:
            strategy = ModelStrategy(self.name, self.model_dir, self.threads)
        except StrategyError as exc:
            # A half-copied directory: keep serving the current version and retry next time.
            self.last_error = str(exc)
            return None
        self._stamp = stamp
        self.last_error = None
        if strategy.card_version == self.card_version:
            return None
        self.card_version = strategy.card_version
        return strategy


def _needs_model(name: Strategy, cause: Exception) -> StrategyError:
    return StrategyError(
        f"strategy {name.value!r} needs a trained model directory: {cause} "
        "(or point --model-dir / RECLOOP_WORKER__MODEL_DIR at one)"
    )


def check_model_dir(name: Strategy, model_dir: Path) -> None:
    """Fail fast with `StrategyError` when `name` needs a model and `model_dir` has no valid card.

    Cheap (the card and the item list): lets `recloop worker` reject a bad model directory as
    bad input before it connects to Kafka.
    """
    from recloop.models.runtime import ModelDir, ModelLoadError

    if name.needs_model:
        try:
            ModelDir(model_dir)
        except ModelLoadError as exc:
            raise _needs_model(name, exc) from None


def build_strategy(name: Strategy | str, model_dir: Path, threads: int | None = 1) -> Ranker:
    """The strategy called `name`, loading its model from `model_dir` where it needs one."""
    try:
        name = Strategy(name)
    except ValueError:
        choices = ", ".join(Strategy)
        raise StrategyError(f"unknown strategy {name!r}; choose {choices}") from None
    if name is Strategy.RANDOM:
        catalogue: list[str] = []
        items = model_dir / "items.json"
        if items.is_file():
            import json

            catalogue = [i for i in json.loads(items.read_text())[2:] if i]
        return RandomStrategy(catalogue)
    return ModelStrategy(name, model_dir, threads)

"""Serving variants of an exported recommender, for measuring speed against quality.

Each variant is a copy of a model directory whose recommender is changed after export (int8
dynamic quantisation with `onnxruntime.quantization`) or served differently (onnxruntime
intra-op threads, a shorter history: the most recent items only). `scripts/bench_inference.py --variants` times each and evaluates its NDCG@10
on the validation split, so a faster variant is adopted only with its quality cost known. The
graph optimisation level is timed there too (it changes no numbers).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recloop.models.runtime.card import ModelDir


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of every MatMul's weights (activations quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


Rewrite = Callable[[Path, Path], None]


@dataclass(frozen=True, slots=True)
class Variant:
    """How a serving variant differs from the exported recommender."""

    threads: int
    """onnxruntime intra-op threads (the worker runs `worker.inference_threads`, 1)."""
    rewrite: Rewrite | None = None
    """A rewrite of the recommender file (src, dst), or None."""
    history_length: int | None = None
    """Serve only the most recent items (the card's `history_length`, which the runtime
    truncates to), or None for the trained length. Attention costs the square of it."""


VARIANTS: dict[str, Variant] = {
    "exported, 1 thread": Variant(1),
    "exported, 2 threads": Variant(2),
    "int8 dynamic, 1 thread": Variant(1, quantize_int8),
    "history 32, 1 thread": Variant(1, history_length=32),
    "history 32, 2 threads": Variant(2, history_length=32),
    "history 25, 2 threads": Variant(2, history_length=25),
}


def variant_dir(md: ModelDir, name: str, dest: Path) -> tuple[ModelDir, int]:
    """A copy of `md` in `dest` with variant `name`'s recommender; (its ModelDir, threads)."""
    variant = VARIANTS[name]
    if variant.rewrite is None and variant.history_length is None:
        return md, variant.threads
    shutil.copytree(md.path, dest, dirs_exist_ok=True)
    copy = ModelDir(dest)
    if variant.rewrite is not None:
        entry = copy.model("recommender")
        target = dest / entry.file
        variant.rewrite(md.path / entry.file, target)
        entry.sha256 = hashlib.sha256(target.read_bytes()).hexdigest()
    if variant.history_length is not None:
        copy.card.history_length = variant.history_length
    copy.card.notes = [*copy.card.notes, f"serving variant: {name}"]
    copy.card.save(dest)
    return ModelDir(dest), variant.threads

"""Serving variants of an exported recommender, for measuring speed against quality.

Each variant is a copy of a model directory whose recommender is changed after export (the
serving graph of `serving.py` rebuilt from an older tf2onnx export's weights, int8 dynamic
quantisation with `onnxruntime.quantization`, an in-graph top-k of the slate size instead of
the card's `max_k`) or served differently (onnxruntime intra-op threads, a shorter
history: the most recent items only). `scripts/bench_inference.py --variants` times each and
evaluates its NDCG@10 on the validation and test split, so a faster variant is adopted only
with its quality cost known. The graph optimisation level is timed there too (it changes no
numbers).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.models.runtime.card import ModelDir, TensorSpec

Rewrite = Callable[[Path, Path], None]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of every MatMul's weights (activations quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def top_k(k: int) -> Rewrite:
    """A rewrite that makes the graph's in-graph top-k return `k` items instead of `max_k`:
    the same first `k` items and scores, and less sorting (TopK over the whole catalogue)."""

    def rewrite(src: Path, dst: Path) -> None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(src))
        (node,) = [n for n in model.graph.node if n.op_type == "TopK"]
        (const,) = [i for i in model.graph.initializer if i.name == node.input[1]]
        const.CopyFrom(numpy_helper.from_array(np.array([k], np.int64), const.name))
        for output in model.graph.output:  # [batch, max_k] -> [batch, k]
            output.type.tensor_type.shape.dim[1].dim_value = k
        onnx.checker.check_model(model)
        onnx.save(model, str(dst))

    return rewrite


def serving_graph(src: Path, dst: Path) -> None:
    """The recommender as `serving.serving_graph` writes it (the export since it exists): a
    tf2onnx file is rebuilt from its weights, a serving graph is copied. Same numbers to float
    rounding; the runtime passes its k to the graph."""
    from recloop.models.train import serving

    if serving.is_serving_graph(src):
        shutil.copyfile(src, dst)
        return
    config = ModelDir(src.parent).card.training_config.get("recommender", {})
    serving.rebuild(src, dst, heads=int(config["heads"]))  # type: ignore[index,call-overload]


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
    max_k: int | None = None
    """The most items a call may ask for, when the rewrite changes it (`top_k`)."""


VARIANTS: dict[str, Variant] = {
    "exported, 1 thread": Variant(1),
    "exported, 2 threads": Variant(2),
    "serving graph, 1 thread": Variant(1, serving_graph),
    "serving graph, 2 threads": Variant(2, serving_graph),
    "int8 dynamic, 1 thread": Variant(1, quantize_int8),
    "history 32, 1 thread": Variant(1, history_length=32),
    "history 32, 2 threads": Variant(2, history_length=32),
    "history 25, 2 threads": Variant(2, history_length=25),
    "top-10 in graph, 1 thread": Variant(1, top_k(10), max_k=10),
    "top-10 in graph, 2 threads": Variant(2, top_k(10), max_k=10),
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
        from recloop.models.train.serving import K_INPUT, takes_k

        if takes_k(target):  # the runtime passes its k (the top-k size) to such a graph
            entry.config["k_input"] = K_INPUT
    if variant.history_length is not None:
        copy.card.history_length = variant.history_length
    if variant.max_k is not None:
        entry = copy.model("recommender")
        entry.config["max_k"] = variant.max_k
        entry.outputs = [
            TensorSpec(o.name, o.dtype, [o.shape[0], variant.max_k]) for o in entry.outputs
        ]
    copy.card.notes = [*copy.card.notes, f"serving variant: {name}"]
    copy.card.save(dest)
    return ModelDir(dest), variant.threads

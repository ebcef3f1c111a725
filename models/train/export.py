"""Keras -> ONNX with tf2onnx (the route that works with TensorFlow 2.21 / Keras 3), checked;
the recommender's serving graph is written from its weights instead (`serving.py`).

tf2onnx can write an invalid file without raising, so every file goes through
`onnx.checker.check_model` and is opened with onnxruntime before it is listed in the card.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from recloop.models.runtime.card import ModelEntry, ModelLoadError, TensorSpec
from recloop.models.runtime.session import describe
from recloop.models.train.serving import OPSET

__all__ = ["OPSET", "checked_entry", "export_keras", "export_onnx", "output_names"]


def export_keras(
    model: keras.Model,
    signature: tuple[tf.TensorSpec, ...],
    path: Path,
    architecture: str,
    config: dict[str, object] | None = None,
) -> ModelEntry:
    """Export, check and describe one model; returns its model-card entry."""
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET, output_path=str(path))
    return checked_entry(path, architecture, config)


def export_onnx(
    model: onnx.ModelProto,
    path: Path,
    architecture: str,
    config: dict[str, object] | None = None,
) -> ModelEntry:
    """Write a graph built with `onnx.helper` (the recommender's `serving.serving_graph`),
    checked and described like a tf2onnx export."""
    onnx.save(model, str(path))
    return checked_entry(path, architecture, config)


def checked_entry(
    path: Path, architecture: str, config: dict[str, object] | None = None
) -> ModelEntry:
    """Check an ONNX file and open it with onnxruntime; its model-card entry."""
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelLoadError(f"{path}: the exporter wrote an invalid ONNX file: {exc}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = describe(session)
    return ModelEntry(
        file=path.name,
        architecture=architecture,
        inputs=[TensorSpec(**i) for i in inputs],
        outputs=[TensorSpec(**o) for o in outputs],
        config=dict(config or {}),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def output_names(path: Path) -> list[str]:
    """Output names as onnxruntime reports them (never hard-code tf2onnx's naming)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [o.name for o in session.get_outputs()]

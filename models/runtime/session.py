"""onnxruntime sessions built the same way everywhere, and checked against the model card."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from recloop.models.runtime.card import ModelEntry, ModelLoadError

_ORT_TYPES = {
    "tensor(int64)": "int64",
    "tensor(float)": "float32",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """All graph optimisations; intra-op threads = cores (inter-op 1: our graphs are sequential)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def describe(session: ort.InferenceSession) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of a session as (name, dtype, shape) dicts, for the model card."""

    def spec(node: ort.NodeArg) -> dict:
        shape = [d if isinstance(d, int) else None for d in node.shape]
        return {"name": node.name, "dtype": _ORT_TYPES.get(node.type, node.type), "shape": shape}

    return [spec(n) for n in session.get_inputs()], [spec(n) for n in session.get_outputs()]


def open_session(
    directory: Path, entry: ModelEntry, threads: int | None = None
) -> ort.InferenceSession:
    """Load `entry.file` and check its inputs/outputs are the ones the card promises."""
    path = directory / entry.file
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file listed in the card is missing")
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"{path}: onnxruntime cannot load it: {exc}") from None
    inputs, outputs = describe(session)
    for kind, expected, actual in (
        ("input", entry.inputs, inputs),
        ("output", entry.outputs, outputs),
    ):
        have = {a["name"]: a for a in actual}
        for spec in expected:
            got = have.get(spec.name)
            if got is None:
                raise ModelLoadError(
                    f"{path}: card lists {kind} {spec.name!r} but the graph has {sorted(have)}"
                )
            if got["dtype"] != spec.dtype:
                raise ModelLoadError(
                    f"{path}: {kind} {spec.name!r} is {got['dtype']} in the graph, "
                    f"{spec.dtype} in the card"
                )
    return session


def as_histories(histories: np.ndarray, length: int) -> np.ndarray:
    """Validate [B, L] int64 left-padded histories and left-truncate to `length`."""
    h = np.asarray(histories)
    if h.ndim != 2:
        raise ValueError(f"histories must be 2-D [batch, length], got shape {h.shape}")
    if h.dtype != np.int64:
        h = h.astype(np.int64)
    if h.shape[1] > length:
        h = h[:, -length:]
    if h.shape[1] == 0:
        h = np.zeros((h.shape[0], 1), dtype=np.int64)
    return np.ascontiguousarray(h)

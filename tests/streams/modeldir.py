"""A tiny, deterministic model directory for worker tests, built without TensorFlow.

The "transformer" is a hand-written ONNX graph with the exact inputs, outputs and card entries
`recloop.models.train` exports (history [B, L] int64, exclude_seen [B] float -> items, scores [B, K]),
so `RecommenderRuntime` and the baselines load it through their real code paths. Its ranking
is predictable: after item `n` the best next item is `n + 1`, then `n + 2`, and so on.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from recloop.models.runtime.card import ITEMS_FILE, ModelCard, ModelEntry, TensorSpec
from recloop.models.runtime.vocab import Vocabulary

NEG = -1e9


def _graph(n_vocab: int, max_k: int) -> onnx.ModelProto:
    # transition[i, j]: score of vocabulary index j after index i; best is i+1, then i+2, ...
    transition = np.full((n_vocab, n_vocab), -1.0, dtype=np.float32)
    for i in range(n_vocab):
        for j in range(2, n_vocab):
            transition[i, j] = 1.0 / (1 + (j - i - 1) % n_vocab)
    reserved = np.zeros(n_vocab, dtype=np.float32)
    reserved[:2] = NEG
    inits = [
        numpy_helper.from_array(transition, "transition"),
        numpy_helper.from_array(reserved, "reserved"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([2**62], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([n_vocab], np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 1.0], np.float32), "onehot_values"),
        numpy_helper.from_array(np.array([NEG], np.float32), "neg"),
        numpy_helper.from_array(np.array([max_k], np.int64), "k"),
    ]
    nodes = [
        helper.make_node("Slice", ["history", "minus_one", "end", "axis1"], ["last2d"]),
        helper.make_node("Squeeze", ["last2d", "axis1"], ["last"]),
        helper.make_node("Gather", ["transition", "last"], ["logits"], axis=0),
        helper.make_node("OneHot", ["history", "depth", "onehot_values"], ["onehot"], axis=-1),
        helper.make_node("ReduceMax", ["onehot"], ["seen"], axes=[1], keepdims=0),
        helper.make_node("Unsqueeze", ["exclude_seen", "axis1"], ["flag"]),
        helper.make_node("Mul", ["seen", "flag"], ["masked"]),
        helper.make_node("Mul", ["masked", "neg"], ["penalty"]),
        helper.make_node("Add", ["logits", "penalty"], ["s1"]),
        helper.make_node("Add", ["s1", "reserved"], ["s2"]),
        helper.make_node("TopK", ["s2", "k"], ["scores", "items"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "next-item",
        [
            helper.make_tensor_value_info("history", TensorProto.INT64, [None, None]),
            helper.make_tensor_value_info("exclude_seen", TensorProto.FLOAT, [None]),
        ],
        [
            helper.make_tensor_value_info("items", TensorProto.INT64, [None, max_k]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, max_k]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model_dir(
    path: Path, version: str, n_items: int = 40, history_length: int = 20, max_k: int = 20
) -> Path:
    """Write a complete model directory (items "0".."n_items-1") atomically at `path`."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab = Vocabulary([str(i) for i in range(n_items)])
    vocab.save(tmp / ITEMS_FILE)
    n_vocab = len(vocab)
    max_k = min(max_k, n_vocab)
    onnx.save(_graph(n_vocab, max_k), str(tmp / "recommender.onnx"))
    # Popularity falls with the item number; neighbours of i are i+1, i+2, ...
    counts = np.arange(n_vocab, 0, -1, dtype=np.int64)
    counts[:2] = 0
    np.save(tmp / "popularity.npy", counts)
    neighbours = (np.arange(n_vocab)[:, None] + np.arange(1, 6)[None, :]) % n_vocab
    neighbours = np.where(neighbours < 2, 2, neighbours)
    weights = np.tile(np.linspace(1.0, 0.5, 5, dtype=np.float32), (n_vocab, 1))
    np.savez(tmp / "cooccurrence.npz", neighbours=neighbours, weights=weights)
    card = ModelCard(
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(),
        vocab_size=n_vocab,
        vocab_sha256=vocab.sha256(),
        history_length=history_length,
        models={
            "recommender": ModelEntry(
                file="recommender.onnx",
                architecture="test-next-item",
                inputs=[
                    TensorSpec("history", "int64", [None, None]),
                    TensorSpec("exclude_seen", "float32", [None]),
                ],
                outputs=[
                    TensorSpec("items", "int64", [None, max_k]),
                    TensorSpec("scores", "float32", [None, max_k]),
                ],
                config={
                    "items_output": "items",
                    "scores_output": "scores",
                    "history_input": "history",
                    "exclude_input": "exclude_seen",
                    "max_k": max_k,
                },
            )
        },
        files={"popularity": "popularity.npy", "cooccurrence": "cooccurrence.npz"},
    )
    card.save(tmp)
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path

"""The recommender's serving graph, written as ONNX directly from the trained weights.

tf2onnx turns `SASRec.last_hidden` + the in-graph top-k into ~300 small ops that onnxruntime
cannot fuse (LayerNorm as GlobalAveragePool/Mul/Add chains, a separate broadcast bias Add after
every Tensordot MatMul, head transposes and splits). This module writes the same computation
with the ops onnxruntime runs well: LayerNormalization, Gemm (MatMul + bias) on [B*L, d], one
Gemm per head for q, k and v (so no head transpose or split: the batched MatMuls run on
[B, L, head_dim] and the key transpose folds into the MatMul), and the top-k size as an input.

Two changes go beyond the op choice, and neither changes a result beyond float rounding:

- Softmax rows are clamped from below at (row max - 80) before the softmax. The additive mask
  (-1e9) makes exp() underflow into denormals, which x86 computes ~10x slower (the block-1
  Softmax took 6 ms of a 45 ms call); exp(-80) is ~1.8e-35, a normal float, and adds nothing a
  float32 sum of ones can see, so allowed positions get the same weights.
- `k` is an input with a default (an overridable initializer, default the card's `max_k`): the
  runtime asks for the k it needs. TopK over the catalogue costs ~6.6 ms at k=100 and ~1 ms at
  k=10, batch 256, 1 thread; the first k items are the same as with the default.

The graph is checked against the Keras model at export (`check_same_ranking`) and in
tests/models/test_serving_graph.py. No TensorFlow is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
NEG = -1e9  # the mask value of `layers.causal_bias`
SOFTMAX_FLOOR = -80.0  # below the row max; exp() of it is still a normal float32
K_INPUT = "k"
ITEMS_OUTPUT, SCORES_OUTPUT = "item_indices", "scores"

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class BlockWeights:
    """One `layers.TransformerBlock`: (gamma, beta) of each LayerNorm, (kernel, bias) of each
    Dense; `qkv` columns are [q | k | v], each [head 0 | head 1 | ...]."""

    ln1: Pair
    qkv: Pair
    out: Pair
    ln2: Pair
    ff1: Pair
    ff2: Pair


@dataclass(frozen=True, slots=True)
class SASRecWeights:
    items: np.ndarray  # [n_items, d]
    positions: np.ndarray  # [max_len, d], right-aligned
    blocks: list[BlockWeights]
    norm: Pair
    heads: int
    epsilon: float = 1e-6


def weights_of(core: object) -> SASRecWeights:
    """The weights of a trained `recommender.SASRec`."""
    from keras import ops

    def arr(v: object) -> np.ndarray:
        return np.asarray(ops.convert_to_numpy(v), np.float32)

    def ln(layer: object) -> Pair:
        return arr(layer.gamma), arr(layer.beta)  # type: ignore[attr-defined]

    def dense(layer: object) -> Pair:
        return arr(layer.kernel), arr(layer.bias)  # type: ignore[attr-defined]

    blocks = [
        BlockWeights(ln(b.ln1), dense(b.qkv), dense(b.out), ln(b.ln2), dense(b.ff1), dense(b.ff2))
        for b in core.blocks  # type: ignore[attr-defined]
    ]
    heads = {b.heads for b in core.blocks}  # type: ignore[attr-defined]
    if len(heads) != 1:
        raise ValueError(f"blocks disagree on the number of heads: {heads}")
    return SASRecWeights(
        arr(core.items.embeddings),  # type: ignore[attr-defined]
        arr(core.positions.table.embeddings),  # type: ignore[attr-defined]
        blocks,
        ln(core.norm),  # type: ignore[attr-defined]
        heads.pop(),
        float(core.norm.epsilon),  # type: ignore[attr-defined]
    )


def weights_from_tf2onnx(path: Path, heads: int) -> SASRecWeights:
    """The weights inside a recommender exported by tf2onnx (the export before this module),
    so an existing model directory can be given the new graph without retraining. Relies on
    tf2onnx's node order and names (Tensordot/MatMul + BiasAdd per Dense, moments/mean per
    LayerNorm); shapes are checked."""
    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = list(model.graph.node)
    dense: list[Pair] = []
    norms: list[Pair] = []
    for node in nodes:
        if node.op_type == "MatMul" and node.name.endswith("/Tensordot/MatMul"):
            prefix = node.name.removesuffix("/Tensordot/MatMul")
            kernel = init[node.input[1]]
            bias_add = [n for n in nodes if n.name == prefix + "/BiasAdd"]
            # tf2onnx drops the Add of an all-zero bias
            bias = init[bias_add[0].input[1]] if bias_add else np.zeros(kernel.shape[1], np.float32)
            dense.append((kernel, bias))
        elif node.op_type == "GlobalAveragePool" and node.name.endswith("/moments/mean"):
            prefix = node.name.removesuffix("/moments/mean")
            # x * (rsqrt(var + eps) * gamma) + (beta - mean * ...): the constant inputs of
            # `mul` and `add_1` (tf2onnx shares equal constants, so names are not enough).
            (mul,) = [n for n in nodes if n.name == prefix + "/mul"]
            (add,) = [n for n in nodes if n.name == prefix + "/add_1"]
            gamma = [init[i] for i in mul.input if i in init]
            beta = [init[i] for i in add.input if i in init]
            norms.append((gamma[0].reshape(-1), beta[0].reshape(-1)))
    (scoring,) = [
        n
        for n in nodes
        if n.op_type == "MatMul" and n.input[1] in init and "Tensordot" not in n.name
    ]
    items = np.ascontiguousarray(init[scoring.input[1]].T)
    d = items.shape[1]
    gathered = [init[n.input[0]] for n in nodes if n.op_type == "Gather" and n.input[0] in init]
    (positions,) = [g for g in gathered if g.ndim == 2 and g.shape != items.shape]
    n_blocks = len(dense) // 4
    if len(dense) != 4 * n_blocks or len(norms) != 2 * n_blocks + 1 or n_blocks == 0:
        raise ValueError(f"{path}: {len(dense)} Dense and {len(norms)} LayerNorm: not a SASRec")
    blocks = []
    for i in range(n_blocks):
        qkv, out, ff1, ff2 = dense[4 * i : 4 * i + 4]
        if qkv[0].shape != (d, 3 * d) or out[0].shape != (d, d) or ff2[0].shape[1] != d:
            raise ValueError(f"{path}: block {i} has unexpected Dense shapes")
        blocks.append(BlockWeights(norms[2 * i], qkv, out, norms[2 * i + 1], ff1, ff2))
    return SASRecWeights(items, positions, blocks, norms[-1], heads)


def is_serving_graph(path: Path) -> bool:
    """Whether a recommender file was written by `serving_graph` (it takes `k`)."""
    model = onnx.load(str(path), load_external_data=False)
    return model.producer_name == "recloop-serving"


def takes_k(path: Path) -> bool:
    """Whether a recommender file has the optional top-k size input `K_INPUT`."""
    model = onnx.load(str(path), load_external_data=False)
    return K_INPUT in {i.name for i in model.graph.input}


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value: object, name: str | None = None) -> str:
        self.count += 1
        name = name or f"const_{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const(np.array(values, np.int64))

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs: object) -> str:
        self.count += 1
        names = [f"{op_type}_{self.count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if outputs == 1 else names  # type: ignore[return-value]


def serving_graph(w: SASRecWeights, max_k: int) -> onnx.ModelProto:
    """history [B, L] int64 (left-padded), exclude_seen [B] float32, optional k [1] int64
    (default `max_k`) -> item_indices [B, k] int64, scores [B, k] float32: the numbers of
    `recommender.inference_model(core, max_k)` (to float rounding), top k instead of max_k."""
    g = _Builder()
    d = w.items.shape[1]
    max_len, heads = w.positions.shape[0], w.heads
    hd = d // heads
    f32 = np.float32
    hist = "history"
    shape = g.op("Shape", [hist])
    batch = g.op("Slice", [shape, g.ints(0), g.ints(1)])
    length = g.op("Slice", [shape, g.ints(1), g.ints(2)])
    rows_d = g.op("Concat", [batch, length, g.ints(d)], axis=0)  # [B, L, d]
    rows_hd = g.op("Concat", [batch, length, g.ints(hd)], axis=0)  # [B, L, hd]

    # Embedding, right-aligned positions, padding zeroed (SASRec.last_hidden).
    # Gathering rows of (table * sqrt(d)) is exactly gathering then scaling (one float product).
    scaled = w.items * f32(np.sqrt(d))
    x = g.op("Gather", [g.const(scaled.astype(f32), "item_table_scaled"), hist])
    start = g.op("Sub", [g.ints(max_len), length])
    x = g.op("Add", [x, g.op("Slice", [g.const(w.positions), start, g.ints(max_len), g.ints(0)])])
    real = g.op("Greater", [hist, g.const(np.int64(0))])
    x = g.op(
        "Mul", [x, g.op("Unsqueeze", [g.op("Cast", [real], to=TensorProto.FLOAT), g.ints(-1)])]
    )

    # layers.causal_bias, [B, L, L]: 0 where (j <= i and token j is real) or j == i, else NEG;
    # built as min(causal [L, L], padding [B, 1, L] + (-NEG on the diagonal)) in two passes.
    r = g.op(
        "Range", [g.const(np.int64(0)), g.op("Squeeze", [length, g.ints(0)]), g.const(np.int64(1))]
    )
    ri, rj = g.op("Unsqueeze", [r, g.ints(1)]), g.op("Unsqueeze", [r, g.ints(0)])
    zero, neg = g.const(f32(0.0)), g.const(f32(NEG))
    causal = g.op("Where", [g.op("LessOrEqual", [rj, ri]), zero, neg])
    diagonal = g.op("Where", [g.op("Equal", [rj, ri]), g.const(f32(-NEG)), zero])
    padding = g.op("Unsqueeze", [g.op("Where", [real, zero, neg]), g.ints(1)])
    bias = g.op("Min", [causal, g.op("Add", [padding, diagonal])])

    scale, floor = g.const(f32(hd**-0.5)), g.const(f32(SOFTMAX_FLOOR))

    def layer_norm(v: str, gb: Pair) -> str:
        gamma, beta = g.const(gb[0]), g.const(gb[1])
        return g.op("LayerNormalization", [v, gamma, beta], axis=-1, epsilon=w.epsilon)

    def gemm(v: str, kernel: np.ndarray, b: np.ndarray) -> str:
        return g.op("Gemm", [v, g.const(np.ascontiguousarray(kernel)), g.const(b)])

    def attention(q: str, k: str, v: str, mask: str) -> str:
        att = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])]), scale])
        att = g.op("Add", [att, mask])
        top = g.op("ReduceMax", [att], axes=[-1], keepdims=1)
        att = g.op("Max", [att, g.op("Add", [top, floor])])
        return g.op("MatMul", [g.op("Softmax", [att], axis=-1), v])

    def head(blk: BlockWeights, part: int, h: int, v: str, shape: str) -> str:
        cols = slice(part * d + h * hd, part * d + (h + 1) * hd)
        return g.op("Reshape", [gemm(v, blk.qkv[0][:, cols], blk.qkv[1][cols]), shape])

    def feed_forward(v: str, blk: BlockWeights) -> str:
        f = g.op("Relu", [gemm(layer_norm(v, blk.ln2), *blk.ff1)])
        return g.op("Add", [v, gemm(f, *blk.ff2)])

    x = g.op("Reshape", [x, g.ints(-1, d)])  # [B*L, d]
    last_row = [g.ints(-1), g.ints(2**62), g.ints(1)]
    for i, blk in enumerate(w.blocks):
        normed = layer_norm(x, blk.ln1)
        if i < len(w.blocks) - 1:  # every position
            ys = [
                attention(*(head(blk, p, h, normed, rows_hd) for p in range(3)), bias)
                for h in range(heads)
            ]
            y = g.op("Reshape", [g.op("Concat", ys, axis=-1), g.ints(-1, d)])
            x = feed_forward(g.op("Add", [x, gemm(y, *blk.out)]), blk)
        else:  # the last position only, from every position's keys and values
            last = g.op(
                "Squeeze",
                [g.op("Slice", [g.op("Reshape", [normed, rows_d]), *last_row]), g.ints(1)],
            )
            x = g.op(
                "Squeeze", [g.op("Slice", [g.op("Reshape", [x, rows_d]), *last_row]), g.ints(1)]
            )
            mask = g.op("Slice", [bias, *last_row])  # [B, 1, L]
            ys = [
                attention(
                    head(blk, 0, h, last, g.ints(-1, 1, hd)),
                    head(blk, 1, h, normed, rows_hd),
                    head(blk, 2, h, normed, rows_hd),
                    mask,
                )
                for h in range(heads)
            ]
            y = g.op("Reshape", [g.op("Concat", ys, axis=-1), g.ints(-1, d)])
            x = feed_forward(g.op("Add", [x, gemm(y, *blk.out)]), blk)
    hidden = layer_norm(x, w.norm)  # [B, d]

    # Catalogue scores; seen items (when asked) and padding/OOV (always) set to NEG.
    scores = g.op("MatMul", [hidden, g.const(np.ascontiguousarray(w.items.T))])
    current = g.op("GatherElements", [scores, hist], axis=1)
    flag = g.op("Unsqueeze", [g.op("Greater", ["exclude_seen", g.const(f32(0.5))]), g.ints(1)])
    # Padding and OOV in a history are written NEG too, so every write to a column agrees.
    drop = g.op("Or", [flag, g.op("Less", [hist, g.const(np.int64(2))])])
    updates = g.op("Where", [drop, g.const(f32(NEG)), current])
    pair = g.op("Concat", [batch, g.ints(2)], axis=0)
    reserved = g.op("Expand", [g.const(np.array([[0, 1]], np.int64)), pair])
    index = g.op("Concat", [hist, reserved], axis=1)
    updates = g.op(
        "Concat", [updates, g.op("Expand", [g.const(np.full((1, 2), NEG, f32)), pair])], axis=1
    )
    scores = g.op("ScatterElements", [scores, index, updates], axis=1)
    g.inits.append(numpy_helper.from_array(np.array([max_k], np.int64), K_INPUT))
    g.nodes.append(helper.make_node("TopK", [scores, K_INPUT], [SCORES_OUTPUT, ITEMS_OUTPUT]))

    graph = helper.make_graph(
        g.nodes,
        "recommender",
        [
            helper.make_tensor_value_info(hist, TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("exclude_seen", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info(K_INPUT, TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info(ITEMS_OUTPUT, TensorProto.INT64, ["batch", "k"]),
            helper.make_tensor_value_info(SCORES_OUTPUT, TensorProto.FLOAT, ["batch", "k"]),
        ],
        g.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recloop-serving"
    )
    model.ir_version = 8  # opset 17's IR version: loads in older onnxruntime releases too
    onnx.checker.check_model(model, full_check=True)
    return model


def rebuild(src: Path, dst: Path, heads: int) -> None:
    """Write the serving graph of a tf2onnx-exported recommender `src` to `dst`, same max_k."""
    model = onnx.load(str(src))
    (topk,) = [n for n in model.graph.node if n.op_type == "TopK"]
    (k,) = [i for i in model.graph.initializer if i.name == topk.input[1]]
    max_k = int(numpy_helper.to_array(k).reshape(-1)[0])
    onnx.save(serving_graph(weights_from_tf2onnx(src, heads), max_k), str(dst))


def check_same_ranking(
    items_a: np.ndarray,
    scores_a: np.ndarray,
    items_b: np.ndarray,
    scores_b: np.ndarray,
    atol: float = 1e-4,
) -> None:
    """Raise AssertionError unless two top-k answers agree: scores within `atol` (+1e-5
    relative), and every differing item at a rank whose score ties (within `atol`) with a
    neighbouring rank, i.e. only near-ties may swap."""
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=atol)
    gap = np.abs(np.diff(scores_a, axis=1)) <= atol
    tie = np.zeros(scores_a.shape, bool)
    tie[:, 1:] |= gap
    tie[:, :-1] |= gap
    bad = (items_a != items_b) & ~tie
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise AssertionError(
            f"{int(bad.sum())} items differ away from ties; row {row}: "
            f"{items_a[row].tolist()} vs {items_b[row].tolist()}"
        )

"""Keras layers shared by the transformer models, written with `keras.ops` so that tf2onnx turns
them into plain ONNX ops (MatMul/Softmax/LayerNormalization): no exact gelu, no masks on LSTMs."""

from __future__ import annotations

import keras
from keras import ops

NEG = -1e9  # additive mask value; finite so fully-masked rows give a uniform softmax, not NaN


class RightAlignedPositions(keras.layers.Layer):
    """Adds learnt position embeddings counted from the right end, because inputs are left-padded
    and of any length up to `max_len` (the last real item always gets the same position)."""

    def __init__(self, max_len: int, dim: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.max_len = max_len
        self.table = keras.layers.Embedding(max_len, dim, name="table")

    def call(self, x: object, offset: int = 0) -> object:
        n = ops.shape(x)[1]
        start = self.max_len - n - offset
        idx = ops.arange(0, n) + start
        return x + ops.expand_dims(self.table(idx), 0)

    def last(self, batch_like: object, count: object) -> object:
        """The embedding of the final position repeated `count` times: [1, count, d]."""
        row = self.table(ops.convert_to_tensor([self.max_len - 1]))
        return ops.expand_dims(ops.repeat(row, count, axis=0), 0)


class TransformerBlock(keras.layers.Layer):
    """Pre-LayerNorm multi-head self-attention + ReLU feed-forward, with an explicit mask."""

    def __init__(self, dim: int, heads: int, dropout: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads = dim, heads
        self.ln1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.ln2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.qkv = keras.layers.Dense(3 * dim)
        self.out = keras.layers.Dense(dim)
        self.ff1 = keras.layers.Dense(dim * 2, activation="relu")
        self.ff2 = keras.layers.Dense(dim)
        self.drop = keras.layers.Dropout(dropout)

    def call(
        self, x: object, bias: object, training: bool = False, last_only: bool = False
    ) -> object:
        """`bias` is [B or 1, Lq, Lk] additive (0 allowed, NEG blocked).

        `last_only`: only the last position's output ([B, 1, d]), computed from every
        position's keys and values: the same numbers as `call(...)[:, -1:]` for a fraction of
        the work, because the queries, the attention rows, the projection and the feed-forward
        of the other positions are skipped (what a recommender's last block needs at serving)."""
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        hd = self.dim // self.heads
        qkv = self.qkv(self.ln1(x))
        qkv = ops.reshape(qkv, (b, n, 3, self.heads, hd))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # [3, B, H, L, hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        m = n
        if last_only:
            q, bias, x, m = q[:, :, -1:, :], bias[:, -1:, :], x[:, -1:, :], 1
        att = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (hd**-0.5)
        att = ops.softmax(att + ops.expand_dims(bias, 1), axis=-1)
        att = self.drop(att, training=training)
        y = ops.transpose(ops.matmul(att, v), (0, 2, 1, 3))
        x = x + self.drop(self.out(ops.reshape(y, (b, m, self.dim))), training=training)
        return x + self.drop(self.ff2(self.ff1(self.ln2(x))), training=training)


def causal_bias(tokens: object) -> object:
    """[B, L, L] additive mask: causal, and padding keys (token 0) blocked."""
    n = ops.shape(tokens)[1]
    i = ops.expand_dims(ops.arange(0, n), 1)
    j = ops.expand_dims(ops.arange(0, n), 0)
    allowed = ops.logical_and(ops.expand_dims(j <= i, 0), ops.expand_dims(tokens > 0, 1))
    # A position always sees itself, so a fully padded prefix still has a defined output.
    allowed = ops.logical_or(allowed, ops.expand_dims(i == j, 0))
    return ops.where(allowed, 0.0, NEG)

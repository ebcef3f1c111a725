"""SASRec-style causal transformer next-item recommender, trained with full softmax."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from recloop.models.data.preprocess import cooccurring_pairs
from recloop.models.runtime.vocab import OOV
from recloop.models.train.config import RecommenderConfig
from recloop.models.train.layers import NEG, RightAlignedPositions, TransformerBlock, causal_bias
from recloop.models.train.loop import run_epochs


class SASRec(keras.Model):
    """Item sequence -> hidden state per position; scores are dot products with item embeddings."""

    def __init__(
        self, n_items: int, max_len: int, cfg: RecommenderConfig, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.n_items, self.max_len, self.dim = n_items, max_len, cfg.dim
        self.items = keras.layers.Embedding(n_items, cfg.dim, name="item_embedding")
        self.positions = RightAlignedPositions(max_len, cfg.dim, name="positions")
        self.blocks = [TransformerBlock(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.blocks)]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.drop = keras.layers.Dropout(cfg.dropout)

    def call(self, seq: object, training: bool = False) -> object:
        x = self.items(seq) * math.sqrt(self.dim)
        x = self.positions(x)
        x = self.drop(x * ops.expand_dims(ops.cast(seq > 0, "float32"), -1), training=training)
        bias = causal_bias(seq)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return self.norm(x)

    def last_hidden(self, seq: object) -> object:
        """The final hidden state of the last position, [B, d]: `call(seq)[:, -1, :]` with the
        last block computed for that position only (serving needs nothing else)."""
        x = self.items(seq) * math.sqrt(self.dim)
        x = self.positions(x)
        x = x * ops.expand_dims(ops.cast(seq > 0, "float32"), -1)
        bias = causal_bias(seq)
        for block in self.blocks[:-1]:
            x = block(x, bias)
        x = self.blocks[-1](x, bias, last_only=True)
        return self.norm(x)[:, -1, :]

    def item_table(self) -> object:
        return self.items.embeddings


class TopK(keras.layers.Layer):
    """Last position -> catalogue scores -> optional seen-item exclusion -> top k, all in-graph."""

    def __init__(self, core: SASRec, max_k: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.core, self.max_k = core, max_k

    def call(self, history: object, exclude: object) -> tuple[object, object]:
        h = self.core.last_hidden(history)
        scores = ops.matmul(h, ops.transpose(self.core.item_table()))
        b, n = ops.shape(history)[0], ops.shape(history)[1]
        # Seen items: scatter NEG into their columns (duplicates write the same value).
        rows = ops.repeat(ops.expand_dims(ops.arange(0, b), 1), n, axis=1)
        idx = ops.stack([ops.cast(rows, "int64"), history], axis=-1)
        idx = ops.reshape(idx, (-1, 2))
        current = tf.gather_nd(scores, idx)
        flag = ops.reshape(ops.repeat(ops.expand_dims(exclude, 1), n, axis=1), (-1,))
        scores = tf.tensor_scatter_nd_update(scores, idx, ops.where(flag > 0.5, NEG, current))
        # Padding and out-of-vocabulary are never recommended.
        scores = ops.concatenate(
            [ops.full((b, OOV + 1), NEG, dtype="float32"), scores[:, OOV + 1 :]], axis=1
        )
        values, indices = ops.top_k(scores, self.max_k)
        return ops.cast(indices, "int64"), values


def inference_model(core: SASRec, max_k: int) -> keras.Model:
    """Functional wrapper with named inputs/outputs, for export."""
    history = keras.Input((None,), dtype="int64", name="history")
    exclude = keras.Input((), dtype="float32", name="exclude_seen")
    indices, values = TopK(core, max_k, name="topk")(history, exclude)
    indices = keras.layers.Identity(name="item_indices")(indices)
    values = keras.layers.Identity(name="scores")(values)
    return keras.Model([history, exclude], [indices, values], name="recommender")


def check_serving_graph(
    reference: keras.Model, path: Path, sequences: list[np.ndarray], max_len: int
) -> None:
    """Raise unless the exported serving graph at `path` (`serving.serving_graph`) ranks like
    the Keras `inference_model` on these users' histories (plus an empty one), with and without
    seen-item exclusion: scores equal to float tolerance, items equal except near-ties."""
    import onnxruntime as ort

    from recloop.models.data.preprocess import left_pad
    from recloop.models.train.serving import ITEMS_OUTPUT, SCORES_OUTPUT, check_same_ranking

    histories = np.concatenate([left_pad(sequences, max_len), np.zeros((1, max_len), np.int64)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for flag in (1.0, 0.0):
        exclude = np.full(len(histories), flag, np.float32)
        want_items, want_scores = (ops.convert_to_numpy(t) for t in reference([histories, exclude]))
        items, scores = session.run(
            [ITEMS_OUTPUT, SCORES_OUTPUT], {"history": histories, "exclude_seen": exclude}
        )
        try:
            check_same_ranking(want_items, want_scores, items, scores)
        except AssertionError as exc:
            raise RuntimeError(
                f"{path}: serving graph differs from the Keras model: {exc}"
            ) from None


def signature() -> tuple[tf.TensorSpec, ...]:
    return (
        tf.TensorSpec([None, None], tf.int64, name="history"),
        tf.TensorSpec([None], tf.float32, name="exclude_seen"),
    )


def training_windows(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """Cut each sequence into left-padded windows of max_len+1 (input = [:-1], target = [1:]),
    from the end backwards so the most recent items always have full context."""
    windows: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        end = len(seq)
        while end > 1:
            start = max(0, end - (max_len + 1))
            w = np.zeros(max_len + 1, np.int64)
            w[max_len + 1 - (end - start) :] = seq[start:end]
            windows.append(w)
            end = start + 1 if start > 0 else 0
            if end - 1 < 2:
                break
    if not windows:
        raise ValueError("no training sequences with at least two items")
    return np.stack(windows)


def ppmi_embeddings(
    sequences: list[np.ndarray], n_items: int, dim: int, seed: int, window: int = 5
) -> np.ndarray:
    """Item vectors from a truncated SVD of the positive-PMI co-occurrence matrix.

    Used to initialise the item embedding: a small data set (MovieLens-small has ~90k events)
    does not give full-softmax training enough updates per item to find this geometry alone.
    """
    from scipy import sparse
    from sklearn.utils.extmath import randomized_svd

    a, b = cooccurring_pairs(sequences, window)
    counts = sparse.coo_matrix(
        (np.ones(len(a)), (a, b)),
        shape=(n_items, n_items),
    ).tocsr()
    counts.sum_duplicates()
    row = np.asarray(counts.sum(axis=1)).ravel()
    total = row.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (row[coo.row] * row[coo.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)
    # A catalogue smaller than the embedding has fewer singular vectors than `dim`: the SVD
    # fills the first `rank` columns and the rest start random at the same scale.
    rank = min(dim, n_items - 2)
    vectors = np.random.default_rng(seed).normal(0.0, 0.05, (n_items, dim))
    if rank > 0:
        u, sv, _ = randomized_svd(ppmi, rank, random_state=seed)
        svd = u * np.sqrt(sv)
        # Match the scale of Keras' default embedding init so training dynamics are unchanged.
        vectors[:, :rank] = svd * 0.05 / max(float(svd[2:].std()), 1e-8)
    vectors[:2] = 0.0
    return vectors.astype(np.float32)


@dataclass(slots=True)
class TrainedRecommender:
    model: SASRec
    seconds: float
    losses: list[float]


def train_recommender(
    sequences: list[np.ndarray],
    n_items: int,
    max_len: int,
    cfg: RecommenderConfig,
    seed: int,
    on_epoch: Callable[[int, SASRec], None] | None = None,
) -> TrainedRecommender:
    """Train on every next-item position of every window (SASRec objective, full softmax)."""
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    data = training_windows(sequences, max_len)
    model = SASRec(n_items, max_len, cfg)
    model(ops.zeros((1, max_len), dtype="int64"))
    if cfg.init_from_cooccurrence:
        model.items.embeddings.assign(ppmi_embeddings(sequences, n_items, cfg.dim, seed))
    lr: object = cfg.learning_rate
    if cfg.cosine_decay:
        steps = cfg.epochs * math.ceil(len(data) / cfg.batch_size)
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.0)
    optimizer = keras.optimizers.Adam(lr)

    @tf.function(reduce_retracing=True)
    def step(batch: tf.Tensor) -> tf.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]
        weight = tf.cast(y > 0, tf.float32)
        with tf.GradientTape() as tape:
            h = model(x, training=True)
            logits = tf.matmul(h, model.item_table(), transpose_b=True)
            if cfg.mask_seen_in_loss:
                # Items already in the prefix are excluded at serving time, so they should not
                # compete for probability mass in training either (the target never is masked).
                seen = tf.cumsum(tf.one_hot(x, n_items), axis=1) > 0
                seen = tf.logical_and(seen, tf.one_hot(y, n_items) < 0.5)
                logits = tf.where(seen, tf.cast(NEG, logits.dtype), logits)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(loss * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    losses = run_epochs(
        len(data),
        cfg.epochs,
        cfg.batch_size,
        seed,
        lambda b: float(step(tf.constant(data[b]))),
        None if on_epoch is None else lambda epoch: on_epoch(epoch, model),
    )
    return TrainedRecommender(model, time.perf_counter() - started, losses)

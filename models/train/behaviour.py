"""Behaviour models: the seed's Embedding + LSTM + sigmoid heads, and a behaviour LM.

Both map (history, slate) to click / buy-after-click / leave logits. The LM is a decoder-only
transformer over (item, action) tokens: history tokens attend causally; each slate item is
appended as a QUERY token that sees the whole history and itself but no other slate item, so one
pass scores a slate exactly as if each item were the next token. Its tied output layer gives the
next-item distribution used to generate sessions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from recloop.models.data.examples import BehaviourExamples, PopularityRates
from recloop.models.runtime.behaviour import ACTION_QUERY, N_ACTIONS
from recloop.models.train.config import BehaviourConfig
from recloop.models.train.layers import NEG, RightAlignedPositions, TransformerBlock
from recloop.models.train.loop import run_epochs
from recloop.models.train.recommender import ppmi_embeddings


class Heads(keras.layers.Layer):
    """Candidate features -> click/buy logits; user state + slate summary -> leave logit."""

    def __init__(self, dim: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(dim, activation="relu")
        self.item_out = keras.layers.Dense(2)
        self.leave_hidden = keras.layers.Dense(dim // 2, activation="relu")
        self.leave_out = keras.layers.Dense(1)

    def call(self, features: object, user: object) -> tuple[object, object, object]:
        logits = self.item_out(self.hidden(features))
        click, buy = logits[..., 0], logits[..., 1]
        summary = ops.concatenate(
            [user, ops.max(click, axis=1, keepdims=True), ops.mean(click, axis=1, keepdims=True)],
            axis=-1,
        )
        leave = self.leave_out(self.leave_hidden(summary))[:, 0]
        return click, buy, leave


class LSTMBehaviour(keras.Model):
    """Embedding + unmasked LSTM over the left-padded history (a masked LSTM exports as a slow
    ONNX Loop); each slate item is embedded with its slot and scored against the LSTM state."""

    def __init__(self, n_items: int, cfg: BehaviourConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.items = keras.layers.Embedding(n_items, cfg.dim)
        self.slots = keras.layers.Embedding(cfg.max_slate, cfg.dim)
        self.lstm = keras.layers.LSTM(cfg.dim, return_sequences=True)
        self.user = keras.layers.Dense(cfg.dim)
        self.heads = Heads(cfg.dim * 2)
        self.item_bias = keras.layers.Embedding(n_items, 1)

    def call(self, history: object, actions: object, slate: object, training: bool = False):
        # All states are returned so training can add the next-item loss (as for the LM): on
        # logs with sampled impressions it is what teaches the item embeddings quickly.
        hidden = self.user(self.lstm(self.items(history)))
        u = hidden[:, -1]
        s = ops.shape(slate)[1]
        c = self.items(slate) + ops.expand_dims(self.slots(ops.arange(0, s)), 0)
        ue = ops.repeat(ops.expand_dims(u, 1), s, axis=1)
        click, buy, leave = self.heads(ops.concatenate([ue, c, ue * c], axis=-1), u)
        return click + self.item_bias(slate)[..., 0], buy, leave, hidden

    def next_item_logits(self, hidden: object) -> object:
        return ops.matmul(hidden, ops.transpose(self.items.embeddings))


class BehaviourLM(keras.Model):
    """Decoder-only transformer over (item, action) tokens with slate QUERY tokens."""

    def __init__(self, n_items: int, max_len: int, cfg: BehaviourConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.dim = cfg.dim
        self.items = keras.layers.Embedding(n_items, cfg.dim)
        self.actions = keras.layers.Embedding(N_ACTIONS, cfg.dim)
        self.slots = keras.layers.Embedding(cfg.max_slate, cfg.dim)
        self.positions = RightAlignedPositions(max_len + 1, cfg.dim)
        self.max_len = max_len
        self.blocks = [TransformerBlock(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.blocks)]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.heads = Heads(cfg.dim * 2)
        self.item_bias = keras.layers.Embedding(n_items, 1)

    def call(self, history: object, actions: object, slate: object, training: bool = False):
        n, s = ops.shape(history)[1], ops.shape(slate)[1]
        scale = math.sqrt(self.dim)
        prefix = self.positions(self.items(history) * scale + self.actions(actions), offset=1)
        last_pos = self.positions.table(ops.convert_to_tensor([self.max_len]))
        query = (
            self.items(slate) * scale
            + self.actions(ops.full(ops.shape(slate), ACTION_QUERY, dtype="int64"))
            + ops.expand_dims(self.slots(ops.arange(0, s)), 0)
            + ops.expand_dims(last_pos, 0)
        )
        x = ops.concatenate([prefix, query], axis=1)
        t = n + s
        q = ops.expand_dims(ops.arange(0, t), 1)
        k = ops.expand_dims(ops.arange(0, t), 0)
        key_ok = ops.concatenate([history > 0, ops.ones(ops.shape(slate), dtype="bool")], axis=1)
        allowed = ops.logical_and(
            ops.expand_dims(ops.logical_and(k <= q, k < n), 0), ops.expand_dims(key_ok, 1)
        )
        allowed = ops.logical_or(allowed, ops.expand_dims(q == k, 0))
        bias = ops.where(allowed, 0.0, NEG)
        for block in self.blocks:
            x = block(x, bias, training=training)
        x = self.norm(x)
        hidden, cand = x[:, :n], x[:, n:]
        user = hidden[:, -1]
        click, buy, leave = self.heads(
            ops.concatenate([cand, ops.repeat(ops.expand_dims(user, 1), s, axis=1)], axis=-1), user
        )
        return click + self.item_bias(slate)[..., 0], buy, leave, hidden

    def next_item_logits(self, hidden: object) -> object:
        return ops.matmul(hidden, ops.transpose(self.items.embeddings))


def inference_model(core: keras.Model, kind: str) -> keras.Model:
    """Functional wrapper with sigmoid outputs (and next-item logits for the LM), for export."""
    history = keras.Input((None,), dtype="int64", name="history")
    slate = keras.Input((None,), dtype="int64", name="slate")
    inputs = [history, slate]
    if kind == "lm":
        actions = keras.Input((None,), dtype="int64", name="history_actions")
        inputs.append(actions)
    else:
        actions = history

    class Head(keras.layers.Layer):
        def call(self, h: object, a: object, s: object):
            click, buy, leave, hidden = core(h, a, s)
            out = [ops.sigmoid(click), ops.sigmoid(buy), ops.sigmoid(leave)]
            if kind == "lm":
                out.append(core.next_item_logits(hidden[:, -1]))
            return tuple(out)

    outs = Head(name=f"{kind}_head")(history, actions, slate)
    names = ["p_click", "p_buy", "p_leave", "next_item_logits"]
    named = [keras.layers.Identity(name=n)(o) for n, o in zip(names, outs, strict=False)]
    return keras.Model(inputs, named, name=f"behaviour_{kind}")


def signature(kind: str) -> tuple[tf.TensorSpec, ...]:
    sig = [
        tf.TensorSpec([None, None], tf.int64, name="history"),
        tf.TensorSpec([None, None], tf.int64, name="slate"),
    ]
    if kind == "lm":
        sig.append(tf.TensorSpec([None, None], tf.int64, name="history_actions"))
    return tuple(sig)


def item_click_bias(data: BehaviourExamples, n_items: int) -> np.ndarray:
    """Each item's click log-odds on the training slates relative to all items': the
    popularity-only model (`PopularityRates`), as the starting point of a per-item bias.
    Without it a few epochs leave both models below popularity alone on logs where popularity
    explains most clicks (sampled impressions)."""
    rates = PopularityRates.fit(data, n_items)
    mean = float(data.click.mean())
    bias = np.log(rates.click / (1 - rates.click)) - np.log(mean / (1 - mean))
    return bias.astype(np.float32)


def _log_odds(rate: float) -> float:
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    return math.log(rate / (1 - rate))


def start_at_base_rates(heads: Heads, data: BehaviourExamples) -> None:
    """Start the buy and leave heads at the training slates' buy-given-click and leave rates.
    From zero (p = 0.5) a few epochs did not bring a rare buy rate down far enough: users
    simulated on a Taobao-layout log bought 1.24 % of the items they viewed against the log's
    1.61 %."""
    clicked = data.click > 0
    buy = float(data.buy[clicked].mean()) if clicked.any() else 0.5
    item_bias = heads.item_out.bias.numpy()
    item_bias[1] = _log_odds(buy)
    heads.item_out.bias.assign(item_bias)
    heads.leave_out.bias.assign(np.full(1, _log_odds(float(data.leave.mean())), np.float32))


@dataclass(slots=True)
class TrainedBehaviour:
    model: keras.Model
    seconds: float
    losses: list[float]


def train_behaviour(
    data: BehaviourExamples,
    n_items: int,
    max_len: int,
    cfg: BehaviourConfig,
    kind: str,
    seed: int,
    sequences: list[np.ndarray] | None = None,
) -> TrainedBehaviour:
    """Binary cross-entropy on click, buy (only where clicked) and leave, plus (both kinds) a
    next-item loss over the most recent history positions. With `sequences` (the users'
    training item sequences) and `cfg.init_from_cooccurrence`, item embeddings start from
    their PPMI co-occurrence SVD: the user-item signal a few epochs on sampled impressions do
    not find alone (without it the models were little more than item popularity)."""
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    model: keras.Model = (
        LSTMBehaviour(n_items, cfg) if kind == "lstm" else BehaviourLM(n_items, max_len, cfg)
    )
    model(data.history[:1], data.actions[:1], data.slate[:1])
    model.item_bias.embeddings.assign(item_click_bias(data, n_items)[:, None])
    if sequences is not None and cfg.init_from_cooccurrence:
        model.items.embeddings.assign(ppmi_embeddings(sequences, n_items, cfg.dim, seed))
    start_at_base_rates(model.heads, data)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    bce = tf.nn.sigmoid_cross_entropy_with_logits

    @tf.function(reduce_retracing=True)
    def step(h, a, s, click, buy, leave):
        with tf.GradientTape() as tape:
            c_logit, b_logit, l_logit, hidden = model(h, a, s, training=True)
            loss = tf.reduce_mean(bce(labels=click, logits=c_logit))
            loss += tf.reduce_sum(bce(labels=buy, logits=b_logit) * click) / tf.maximum(
                tf.reduce_sum(click), 1.0
            )
            loss += tf.reduce_mean(bce(labels=leave, logits=l_logit))
            if cfg.lm_weight > 0:
                # Next-item loss on the last positions only: a full-sequence softmax over the
                # catalogue costs more than everything else and adds little signal.
                tail = cfg.lm_positions
                target = h[:, -tail:]
                weight = tf.cast(target > 0, tf.float32)
                logits = model.next_item_logits(hidden[:, -tail - 1 : -1])
                lm = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
                loss += (
                    cfg.lm_weight
                    * tf.reduce_sum(lm * weight)
                    / tf.maximum(tf.reduce_sum(weight), 1.0)
                )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    def batch_step(b: np.ndarray) -> float:
        return float(
            step(
                tf.constant(data.history[b]),
                tf.constant(data.actions[b]),
                tf.constant(data.slate[b]),
                tf.constant(data.click[b]),
                tf.constant(data.buy[b]),
                tf.constant(data.leave[b]),
            )
        )

    losses = run_epochs(len(data), cfg.epochs, cfg.batch_size, seed, batch_step)
    return TrainedBehaviour(model, time.perf_counter() - started, losses)

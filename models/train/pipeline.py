"""`train_all`: one log in, one model directory out (ONNX files, vocabularies, baselines, card)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.models.data.examples import (
    BehaviourExamples,
    PopularityRates,
    behaviour_examples,
)
from recloop.models.data.preprocess import (
    build_vocabulary,
    cooccurring_pairs,
    deduplicate,
    k_core,
    leave_last_out,
    left_pad,
    sessionise,
    user_sequences,
)
from recloop.models.data.schema import EventLog
from recloop.models.data.stats import UserStats, user_stats
from recloop.models.evaluate import HeldOut
from recloop.models.runtime.card import ITEMS_FILE, ModelCard, ModelDir
from recloop.models.runtime.vocab import Vocabulary
from recloop.models.train import import_tensorflow_quietly
from recloop.models.train.config import TrainConfig


@dataclass(slots=True)
class Prepared:
    """The preprocessed log and everything derived from it that training and evaluation share."""

    log: EventLog
    vocab: Vocabulary
    held: HeldOut
    behaviour_train: BehaviourExamples


def prepare(data: EventLog, config: TrainConfig) -> Prepared:
    """Deterministic preprocessing: dedup, k-core, sessions, vocabulary, chronological splits."""
    log = sessionise(
        k_core(deduplicate(data), config.min_user_events, config.min_item_events),
        config.session_gap_seconds,
    )
    vocab = build_vocabulary(log.item)
    seqs = user_sequences(log, vocab)
    split = leave_last_out(seqs)
    b = config.behaviour
    examples = behaviour_examples(
        data, log, vocab, config.history_length, b.slate_size, config.seed, b.max_examples
    )
    train, test = examples.split_by_time(0.2)
    if len(train) > b.max_examples:
        train = train.take(np.arange(len(train) - b.max_examples, len(train)))
    stats = user_stats(seqs).matrix()
    return Prepared(log, vocab, HeldOut(split, test, seqs, stats), train)


def _cooccurrence(sequences: list[np.ndarray], n_items: int, window: int = 5, top: int = 50):
    """Top co-occurring neighbours per item within `window` positions, cosine-normalised."""
    a, b = cooccurring_pairs(sequences, window)
    keys, counts = np.unique(a * n_items + b, return_counts=True)
    i, j = keys // n_items, keys % n_items
    freq = np.bincount(np.concatenate(sequences), minlength=n_items).astype(np.float64)
    w = counts / np.sqrt(np.maximum(freq[i] * freq[j], 1.0))
    neighbours = np.zeros((n_items, top), np.int64)
    weights = np.zeros((n_items, top), np.float32)
    order = np.lexsort((-w, i))
    i, j, w = i[order], j[order], w[order]
    starts = np.searchsorted(i, np.arange(n_items))
    ends = np.searchsorted(i, np.arange(n_items), side="right")
    for item in range(n_items):
        s, e = starts[item], min(ends[item], starts[item] + top)
        neighbours[item, : e - s] = j[s:e]
        weights[item, : e - s] = w[s:e]
    return neighbours, weights


def train_all(
    data: EventLog,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    keep: dict[str, object] | None = None,
) -> ModelCard:
    """Train recommender, both behaviour models and the user generator; export; evaluate.

    The directory is built beside `out_dir` and renamed into place, so a reader never sees a
    half-written model directory. `keep`, if given, receives the Keras inference models by
    role (for parity tests).
    """
    keep = {} if keep is None else keep
    import_tensorflow_quietly()  # before the modules below import keras and tensorflow
    from recloop.models.evaluate import evaluate_all
    from recloop.models.train import behaviour as beh
    from recloop.models.train import generator as gen
    from recloop.models.train import recommender as rec
    from recloop.models.train import serving
    from recloop.models.train.export import export_keras, export_onnx

    config = config or TrainConfig()
    out = Path(out_dir)
    started = time.perf_counter()
    prep = prepare(data, config)
    version = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + data.fingerprint()[:8]
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab, split, n_items, max_len = (
        prep.vocab,
        prep.held.split,
        len(prep.vocab),
        config.history_length,
    )
    vocab.save(tmp / ITEMS_FILE)
    seconds: dict[str, float] = {"preprocess": time.perf_counter() - started}

    counts = np.bincount(np.concatenate(split.train), minlength=n_items)
    np.save(tmp / "popularity.npy", counts)
    neighbours, weights = _cooccurrence(split.train, n_items)
    np.savez(tmp / "cooccurrence.npz", neighbours=neighbours, weights=weights)

    trained = rec.train_recommender(split.train, n_items, max_len, config.recommender, config.seed)
    seconds["recommender"] = trained.seconds
    # A catalogue smaller than max_k (a small log after the k-core filter) caps the top-k.
    max_k = min(config.recommender.max_k, n_items)
    keep["recommender"] = rec.inference_model(trained.model, max_k)
    # The serving graph is written from the weights (serving.py: ~2x faster than tf2onnx's
    # graph of `keep["recommender"]`) and checked against that Keras model on real histories.
    graph = serving.serving_graph(serving.weights_of(trained.model), max_k)
    entry = export_onnx(graph, tmp / "recommender.onnx", "sasrec-causal-transformer")
    rec.check_serving_graph(
        keep["recommender"], tmp / "recommender.onnx", split.train[-512:], max_len
    )
    entry.config.update(
        items_output=serving.ITEMS_OUTPUT,
        scores_output=serving.SCORES_OUTPUT,
        history_input="history",
        exclude_input="exclude_seen",
        k_input=serving.K_INPUT,
        max_k=max_k,
        final_loss=trained.losses[-1],
    )
    models = {"recommender": entry}
    item_embeddings = np.asarray(trained.model.item_table())
    np.save(tmp / "item_embeddings.npy", item_embeddings)

    PopularityRates.fit(prep.behaviour_train, n_items).save(tmp / "behaviour_popularity.npz")
    for kind in ("lstm", "lm"):
        tb = beh.train_behaviour(
            prep.behaviour_train,
            n_items,
            max_len,
            config.behaviour,
            kind,
            config.seed,
            sequences=split.train,
        )
        seconds[f"behaviour_{kind}"] = tb.seconds
        keep[f"behaviour_{kind}"] = beh.inference_model(tb.model, kind)
        e = export_keras(
            keep[f"behaviour_{kind}"],
            beh.signature(kind),  # type: ignore[arg-type]
            tmp / f"behaviour_{kind}.onnx",
            "embedding-lstm-sigmoid" if kind == "lstm" else "decoder-transformer-item-action-lm",
        )
        e.config.update({f"{o.name}_output": o.name for o in e.outputs})
        e.config.update(
            history_length=max_len, max_slate=config.behaviour.max_slate, final_loss=tb.losses[-1]
        )
        models[f"behaviour_{kind}"] = e

    t = time.perf_counter()
    histories = left_pad(split.test_histories(), max_len)
    hidden = np.concatenate(
        [
            np.asarray(trained.model(histories[i : i + 256]))[:, -1]
            for i in range(0, len(histories), 256)
        ]
    )
    stats = prep.held.real_stats
    user_index = {u: i for i, u in enumerate(prep.held.sequences.users)}
    rows = [user_index[u] for u in split.users]
    fitted = gen.fit_generator(hidden, UserStats(*stats[rows].T), config.generator, config.seed)
    np.savez(
        tmp / "generator.npz",
        weights=fitted.weights,
        low=fitted.low,
        high=fitted.high,
        history_temperature=np.float64(config.generator.history_temperature),
    )
    keep["generator"] = fitted.model
    models["generator"] = export_keras(
        fitted.model,
        gen.signature(fitted.features.shape[1]),
        tmp / "generator.onnx",
        "gaussian-mixture-user-features",
        {
            "components": len(fitted.weights),
            "features": [
                "preference",
                "log_sessions_per_day",
                "log_session_length",
                "log_inter_arrival_seconds",
                "log_patience_seconds",
            ],
        },
    )
    seconds["generator"] = time.perf_counter() - t

    notes = [
        "Recommender trained on each user's sequence minus the last two items; metrics are on "
        "the last item (leave-last-out), history = everything before it.",
    ]
    if prep.behaviour_train.sampled_impressions:
        notes.append(
            "The log has no exposures: behaviour models were trained on SAMPLED IMPRESSIONS "
            f"(the real item plus {config.behaviour.slate_size - 1} negatives per slate, drawn "
            "by popularity^0.75 over the interactions up to its time); one example per "
            "interaction (a run of events on one item in a session); 'buy' = the run holds a "
            "purchase or a rating >= 4; 'leave' = last interaction of a session."
        )
    card = ModelCard(
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(),
        data_source=data.source,
        data_fingerprint=data.fingerprint(),
        vocab_size=n_items,
        vocab_sha256=vocab.sha256(),
        history_length=max_len,
        embedding_dim=int(item_embeddings.shape[1]),
        models=models,
        files={
            "popularity": "popularity.npy",
            "cooccurrence": "cooccurrence.npz",
            "item_embeddings": "item_embeddings.npy",
            "generator": "generator.npz",
            "behaviour_popularity": "behaviour_popularity.npz",
        },
        training_config=config.to_dict(),
        training_seconds=seconds,
        notes=notes,
    )
    card.save(tmp)
    t = time.perf_counter()
    card.metrics = evaluate_all(ModelDir(tmp), prep.held)
    seconds["evaluate"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    card.save(tmp)
    (tmp / "metrics.json").write_text(json.dumps(card.metrics, indent=2))
    _replace_dir(tmp, out)
    return card


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing any previous directory with two renames."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)

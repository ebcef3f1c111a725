"""Benchmark onnxruntime inference of the recommender (and behaviour models) from a model dir,
each recommender variant with its NDCG@10 beside its speed.

    .venv/bin/python scripts/bench_inference.py --model-dir DIR --batch 256 [--variants]

Uses real-looking inputs (random catalogue items, full history length) and reports the median
and p95 latency per call over the whole catalogue. With `--variants`, every recommender
variant (`recloop.models.train.optimise`: threads, the serving graph rebuilt from an older
tf2onnx export, int8 dynamic quantisation) is timed the same way and evaluated on the validation and test split of the
model's training data (`--data`, default the card's), and the graph optimisation levels are
timed (they change no numbers). No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from recloop.models.runtime import (
    BehaviourRuntime,
    CooccurrenceRecommender,
    ModelDir,
    PopularRecommender,
    RecommenderRuntime,
)
from recloop.models.train.optimise import VARIANTS, variant_dir


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and p95 milliseconds of `repeats` calls, after one warm-up call."""
    fn()  # warm-up: first call allocates and plans kernels
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
    }


def ndcg(rec: RecommenderRuntime, split: Any, length: int) -> dict[str, float]:
    """NDCG@10 on the validation (history = train, target = second to last item) and the test
    split (history + that item, target = last item), through the runtime itself."""
    from recloop.models.data.preprocess import left_pad
    from recloop.models.metrics import ranking_metrics

    def at10(histories: list[np.ndarray], targets: np.ndarray) -> float:
        h = left_pad(histories, length)
        tops = [rec.recommend(h[i : i + 256], 10)[0] for i in range(0, len(h), 256)]
        return ranking_metrics(np.concatenate(tops), targets)["ndcg@10"]

    return {
        "ndcg10_valid": at10(split.train, split.valid_target),
        "ndcg10_test": at10(split.test_histories(), split.test_target),
    }


def held_out(md: ModelDir, data: str | None) -> Any:
    """The leave-last-out split of the model's training data (same preprocessing as training)."""
    from recloop.models.data.loaders import load
    from recloop.models.data.preprocess import (
        build_vocabulary,
        deduplicate,
        k_core,
        leave_last_out,
        sessionise,
        user_sequences,
    )

    cfg = md.card.training_config
    log = sessionise(
        k_core(
            deduplicate(load(data or md.card.data_source)),
            int(cfg.get("min_user_events", 5)),  # type: ignore[arg-type]
            int(cfg.get("min_item_events", 5)),  # type: ignore[arg-type]
        ),
        float(cfg.get("session_gap_seconds", 1800.0)),  # type: ignore[arg-type]
    )
    vocab = build_vocabulary(log.item)
    if vocab.sha256() != md.card.vocab_sha256:
        raise SystemExit("--data gives another vocabulary than the model's")
    return leave_last_out(user_sequences(log, vocab))


def run(
    model_dir: Path,
    batch: int = 256,
    repeats: int = 50,
    variants: bool = True,
    data: str | None = None,
    k: int = 10,
) -> dict[str, Any]:
    """Every runtime timed at `batch`; with `variants`, each recommender variant with NDCG@10."""
    md = ModelDir(model_dir)
    rng = np.random.default_rng(0)
    n_items, length = md.card.vocab_size, md.card.history_length
    hist = rng.integers(2, n_items, (batch, length)).astype(np.int64)
    slates = rng.integers(2, n_items, (batch, 10)).astype(np.int64)
    print(f"model {md.version}: {n_items} items, history {length}, batch {batch}, {repeats} calls")
    rec = RecommenderRuntime.load(md)
    pop, cooc = PopularRecommender.load(md), CooccurrenceRecommender.load(md)
    lstm, lm = BehaviourRuntime.load(md, "lstm"), BehaviourRuntime.load(md, "lm")
    calls = {
        "transformer recommend": lambda: rec.recommend(hist, k),
        "popular recommend": lambda: pop.recommend(hist, k),
        "cooccurrence recommend": lambda: cooc.recommend(hist, k),
        "behaviour lstm react": lambda: lstm.react(hist, slates),
        "behaviour lm react": lambda: lm.react(hist, slates),
    }
    out: dict[str, Any] = {
        "model_version": md.version,
        "items": n_items,
        "history_length": length,
        "batch": batch,
        "runtimes": {},
    }
    for name, fn in calls.items():
        out["runtimes"][name] = timed(fn, repeats)
        print(f"{name:24s} median {out['runtimes'][name]['median_ms']:7.2f} ms", flush=True)
    if variants:
        split = held_out(md, data)
        work = benchlib.tmpdir("bench-variants-")
        out["variants"] = {}
        for name in VARIANTS:
            vd, threads = variant_dir(md, name, work / name)
            runtime = RecommenderRuntime.load(vd, threads=threads)
            row = timed(lambda runtime=runtime: runtime.recommend(hist, k), repeats)
            row |= ndcg(runtime, split, length)
            row["file_bytes"] = (vd.path / vd.model("recommender").file).stat().st_size
            out["variants"][name] = row
            print(
                f"variant {name:28s} median {row['median_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms"
                f"  NDCG@10 valid {row['ndcg10_valid']:.4f} test {row['ndcg10_test']:.4f}",
                flush=True,
            )
        out["graph_levels_1_thread"] = graph_levels(md, hist, repeats)
    return out


def graph_levels(md: ModelDir, hist: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """The recommender's time at each onnxruntime graph optimisation level, 1 thread."""
    import onnxruntime as ort

    from recloop.models.runtime.session import session_options

    entry = md.model("recommender")
    feed = {"history": hist, "exclude_seen": np.ones(len(hist), np.float32)}
    out = {}
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        options = session_options(1)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(str(md.path / entry.file), options)
        out[level] = timed(lambda session=session: session.run(None, feed), repeats)
        print(f"graph level {level:20s} median {out[level]['median_ms']:7.2f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="default: the MovieLens bench model")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--variants", action="store_true", help="time and evaluate variants")
    parser.add_argument("--data", help="kind:path of the evaluation data (default: the card's)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    model_dir = args.model_dir or benchlib.movielens_model()
    result = run(model_dir, args.batch, args.repeats, args.variants, args.data, args.k)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

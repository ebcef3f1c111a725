"""Benchmark onnxruntime inference of the recommender (and behaviour models) from a model dir.

    .venv/bin/python scripts/bench_inference.py --model-dir artifacts/models --batch 256

Uses real-looking inputs (random catalogue items, full history length) and reports the median
and p95 latency per call over the whole catalogue. No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recloop.models.runtime import (
    BehaviourRuntime,
    CooccurrenceRecommender,
    ModelDir,
    PopularRecommender,
    RecommenderRuntime,
)


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up: first call allocates and plans kernels
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default="artifacts/models")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    md = ModelDir(args.model_dir)
    rng = np.random.default_rng(0)
    n_items, length = md.card.vocab_size, md.card.history_length
    hist = rng.integers(2, n_items, (args.batch, length)).astype(np.int64)
    slates = rng.integers(2, n_items, (args.batch, 10)).astype(np.int64)
    print(
        f"model {md.version}: {n_items} items, history {length}, batch {args.batch}, "
        f"{args.repeats} calls"
    )
    # Load once, outside the timed calls.
    rec = RecommenderRuntime.load(md)
    pop, cooc = PopularRecommender.load(md), CooccurrenceRecommender.load(md)
    lstm, lm = BehaviourRuntime.load(md, "lstm"), BehaviourRuntime.load(md, "lm")
    runs = {
        "transformer recommend": lambda: rec.recommend(hist, args.k),
        "popular recommend": lambda: pop.recommend(hist, args.k),
        "cooccurrence recommend": lambda: cooc.recommend(hist, args.k),
        "behaviour lstm react": lambda: lstm.react(hist, slates),
        "behaviour lm react": lambda: lm.react(hist, slates),
    }
    for name, fn in runs.items():
        median, p95 = _time(fn, args.repeats)
        print(f"{name:24s} median {median:7.2f} ms   p95 {p95:7.2f} ms")


if __name__ == "__main__":
    main()

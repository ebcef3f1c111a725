"""`make bench`: every benchmark beside its same-run baseline, on one Apache Kafka, into one
JSON file under benchmarks/results/.

    .venv/bin/python scripts/bench_all.py                 # ~5 min on 2 cores
    .venv/bin/python scripts/bench_all.py --long          # longer phases, ~10 min
    .venv/bin/python scripts/bench_all.py --quick --out /tmp/b  # a smoke test, ~2 min
    .venv/bin/python scripts/bench_all.py --only inference,simulator --bootstrap 127.0.0.1:9092

In order: Apache Kafka's own `kafka-producer-perf-test` / `kafka-consumer-perf-test` (the
broker's ceiling), onnxruntime inference of the MovieLens transformer (every serving variant
with its NDCG@10), the worker against a raw aiokafka passthrough (throughput, latency at
1,000 and 3,000 events/s, 1/2/4 workers in one group) and, for throughput and CPU per event,
against a minimal Faust agent passthrough and the worker with the random strategy (the
worker's CPU per event split into Faust's floor, our pipeline and inference), the simulator against the raw aiokafka
producer, replay against the same raw producer. Then `scripts/bench_table.py` rewrites the
README's table from the newest result files.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_inference
import bench_replay
import bench_simulator
import bench_worker
import benchlib

ALL = ("kafka_perf", "inference", "worker", "simulator", "replay")


def headline(b: dict[str, Any]) -> dict[str, float]:
    """The ratios to same-run baselines, which machine load moves much less than rates."""
    h: dict[str, float] = {}
    if w := b.get("worker"):
        if "ratio_to_passthrough" in w:
            h["worker_throughput_vs_passthrough"] = w["ratio_to_passthrough"]
            h["worker_cpu_per_event_vs_passthrough"] = w["cpu_ratio_to_passthrough"]
        if w.get("worker", {}).get("cpu_us_per_event"):
            h["worker_cpu_us_per_event"] = w["worker"]["cpu_us_per_event"]
        # The worker's cost taken apart (bench_worker's faust_passthrough and worker_random).
        for kind in ("faust_passthrough", "faust_worker_transport", "worker_random"):
            if f"{kind}_cpu_ratio_to_passthrough" in w:
                h[f"{kind}_cpu_us_per_event"] = w[kind]["cpu_us_per_event"]
                h[f"{kind}_cpu_per_event_vs_passthrough"] = w[f"{kind}_cpu_ratio_to_passthrough"]
        d = w.get("decomposition", {})
        for key in (
            "inference_us_per_event",
            "inference_us_per_event_net_of_random",
            "pipeline_us_per_event",
        ):
            if key in d:
                h[key] = d[key]
    if s := b.get("simulator"):
        h["simulator_vs_raw_producer"] = s["ratio_to_raw"]
    if r := b.get("replay"):
        h["replay_vs_raw_producer"] = r["ratio_to_raw"]
    if (p := b.get("kafka_perf")) and s:
        h["raw_producer_vs_kafka_perf_producer"] = (
            s["raw_producer"]["events_per_s"] / p["producer"]["events_per_s"]
        )
    if p and w and "passthrough" in w:
        h["passthrough_vs_kafka_perf_consumer"] = (
            w["passthrough"]["events_per_s"] / p["consumer"]["events_per_s"]
        )
    return h


def worker_args(bootstrap: str, model_dir: Path, scale: float) -> argparse.Namespace:
    """`bench_worker`'s options for `make bench` (`scale` 2: `--long`, 0.2: `--quick`)."""
    options = {
        "--bootstrap": bootstrap,
        "--model-dir": str(model_dir),
        "--seconds": str(15 * scale),
        "--backlog": str(int(30_000 * scale)),
        "--scale-out": "1,2,4",
        "--scale-backlog": str(int(15_000 * scale)),
    }
    return bench_worker.parser().parse_args([x for kv in options.items() for x in kv])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="existing Kafka (default: start Apache Kafka)")
    parser.add_argument("--model-dir", type=Path, help="default: the MovieLens bench model")
    parser.add_argument("--only", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    parser.add_argument("--long", action="store_true", help="longer phases, less noise")
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke test")
    parser.add_argument("--no-table", action="store_true", help="do not rewrite the README")
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS_DIR, help="result folder")
    args = parser.parse_args()
    only = set(args.only.split(","))
    scale = 2.0 if args.long else 0.2 if args.quick else 1.0
    load_before = benchlib.load_average()
    started, date = time.monotonic(), benchlib.now_iso()
    model_dir = args.model_dir or benchlib.movielens_model()
    benchmarks: dict[str, Any] = {}
    phases: dict[str, float] = {}
    with benchlib.kafka(args.bootstrap) as bootstrap:
        sample = bench_simulator.session_starts(1000)
        record_size = round(statistics.mean(len(v) for _, v in sample))
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "kafka_perf": lambda: benchlib.kafka_perf(
                bootstrap, int(500_000 * scale), record_size, 4
            ),
            "inference": lambda: bench_inference.run(model_dir, repeats=int(30 * scale)),
            "worker": lambda: bench_worker.run(worker_args(bootstrap, model_dir, scale)),
            "simulator": lambda: bench_simulator.run(bootstrap, seconds=6.0 * scale),
            "replay": lambda: bench_replay.run(
                bootstrap,
                events=int(100_000 * scale),
                paced_seconds=5.0 * scale,
                rounds=3 if args.long else 2,
            ),
        }
        for name in ALL:
            if name in only:
                print(f"== {name} (load {benchlib.load_average()})", flush=True)
                t = time.monotonic()
                benchmarks[name] = steps[name]()
                phases[name] = round(time.monotonic() - t, 1)
    result = {
        "date": date,
        "seconds": round(time.monotonic() - started, 1),
        "phase_seconds": phases,
        "options": {
            "scale": scale,
            "bootstrap": "external" if args.bootstrap else "local",
            "model_dir": str(model_dir),
        },
        "broker": f"Apache Kafka {benchlib.machine()['versions']['apache-kafka']} (single node)",
        "load_average_before": load_before,
        "load_average_after": benchlib.load_average(),
        "machine": benchlib.machine(),
        "headline": headline(benchmarks),
        "benchmarks": benchmarks,
    }
    path = benchlib.write_result(result, args.out)
    print(f"wrote {path}")
    if not args.no_table:
        import bench_table

        bench_table.update_readme()
        print("README table rewritten from benchmarks/results/")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Profile one RecLoop worker on a backlog with py-spy (not a benchmark: it prints a profile).

Produces `--backlog` events (the same mix as `scripts/bench_worker.py`), starts `recloop
worker` on them, and once the first events are counted attaches `py-spy record` to the worker
until the backlog is consumed. Prints CPU per event and the functions with the most samples
(own and inclusive), and keeps py-spy's collapsed stacks in `--out` for a flame graph.

Usage:
    .venv/bin/pip install py-spy
    .venv/bin/python scripts/profile_worker.py --bootstrap 127.0.0.1:9092 --out /tmp/prof.txt

Without --bootstrap it starts a local Apache Kafka; without --model-dir it uses the MovieLens
bench model (`benchlib.movielens_model`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_worker  # noqa: E402
import benchlib  # noqa: E402

from recloop.core.settings import Settings  # noqa: E402
from recloop.core.topics import ensure_topics  # noqa: E402


def top_functions(collapsed: Path, n: int) -> str:
    """The `n` functions with the most samples, own and inclusive, from py-spy's raw format."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1] for f in stack.split(";")]
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    rows = [f"{total} samples"]
    for title, counter in (("own", own), ("inclusive", inclusive)):
        rows.append(f"--- {title}")
        rows += [f"{100 * c / total:5.1f}%  {f}" for f, c in counter.most_common(n)]
    return "\n".join(rows)


async def profile(args: argparse.Namespace) -> None:
    from recloop.brokers import free_port

    items = json.loads((args.model_dir / "items.json").read_text())[2:]
    topics = benchlib.fresh_topics("profile", args.partitions)
    settings = Settings(bootstrap=args.bootstrap, topics=topics)
    await ensure_topics(settings)
    source = bench_worker.EventSource(items, args.users, seed=1)
    await bench_worker.produce_backlog(args.bootstrap, topics.events, source, args.backlog)
    env = dict(kv.split("=", 1) for kv in args.worker_env)
    worker = bench_worker.WorkerUnderTest(settings, args.model_dir, free_port(), env)
    spy: subprocess.Popen[bytes] | None = None
    try:
        first = cpu0 = n0 = 0.0
        while (n := worker.metric("recloop_worker_events_total")) < args.backlog:
            if n > 0 and spy is None:
                first, cpu0, n0 = time.monotonic(), worker.cpu_seconds(), n
                cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid"]
                cmd += [str(worker.proc.pid), "--format", "raw", "-o", str(args.out)]
                cmd += ["--rate", "200", "--nonblocking"] + (["--native"] if args.native else [])
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {worker.log.name}")
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - first
        cpu = worker.cpu_seconds() - cpu0
        refetches = worker.metric("recloop_worker_offset_refetches_total")
        print(
            f"{n - n0:.0f} events in {seconds:.1f} s: {(n - n0) / seconds:.0f} events/s, "
            f"{cpu * 1e6 / (n - n0):.0f} us CPU/event, {refetches:.0f} seeks back"
        )
    finally:
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its output on SIGINT
            spy.wait(30)
        worker.stop()
    print(top_functions(args.out, args.top))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="Kafka to use (default: start a local Apache Kafka)")
    p.add_argument("--model-dir", type=Path, help="default: the MovieLens bench model")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--backlog", type=int, default=40_000)
    p.add_argument("--out", type=Path, default=Path("prof.txt"), help="py-spy collapsed stacks")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    p.add_argument("--worker-env", action="append", default=[], metavar="RECLOOP_X=V")
    args = p.parse_args()
    args.model_dir = args.model_dir or benchlib.movielens_model()
    with benchlib.kafka(args.bootstrap) as bootstrap:
        args.bootstrap = bootstrap
        asyncio.run(profile(args))


if __name__ == "__main__":
    main()

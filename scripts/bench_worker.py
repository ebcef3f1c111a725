#!/usr/bin/env python
"""Benchmark one RecLoop worker (ONNX transformer) against a raw aiokafka passthrough and more.

Not a test: it prints figures. Five kinds run in the same invocation, on the same broker, with
the same event mix (session start, then alternating click/view per user; session starts and
clicks ask for a recommendation) and the same partitions:

* `passthrough`: raw aiokafka consume -> decode -> produce an empty answer (this process);
* `faust_passthrough`: a minimal Faust app forwarding each event unchanged
  (`scripts/faust_passthrough.py`): stock Faust's own per-message floor;
* `faust_worker_transport`: the same agent on the worker's `WorkerApp`, whose consumer
  shortens Faust's per-message path: the floor of the worker's own Faust share;
* `worker_random`: `recloop worker` with `strategy=random`: everything but the ONNX inference;
* `worker`: `recloop worker` with the MovieLens transformer.

worker - worker_random is inference's share, faust_passthrough - passthrough Faust's. The
random strategy is not free either (it filters the catalogue per request), so its own CPU per
request and the transformer's are also measured in this process on batches like the worker's
(`ranking`), and the JSON's `decomposition` splits the worker's CPU per event with them.

For each kind:

* sustained throughput: a backlog of events is produced first, then the consumer is started
  and timed until it has consumed all of them (events/s, CPU per event);
* latency (passthrough and worker only): events are produced open-loop at each fixed rate
  (`--rates`) and each answer's `received - produced` is recorded (p50/p99 and p99 per
  second, triggering events only);
* scale-out (`--scale-out 1,2,4`, the worker only): that many workers in one consumer group share a backlog on
  8 partitions; partitions and events per worker, CPU per event over all of them.

Usage:
    .venv/bin/python scripts/bench_worker.py                      # starts a local Apache Kafka
    .venv/bin/python scripts/bench_worker.py --bootstrap host:9092 --model-dir artifacts/models

Without --model-dir the full-preset MovieLens models are trained once into the cache
(`benchlib.movielens_model`, needs the `train` extra, 2-4 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import benchlib  # noqa: E402

from recloop.core.contract import (  # noqa: E402
    EventType,
    Recommendation,
    StageTimes,
    UserEvent,
    decode_event,
    decode_recommendation,
    encode,
)
from recloop.core.settings import Settings, Strategy, Topics  # noqa: E402
from recloop.core.topics import ensure_topics  # noqa: E402

TRIGGERS = {EventType.SESSION_START, EventType.CLICK}
KINDS = ("passthrough", "faust_passthrough", "faust_worker_transport", "worker_random", "worker")
FAUST_KINDS = {"faust_passthrough": "faust", "faust_worker_transport": "worker"}
"""The Faust passthrough kinds and the `--transport` each runs `scripts/faust_passthrough.py`
with."""
LATENCY_KINDS = ("passthrough", "worker")
"""The kinds whose latency at `--rates` is measured (the others: throughput and CPU only)."""
PROGRESS = {
    "faust_passthrough": "faust_passthrough_events_total",
    "faust_worker_transport": "faust_passthrough_events_total",
    "worker_random": "recloop_worker_events_total",
    "worker": "recloop_worker_events_total",
}
"""The counter of events consumed on each subprocess kind's metrics endpoint."""


class EventSource:
    """Endless per-user event streams over the model's catalogue (seq keeps increasing)."""

    def __init__(self, items: list[str], users: int, seed: int = 0) -> None:
        self.items = items
        self.users = [f"bench-{uuid.uuid4().hex[:6]}-{u}" for u in range(users)]
        self.seq = [0] * users
        self.rng = np.random.default_rng(seed)

    def next(self) -> UserEvent:
        u = int(self.rng.integers(len(self.users)))
        s = self.seq[u]
        self.seq[u] += 1
        kind = EventType.SESSION_START if s == 0 else (EventType.CLICK if s % 2 else EventType.VIEW)
        now = time.time()
        return UserEvent(
            event_id=f"{self.users[u]}-{s}",
            user_id=self.users[u],
            event_type=kind,
            event_time=now,
            produce_time=now,
            seq=s,
            item_id=None if s == 0 else self.items[int(self.rng.integers(len(self.items)))],
            session_id=f"{self.users[u]}-s",
        )


async def produce_backlog(bootstrap: str, topic: str, source: EventSource, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        futures = []
        for _ in range(n):
            e = source.next()
            futures.append(await producer.send(topic, encode(e), key=e.user_id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_at_rate(
    bootstrap: str, topic: str, source: EventSource, rate: float, seconds: float
) -> int:
    """Open loop: the schedule never waits for answers. Returns triggering events sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, acks=1)
    await producer.start()
    sent = triggers = 0
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(due):
                e = source.next()
                await producer.send(topic, encode(e), key=e.user_id.encode())
                triggers += e.event_type in TRIGGERS
            sent += max(0, due)
            await asyncio.sleep(0.002)
        await producer.flush()
    finally:
        await producer.stop()
    return triggers


async def latencies(
    bootstrap: str,
    topic: str,
    stop: asyncio.Event,
    out: list[float],
    ready: asyncio.Event,
    timeline: list[tuple[float, float]] | None = None,
) -> None:
    """Record received - produced for every recommendation until `stop`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for r in records:
                    rec = decode_recommendation(r.value)
                    if rec.times.produced:
                        out.append(now - rec.times.produced)
                        if timeline is not None:
                            timeline.append((now, now - rec.times.produced))
    finally:
        await consumer.stop()


class Passthrough:
    """Raw aiokafka consume -> decode -> produce an empty answer for triggering events."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.consumed = 0
        self.first: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.assigned = asyncio.Event()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topics.events,
            bootstrap_servers=self.bootstrap,
            group_id=f"passthrough-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            max_poll_records=500,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=1, acks=1)
        await consumer.start()
        await producer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                if consumer.assignment():
                    self.assigned.set()
                for records in batches.values():
                    consumed = time.time()
                    self.first = self.first or time.monotonic()
                    for r in records:
                        e = decode_event(r.value)
                        self.consumed += 1
                        if e.event_type not in TRIGGERS:
                            continue
                        rec = Recommendation(
                            request_id=e.event_id,
                            user_id=e.user_id,
                            event_id=e.event_id,
                            items=[],
                            model_version="passthrough",
                            strategy="passthrough",
                            times=StageTimes(
                                event=e.event_time,
                                produced=e.produce_time,
                                consumed=consumed,
                                emitted=time.time(),
                            ),
                        )
                        await producer.send(self.topics.recommendations, encode(rec), key=r.key)
        finally:
            await producer.stop()
            await consumer.stop()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.assigned.wait(), 60)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ProcessUnderTest:
    """A consumer subprocess whose progress is read from its Prometheus metrics endpoint."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Any

    def metric(self, name: str) -> float:
        return self.metric_at(self.port, name)

    @staticmethod
    def metric_at(port: int, name: str) -> float:
        """The sum of `name`'s samples on the worker metrics endpoint at `port` (-1: none)."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except OSError:
            return -1.0
        total = 0.0
        for line in text.read().decode().splitlines():
            sample, _, value = line.rpartition(" ")
            if sample.split("{")[0] == name:
                total += float(value)
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads)."""
        return benchlib.process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class FaustPassthroughUnderTest(ProcessUnderTest):
    """`scripts/faust_passthrough.py` as a subprocess: a Faust agent forwarding each event."""

    def __init__(self, settings: Settings, port: int, transport: str = "faust") -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix="bench-faust-passthrough-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "faust_passthrough.py"),
                "--bootstrap",
                settings.bootstrap,
                "--events",
                settings.topics.events,
                "--recommendations",
                settings.topics.recommendations,
                "--partitions",
                str(settings.topics.partitions),
                "--metrics-port",
                str(port),
                "--app-id",
                f"bench-faust-{uuid.uuid4().hex[:6]}",
                "--data-dir",
                tempfile.mkdtemp(prefix="bench-faust-passthrough-"),
                "--transport",
                transport,
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )


class WorkerUnderTest(ProcessUnderTest):
    """`recloop worker` as a subprocess; progress read from its metrics endpoint."""

    def __init__(
        self,
        settings: Settings,
        model_dir: Path,
        port: int,
        extra_env: dict[str, str] | None = None,
        profile: Path | None = None,
    ) -> None:
        self.port = port
        env = {
            **os.environ,
            "RECLOOP_BOOTSTRAP": settings.bootstrap,
            "RECLOOP_TOPICS__EVENTS": settings.topics.events,
            "RECLOOP_TOPICS__RECOMMENDATIONS": settings.topics.recommendations,
            "RECLOOP_TOPICS__DEAD_LETTERS": settings.topics.dead_letters,
            "RECLOOP_TOPICS__PARTITIONS": str(settings.topics.partitions),
            "RECLOOP_WORKER__APP_ID": f"bench-{uuid.uuid4().hex[:6]}",
            "RECLOOP_WORKER__STRATEGY": Strategy.ONNX,
            "RECLOOP_WORKER__MODEL_DIR": str(model_dir),
            "RECLOOP_WORKER__METRICS_PORT": str(port),
            "RECLOOP_WORKER__DATA_DIR": tempfile.mkdtemp(prefix="recloop-bench-"),
            "RECLOOP_WORKER__TRIGGER_ON": json.dumps(["session_start", "click"]),
            **(extra_env or {}),
        }
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix="bench-worker-", suffix=".log", delete=False
        )
        # --profile: the worker runs under pyinstrument, which writes its report when the
        # worker exits on SIGTERM (Faust shuts down cleanly).
        prefix = (
            [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "session" if profile.suffix == ".pyisession" else "text",
                "-o",
                str(profile),
            ]
            if profile
            else [sys.executable]
        )
        self.proc = subprocess.Popen(
            [*prefix, "-m", "recloop", "worker", "--loglevel", "warning"],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, partitions: int) -> None:
        deadline = time.monotonic() + 120
        while self.metric("recloop_worker_assigned_partitions") < partitions:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log.name}")
            await asyncio.sleep(0.2)


def summary(values: list[float]) -> str:
    if not values:
        return "no answers"
    a = np.asarray(values) * 1000
    return f"p50 {np.percentile(a, 50):6.1f} ms  p99 {np.percentile(a, 99):6.1f} ms  (n={len(a)})"


async def measure(kind: str, args: argparse.Namespace, items: list[str]) -> dict[str, Any]:
    """Throughput on a backlog, then latency at each of `args.rates`, for one kind."""
    results: dict[str, Any] = {"kind": kind, "events_per_s": float("nan"), "latency": {}}
    if not args.no_throughput:
        await _throughput(kind, args, items, results)
    if not args.no_latency and kind in LATENCY_KINDS:
        for rate in args.rates:
            results["latency"][f"{rate:.0f}"] = await _latency(kind, args, items, rate)
    return results


async def _throughput(
    kind: str, args: argparse.Namespace, items: list[str], results: dict[str, Any]
) -> None:
    """1) Sustained throughput on a backlog."""
    from recloop.brokers import free_port

    topics = benchlib.fresh_topics(f"{kind}-tp", args.partitions)
    settings = Settings(bootstrap=args.bootstrap, topics=topics)
    await ensure_topics(settings)
    source = EventSource(items, args.users, seed=1)
    await produce_backlog(args.bootstrap, topics.events, source, args.backlog)
    if kind == "passthrough":
        pt = Passthrough(args.bootstrap, topics)
        started = time.monotonic()
        await pt.start()
        cpu0 = time.process_time()
        while pt.consumed < args.backlog and time.monotonic() - started < 300:
            await asyncio.sleep(0.05)
        assert pt.first is not None
        results["events_per_s"] = pt.consumed / (time.monotonic() - pt.first)
        results["cpu_us"] = (time.process_time() - cpu0) * 1e6 / max(1, pt.consumed)
        await pt.stop()
    else:
        under_test = start_under_test(kind, args, settings, free_port())
        try:
            first: float | None = None
            cpu0 = n0 = 0.0
            deadline = time.monotonic() + 300
            while (n := under_test.metric(PROGRESS[kind])) < args.backlog:
                if n > 0 and first is None:
                    first = time.monotonic()
                    cpu0, n0 = under_test.cpu_seconds(), n
                if under_test.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} stalled at {n} events; see {under_test.log.name}")
                await asyncio.sleep(0.05)
            assert first is not None
            results["events_per_s"] = args.backlog / (time.monotonic() - first)
            results["cpu_us"] = (under_test.cpu_seconds() - cpu0) * 1e6 / max(1.0, n - n0)
            if kind not in FAUST_KINDS:
                # The worker's own timing of its strategy calls (wall time, in its thread) and
                # how many requests they ranked: what the ranking costs in this very run.
                requests = under_test.metric("recloop_worker_inference_batch_size_sum")
                seconds = under_test.metric("recloop_worker_inference_seconds_sum")
                results["requests_per_event"] = requests / n
                results["strategy_wall_us_per_event"] = seconds * 1e6 / n
        finally:
            under_test.stop()
    print(
        f"{kind:17} backlog {args.backlog}: {results['events_per_s']:8,.0f} events/s, "
        f"{results['cpu_us']:6.1f} us CPU/event",
        flush=True,
    )


def start_under_test(
    kind: str, args: argparse.Namespace, settings: Settings, port: int, profile: bool = True
) -> ProcessUnderTest:
    """The subprocess of `kind` (faust_passthrough, worker_random or worker), started."""
    if kind in FAUST_KINDS:
        return FaustPassthroughUnderTest(settings, port, FAUST_KINDS[kind])
    env = dict(args.worker_env)
    if kind == "worker_random":  # everything as `worker` but the strategy
        env["RECLOOP_WORKER__STRATEGY"] = Strategy.RANDOM
    return WorkerUnderTest(
        settings, args.model_dir, port, env, args.profile if profile and kind == "worker" else None
    )


async def _latency(
    kind: str, args: argparse.Namespace, items: list[str], rate: float
) -> dict[str, Any]:
    """2) Event -> recommendation latency at a fixed open-loop rate, overall and per second."""
    from recloop.brokers import free_port

    topics = benchlib.fresh_topics(f"{kind}-lat", args.partitions)
    settings = Settings(bootstrap=args.bootstrap, topics=topics)
    await ensure_topics(settings)
    source = EventSource(items, args.users, seed=2)
    stop, ready, lat = asyncio.Event(), asyncio.Event(), []
    timeline: list[tuple[float, float]] = []
    reader = asyncio.create_task(
        latencies(args.bootstrap, topics.recommendations, stop, lat, ready, timeline)
    )
    await asyncio.wait_for(ready.wait(), 60)
    worker: ProcessUnderTest | None = None
    pt = None
    try:
        if kind == "passthrough":
            pt = Passthrough(args.bootstrap, topics)
            await pt.start()
        else:
            worker = start_under_test(kind, args, settings, free_port(), profile=False)
            assert isinstance(worker, WorkerUnderTest)
            await worker.ready(args.partitions)
        # A short warm-up at the same rate is not counted.
        await produce_at_rate(args.bootstrap, topics.events, source, rate, args.warmup)
        await asyncio.sleep(0.5)
        lat.clear()
        timeline.clear()
        sent = await produce_at_rate(args.bootstrap, topics.events, source, rate, args.seconds)
        deadline = time.monotonic() + 10
        while len(lat) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await reader
        if pt:
            await pt.stop()
        if worker:
            worker.stop()
    per_second = per_second_p99(timeline)
    if args.timeline:
        for sec, p99 in enumerate(per_second):
            print(f"  {kind} at {rate:.0f}/s t={sec:3d}s  p99 {p99:8.1f} ms", flush=True)
    a = np.asarray(lat or [np.nan]) * 1000
    print(
        f"{kind:12} at {rate:6.0f} events/s: {summary(lat)}  answered {len(lat)}/{sent}", flush=True
    )
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "answered": len(lat),
        "triggers_sent": sent,
        "per_second_p99_ms": per_second,
    }


def ranking_cost(
    model_dir: Path, items: list[str], history: int, seconds: float = 2.0
) -> dict[str, Any]:
    """CPU µs per request of the random and the ONNX strategy, in this process, on batches of
    the worker's default size with histories of up to `history` items (about the length the
    bench's users reach on its backlog) and the worker's slate and exclude-seen settings."""
    from recloop.core.settings import WorkerConfig
    from recloop.streams.strategies import build_strategy

    cfg = WorkerConfig()
    rng = np.random.default_rng(4)
    batches = [
        [
            [items[int(i)] for i in rng.integers(len(items), size=int(h))]
            for h in rng.integers(0, history + 1, size=cfg.batch_size)
        ]
        for _ in range(8)
    ]
    out: dict[str, Any] = {"batch": cfg.batch_size, "max_history": history}
    for name in (Strategy.RANDOM, Strategy.ONNX):
        strategy = build_strategy(name, model_dir, cfg.inference_threads)
        strategy.recommend(batches[0], cfg.slate_size, cfg.exclude_seen)  # warm up
        requests, cpu0, t0 = 0, time.process_time(), time.monotonic()
        while time.monotonic() - t0 < seconds:
            for batch in batches:
                strategy.recommend(batch, cfg.slate_size, cfg.exclude_seen)
                requests += len(batch)
        out[f"{name}_cpu_us_per_request"] = (time.process_time() - cpu0) * 1e6 / requests
    print(
        f"ranking, batch {cfg.batch_size}: random {out['random_cpu_us_per_request']:.0f} us "
        f"CPU/request, onnx {out['onnx_cpu_us_per_request']:.0f} us",
        flush=True,
    )
    return out


def decomposition(out: dict[str, Any]) -> dict[str, float]:
    """The worker's CPU per event split into Faust's floor, our pipeline and the ranking, from
    the kinds measured in `out` (each part only when its figures are there)."""
    us = {k: out[k]["cpu_us_per_event"] for k in KINDS if out.get(k, {}).get("cpu_us_per_event")}
    d: dict[str, float] = {}
    if "worker" in us and "worker_random" in us:
        d["inference_us_per_event"] = us["worker"] - us["worker_random"]
    ranking = out.get("ranking", {})
    per_event = out.get("worker_random", {}).get("requests_per_event")
    if "random_cpu_us_per_request" in ranking and per_event:
        random_us = ranking["random_cpu_us_per_request"] * per_event
        onnx_us = ranking["onnx_cpu_us_per_request"] * out["worker"]["requests_per_event"]
        d["random_strategy_us_per_event"] = random_us
        d["onnx_strategy_us_per_event"] = onnx_us
        if "worker_random" in us:
            # worker_random without its own ranking: the worker with free inference.
            d["worker_without_ranking_us_per_event"] = us["worker_random"] - random_us
            if "worker" in us:
                d["inference_us_per_event_net_of_random"] = (
                    us["worker"] - d["worker_without_ranking_us_per_event"]
                )
    # The floor: the worker's own transport where measured, else stock Faust's.
    floor_kind = next((k for k in ("faust_worker_transport", "faust_passthrough") if k in us), None)
    if floor_kind is not None:
        d["faust_floor_us_per_event"] = us[floor_kind]
        d["faust_floor_is_worker_transport"] = float(floor_kind == "faust_worker_transport")
        if "worker_without_ranking_us_per_event" in d:
            d["pipeline_us_per_event"] = d["worker_without_ranking_us_per_event"] - us[floor_kind]
    return d


def per_second_p99(timeline: list[tuple[float, float]]) -> list[float]:
    """p99 latency (ms) of each second of (received time, latency s) pairs, in order."""
    if not timeline:
        return []
    t0 = timeline[0][0]
    by_second: dict[int, list[float]] = {}
    for t, v in timeline:
        by_second.setdefault(int(t - t0), []).append(v)
    return [round(float(np.percentile(vs, 99)) * 1000, 1) for _, vs in sorted(by_second.items())]


async def scale_out(args: argparse.Namespace, items: list[str], workers: int) -> dict[str, Any]:
    """`workers` worker processes in one consumer group on a backlog: partitions and events
    each took, and CPU per event over all of them (the machine's cores are shared, so the
    figure to compare with one worker is CPU per event, not events/s)."""
    from recloop.brokers import free_port
    from recloop.core.settings import WorkerConfig
    from recloop.processes import start_worker, stop_process

    topics = benchlib.fresh_topics(f"scale{workers}", args.scale_partitions)
    group = f"bench-scale-{uuid.uuid4().hex[:6]}"
    settings = Settings(bootstrap=args.bootstrap, topics=topics)
    await ensure_topics(settings)
    procs, ports = [], []
    for i in range(workers):
        ports.append(free_port())
        worker = WorkerConfig(
            app_id=group,
            strategy=Strategy.ONNX,
            model_dir=args.model_dir,
            metrics_port=ports[-1],
            data_dir=benchlib.tmpdir("recloop-bench-"),
            trigger_on=["session_start", "click"],
            web_port=free_port(),
        )
        log = benchlib.tmpdir("bench-scale-") / f"worker{i}.log"
        procs.append(start_worker(settings.model_copy(update={"worker": worker}), log))
    try:
        metric = WorkerUnderTest.metric_at
        deadline = time.monotonic() + 180
        while True:  # every worker has partitions and together they have all of them
            assigned = [metric(p, "recloop_worker_assigned_partitions") for p in ports]
            if min(assigned) > 0 and sum(assigned) == args.scale_partitions:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} workers did not share the partitions: {assigned}")
            await asyncio.sleep(0.3)
        # Idle CPU first (polling, heartbeats, timers), to tell it from the events' own cost.
        idle0, idle_t = [benchlib.process_cpu_seconds(p.pid) for p in procs], time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        cpu0 = [benchlib.process_cpu_seconds(p.pid) for p in procs]
        idle_rate = (sum(cpu0) - sum(idle0)) / (time.monotonic() - idle_t)
        started = time.monotonic()
        source = EventSource(items, args.users, seed=3)
        await produce_backlog(args.bootstrap, topics.events, source, args.scale_backlog)
        while (done := [metric(p, "recloop_worker_events_total") for p in ports]) and sum(
            done
        ) < args.scale_backlog:
            if time.monotonic() - started > 300:
                raise RuntimeError(f"{workers} workers stalled at {sum(done)} events")
            await asyncio.sleep(0.1)
        seconds = time.monotonic() - started
        cpu = [benchlib.process_cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    finally:
        for p in procs:
            stop_process(p)
    row = {
        "workers": workers,
        "partitions": args.scale_partitions,
        "partitions_per_worker": [int(a) for a in assigned],
        "events_per_worker": [int(d) for d in done],
        "events_per_s": sum(done) / seconds,
        "cpu_us_per_event": sum(cpu) * 1e6 / sum(done),
        "idle_cpu_per_s": idle_rate,
        "cpu_us_per_event_net_of_idle": max(0.0, sum(cpu) - idle_rate * seconds) * 1e6 / sum(done),
    }
    print(
        f"{workers} worker(s): partitions {row['partitions_per_worker']}, events "
        f"{row['events_per_worker']}, CPU {row['cpu_us_per_event']:.0f} us/event "
        f"({row['cpu_us_per_event_net_of_idle']:.0f} net of {idle_rate:.2f} s/s idle)",
        flush=True,
    )
    return row


def parser() -> argparse.ArgumentParser:
    """The command line (also the defaults `run` starts from)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="Kafka to use (default: start a local Apache Kafka)")
    p.add_argument("--model-dir", type=Path, help="default: the MovieLens bench model")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--backlog", type=int, default=40_000, help="events for throughput")
    p.add_argument(
        "--rates", default="1000,3000", help="events/s of each latency phase (comma-separated)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="latency phase length")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(KINDS)} (default: all of them)",
    )
    p.add_argument("--no-ranking", action="store_true", help="skip the in-process ranking cost")
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="RECLOOP_X=V",
        help="extra worker setting, e.g. RECLOOP_WORKER__BATCH_SIZE=256 (repeatable)",
    )
    p.add_argument("--no-latency", action="store_true", help="throughput phase only")
    p.add_argument("--no-throughput", action="store_true", help="latency phase only")
    p.add_argument("--timeline", action="store_true", help="print latency per second")
    p.add_argument(
        "--profile", type=Path, help="run the throughput worker under pyinstrument, text report"
    )
    p.add_argument(
        "--scale-out", default="", help="worker counts for the scale-out mode, e.g. 1,2,4"
    )
    p.add_argument("--scale-partitions", type=int, default=8)
    p.add_argument("--scale-backlog", type=int, default=20_000)
    p.add_argument(
        "--idle-seconds", type=float, default=3.0, help="idle CPU measured before the backlog"
    )
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase `args` asks for on `args.bootstrap`; the result's figures."""
    args.worker_env = dict(kv.split("=", 1) for kv in args.worker_env)
    args.rates = [float(r) for r in str(args.rates).split(",") if r]
    args.model_dir = args.model_dir or benchlib.movielens_model()
    items = json.loads((args.model_dir / "items.json").read_text())[2:]
    print(f"broker {args.bootstrap}, model {args.model_dir}, {os.cpu_count()} cores", flush=True)
    kinds = args.only.split(",") if args.only else list(KINDS)
    if unknown := set(kinds) - set(KINDS):
        raise SystemExit(f"--only: unknown kind(s) {', '.join(sorted(unknown))}")
    rows = {kind: asyncio.run(measure(kind, args, items)) for kind in kinds}
    out: dict[str, Any] = {
        "model_dir": str(args.model_dir),
        "backlog": args.backlog,
        "partitions": args.partitions,
    }
    for kind, row in rows.items():
        out[kind] = {
            "events_per_s": row["events_per_s"],
            "cpu_us_per_event": row.get("cpu_us"),
            "latency": row["latency"],
        }
        for key in ("requests_per_event", "strategy_wall_us_per_event"):
            if key in row:
                out[kind][key] = row[key]
    if not args.no_throughput and "passthrough" in rows:
        p = out["passthrough"]
        if "worker" in rows:  # the original keys, worker to passthrough
            w = out["worker"]
            out["ratio_to_passthrough"] = w["events_per_s"] / p["events_per_s"]
            out["cpu_ratio_to_passthrough"] = w["cpu_us_per_event"] / p["cpu_us_per_event"]
        for kind in (*FAUST_KINDS, "worker_random"):
            if kind in rows:
                k = out[kind]
                out[f"{kind}_ratio_to_passthrough"] = k["events_per_s"] / p["events_per_s"]
                out[f"{kind}_cpu_ratio_to_passthrough"] = (
                    k["cpu_us_per_event"] / p["cpu_us_per_event"]
                )
    if not args.no_throughput and not args.no_ranking and {"worker", "worker_random"} <= set(rows):
        out["ranking"] = ranking_cost(args.model_dir, items, max(1, args.backlog // args.users))
    if not args.no_throughput:
        out["decomposition"] = decomposition(out)
    if args.scale_out:
        out["scale_out"] = [
            asyncio.run(scale_out(args, items, int(n))) for n in args.scale_out.split(",")
        ]
    return out


def main() -> None:
    args = parser().parse_args()
    with benchlib.kafka(args.bootstrap) as bootstrap:
        args.bootstrap = bootstrap
        result = run(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

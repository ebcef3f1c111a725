"""Shared benchmark harness: the one raw-producer baseline, Kafka's own perf tools, CPU and
machine figures, the MovieLens model the benchmarks use, and the result files.

Imported by the `scripts/bench_*.py` scripts (run from anywhere: each puts the repository root
and `scripts/` on `sys.path`). Nothing here is part of the installed `recloop` package.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from recloop.core.settings import Settings, Topics  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
MOVIELENS = "movielens:data/movielens-latest-small"
PACKAGES = ("aiokafka", "faust-streaming", "onnxruntime", "numpy", "msgspec", "hdrhistogram")

Records = list[tuple[bytes, bytes]]
"""Pre-encoded (key, value) pairs."""


def fresh_topics(tag: str, partitions: int) -> Topics:
    """Topic names no earlier run used, so every measurement starts on empty topics."""
    t = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
    return Topics(
        events=f"{t}.events",
        recommendations=f"{t}.recs",
        dead_letters=f"{t}.dlq",
        partitions=partitions,
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def raw_producer(settings: Settings, records: Records) -> dict[str, float]:
    """The baseline of every producing benchmark: a bare aiokafka producer, `send()` per record
    (default partitioner), futures awaited at the end, acks=1, linger 5 ms, 512 KiB batches (the
    replay's and the simulator's settings). Returns events/s and CPU µs per event of this
    process."""
    producer = AIOKafkaProducer(
        **settings.kafka_kwargs(), acks=1, linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    topic = settings.topics.events
    await producer.partitions_for(topic)
    try:
        cpu0, start = time.process_time(), time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await producer.flush()
        await asyncio.gather(*futures)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    return {"events_per_s": len(records) / seconds, "cpu_us_per_event": cpu * 1e6 / len(records)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _java_tool(main_class: str, args: list[str]) -> tuple[str, float]:
    """Run one of Kafka's tools (`org.apache.kafka.tools.*`); (stdout, CPU seconds)."""
    from recloop.brokers import fetch_kafka_tools

    libs = fetch_kafka_tools()
    cpu0 = _children_cpu()
    done = subprocess.run(
        ["java", "-Xmx512m", "-cp", f"{libs}/*", main_class, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout, _children_cpu() - cpu0


def kafka_perf(bootstrap: str, records: int, record_size: int, partitions: int) -> dict[str, Any]:
    """Apache Kafka's `kafka-producer-perf-test` then `kafka-consumer-perf-test` on a fresh
    topic: the broker's ceiling on this machine, with the producer settings of `raw_producer`.
    CPU per event is the tool's JVM (start-up included), not the broker's."""
    topic = fresh_topics("perf", partitions).events
    asyncio.run(_create(bootstrap, topic, partitions))
    out, cpu = _java_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
            "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
            "acks=1", "linger.ms=5", f"batch.size={512 * 1024}",
        ],
    )  # fmt: skip
    last = [line for line in out.splitlines() if "records sent" in line][-1]
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\).*?([\d.]+) ms avg latency", last)
    if m is None:
        raise RuntimeError(f"cannot read ProducerPerformance output: {last}")
    producer = {
        "events_per_s": float(m.group(1)),
        "mb_per_s": float(m.group(2)),
        "avg_latency_ms": float(m.group(3)),
        "cpu_us_per_event": cpu * 1e6 / records,
        "output": last.strip(),
    }
    out, cpu = _java_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(records),
            "--timeout", "60000",
        ],
    )  # fmt: skip
    header, row = (line for line in out.splitlines() if line.strip() and "," in line)
    stats = dict(zip((h.strip() for h in header.split(",")), row.split(","), strict=False))
    consumer = {
        "events_per_s": float(stats["nMsg.sec"]),
        "mb_per_s": float(stats["MB.sec"]),
        "fetch_events_per_s": float(stats["fetch.nMsg.sec"]),
        "cpu_us_per_event": cpu * 1e6 / records,
    }
    return {
        "records": records,
        "record_size": record_size,
        "producer": producer,
        "consumer": consumer,
    }


async def _create(bootstrap: str, topic: str, partitions: int) -> None:
    from recloop.core.topics import ensure_topics

    await ensure_topics(
        Settings(bootstrap=bootstrap, topics=Topics(events=topic, partitions=partitions))
    )


@contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    """`bootstrap` if given, else a fresh local Apache Kafka (stopped on exit)."""
    if bootstrap:
        yield bootstrap
        return
    from recloop.brokers import BROKERS

    broker = BROKERS["kafka"]().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


RECOMMENDER_CODE = ("recommender.py", "layers.py", "export.py", "serving.py")
"""The training and export code of the recommender, the model the benchmarks serve."""


def training_code_hash() -> str:
    """A hash of the recommender's training and export code: a change to it means a new
    benchmark model."""
    digest = hashlib.sha256()
    for name in RECOMMENDER_CODE:
        digest.update((ROOT / "models" / "train" / name).read_bytes())
    return digest.hexdigest()[:10]


def movielens_model(cache: Path | None = None) -> Path:
    """The full-preset MovieLens model directory, trained once per version of the training
    code into the cache with `recloop train` (2-4 minutes; needs the `train` extra)."""
    base = cache or Path(os.environ.get("RECLOOP_CACHE", Path.home() / ".cache" / "recloop"))
    path = base / "bench-models" / f"movielens-full-{training_code_hash()}"
    if not (path / "card.json").is_file():
        print(f"training the MovieLens models into {path} (once, ~2 min) ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "recloop", "train", "--data", MOVIELENS, "--out", str(path)],
            check=True,
            cwd=ROOT,
        )
    return path


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def _java_version() -> str:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True)
    except OSError:
        return "absent"
    return (done.stderr.splitlines() or ["?"])[0]


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, load now, versions, the git revision."""
    from recloop.brokers import kafka_version

    versions: dict[str, str] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    versions["apache-kafka"] = kafka_version()
    versions["java"] = _java_version()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "versions": versions,
        "git_revision": _git("rev-parse", "HEAD"),
        "git_dirty_paths": len(_git("status", "--porcelain").splitlines()),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages now."""
    return [round(x, 2) for x in os.getloadavg()]


def write_result(result: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """One JSON per run: `benchmarks/results/<UTC time>-<revision>.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}-{result['machine']['git_revision'][:8]}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def now_iso() -> str:
    """The UTC time, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def tmpdir(prefix: str) -> Path:
    """A new temporary directory."""
    return Path(tempfile.mkdtemp(prefix=prefix))

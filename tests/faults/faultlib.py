"""Helpers for the fault tests: a worker and real CLI processes (simulate, record, replay) on
one broker, and the topics read back by event id, so every event can be accounted for."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from recloop.brokers import free_port
from recloop.core.contract import (
    ContractError,
    UserEvent,
    decode_event,
    decode_recommendation,
)
from recloop.core.settings import Settings, WorkerConfig, settings_env
from tests.support import ROOT, WorkerProcess, unique_topics

TRIGGERS = {"session_start", "click", "request"}


def worker_settings(bootstrap: str, tmp: Path, prefix: str, **worker: object) -> Settings:
    """Fresh topics, app id, metrics port and data dir for one test's worker."""
    port = free_port()
    defaults: dict[str, object] = {
        "app_id": f"{prefix}-{port}",
        "strategy": "random",
        "model_dir": tmp / "no-model",
        "metrics_port": port,
        "data_dir": tmp / f"worker-{port}",
    }
    return Settings(
        bootstrap=bootstrap,
        topics=unique_topics(prefix),
        worker=WorkerConfig(**(defaults | worker)),  # type: ignore[arg-type]
    )


def scrape(port: int) -> str:
    """The text exposition of a process's /metrics."""
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text: str, name: str) -> float:
    """The sum of every sample of `name` (all label sets) in an exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_worker(worker: WorkerProcess, timeout: float = 90.0) -> None:
    """Until the worker has been assigned partitions (it answers from then on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker died:\n{worker.log()[-3000:]}"
        try:
            if (
                metric(
                    scrape(worker.settings.worker.metrics_port),
                    "recloop_worker_assigned_partitions",
                )
                > 0
            ):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"worker not ready in {timeout}s:\n{worker.log()[-3000:]}")


def recloop(
    args: list[str], settings: Settings, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A real `python -m recloop ARGS` process configured by `settings`, output to `log`."""
    out = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "recloop", *args],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> tuple[int, str]:
    """Wait for `proc` (killing it after `timeout`); its exit code and output."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"{proc.args} still running after {timeout}s:\n{log.read_text()}"
        ) from None
    return code, log.read_text(errors="replace")


@dataclass
class TopicRecord:
    """One record read back from a topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


async def read_topic(bootstrap: str, topic: str) -> list[TopicRecord]:
    """Every record of `topic` up to its current end offsets, in partition and offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # fresh metadata
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[TopicRecord] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    if r.offset < end[tp] and r.value is not None:
                        out.append(TopicRecord(tp.partition, r.offset, r.timestamp, r.key, r.value))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        assert not remaining, f"could not read {topic} to its end: {remaining}"
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def events_on(bootstrap: str, topic: str) -> dict[str, UserEvent]:
    """The events of `topic` by event id (a redelivered duplicate counts once)."""
    out: dict[str, UserEvent] = {}
    for r in asyncio.run(read_topic(bootstrap, topic)):
        try:
            ev = decode_event(r.value)
        except ContractError:
            continue
        out.setdefault(ev.event_id, ev)
    return out


def answered_ids(bootstrap: str, topic: str) -> set[str]:
    """The event ids that have at least one recommendation on `topic`."""
    return {
        decode_recommendation(r.value).event_id for r in asyncio.run(read_topic(bootstrap, topic))
    }


def summary(report_dir: Path) -> dict:
    """A finished simulation's summary.json."""
    return json.loads((report_dir / "summary.json").read_text())

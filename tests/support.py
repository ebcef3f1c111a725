"""Shared test helpers: run a worker process, produce events, collect topic contents."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from recloop.core.contract import EventType, UserEvent, encode
from recloop.core.settings import Settings, Topics
from recloop.processes import start_worker

ROOT = Path(__file__).resolve().parent.parent
MOVIELENS = ROOT / "data" / "movielens-latest-small"
"""MovieLens ml-latest-small, carried by the repository (licence in its README.txt)."""
PREREQUISITES = (
    "sudo apt-get install -y openjdk-17-jre-headless maven prometheus chromium chromium-driver"
)
"""The README's one prerequisites line: everything `make test` needs beyond Python."""


def run_recloop(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m recloop ARGS` from the repository root, as a user runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "recloop", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def require_tool(name: str) -> str:
    """The path of a system tool, or fail the test at once with how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed; install the prerequisites with: {PREREQUISITES}",
            pytrace=False,
        )
    return path


def unique_topics(prefix: str = "t") -> Topics:
    """Fresh topic names so tests sharing a broker never see each other's records."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return Topics(
        events=f"{tag}.events",
        recommendations=f"{tag}.recs",
        dead_letters=f"{tag}.dlq",
        partitions=4,
    )


class WorkerProcess:
    """A real `recloop worker` subprocess (killable, restartable), logging to a file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_path = Path(tempfile.mkstemp(prefix="recloop-worker-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = start_worker(self.settings, self.log_path, loglevel="info")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def make_events(
    n_users: int, per_user: int, prefix: str = "u", item_space: int = 50
) -> list[UserEvent]:
    """A deterministic stream: each user starts a session, then views and clicks items."""
    now = time.time()
    events: list[UserEvent] = []
    for u in range(n_users):
        user = f"{prefix}{u}"
        for s in range(per_user):
            kind = (
                EventType.SESSION_START
                if s == 0
                else (EventType.CLICK if s % 2 else EventType.VIEW)
            )
            item = None if kind is EventType.SESSION_START else str((u * 7 + s * 3) % item_space)
            events.append(
                UserEvent(
                    event_id=f"{user}-{s}",
                    user_id=user,
                    event_type=kind,
                    item_id=item,
                    event_time=now,
                    seq=s,
                    session_id=f"{user}-s0",
                )
            )
    return events


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) pairs and wait for every ack; returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, topic: str, events: Iterable[UserEvent]) -> int:
    """Send contract events keyed by user id, stamping the produce time."""
    return await produce(bootstrap, topic, ((e.user_id.encode(), encode(e)) for e in events))


async def collect(
    bootstrap: str,
    topic: str,
    done: Callable[[list[bytes]], bool],
    timeout: float = 60.0,
) -> list[bytes]:
    """Read `topic` from the beginning until `done(values)` or the timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(values) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return values


def write_replay_log(path: Path, events: int, users: int, rate: float, prefix: str = "u") -> Path:
    """A JSONL event log for `recloop replay`: each user starts a session, then clicks items;
    `events` events at `rate` events/s, users taking turns."""
    t0 = 1_700_000_000.0
    with path.open("w") as f:
        for n in range(events):
            user, step = f"{prefix}{n % users}", n // users
            row = {
                "user_id": user,
                "event_type": "session_start" if step == 0 else "click",
                "item_id": None if step == 0 else str((n * 7) % 97),
                "event_time": t0 + n / rate,
                "session_id": f"{user}#0",
            }
            f.write(json.dumps(row) + "\n")
    return path

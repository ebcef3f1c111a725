"""Running RecLoop's worker as a subprocess and waiting until it answers.

Used by `recloop demo`, the tests and the benchmarks, so that each starts a worker the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from recloop.core.contract import EventType, UserEvent, decode_recommendation, encode
from recloop.core.errors import RunError
from recloop.core.settings import Settings, settings_env
from recloop.core.topics import assign_at_end

ROOT = Path(__file__).resolve().parent.parent


class WorkerNotReady(RunError):
    """The worker did not answer a probe event in time."""


def start_worker(
    settings: Settings, log_path: Path, loglevel: str = "warning"
) -> subprocess.Popen[bytes]:
    """`python -m recloop worker` in its own process group, logging to `log_path`."""
    env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "recloop", "worker", "--loglevel", loglevel],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_for_recommender(settings: Settings, timeout: float = 90.0) -> float:
    """Send probe session starts until a recommendation answers one; returns seconds waited."""
    kw = settings.kafka_kwargs()
    t = settings.topics
    consumer = AIOKafkaConsumer(
        **settings.consumer_kwargs(), group_id=None, auto_offset_reset="latest"
    )
    producer = AIOKafkaProducer(**kw)
    started = time.monotonic()
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    seq = int(time.time() * 1000) * 1000
    try:  # stops both clients even when one fails to start (stopping an unstarted one is a no-op)
        await consumer.start()
        await producer.start()
        await assign_at_end(consumer, producer, t.recommendations)
        while time.monotonic() - started < timeout:
            seq += 1
            event = UserEvent(
                event_id=f"{probe}-{seq}",
                user_id=probe,
                event_type=EventType.SESSION_START,
                event_time=time.time(),
                seq=seq,
                session_id=probe,
            )
            await producer.send_and_wait(t.events, encode(event), key=probe.encode())
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=250)
                for records in batches.values():
                    for r in records:
                        with contextlib.suppress(ValueError):
                            if decode_recommendation(r.value or b"").user_id == probe:
                                return time.monotonic() - started
        raise WorkerNotReady(f"the worker did not answer within {timeout:.0f}s")
    finally:
        await producer.stop()
        await consumer.stop()

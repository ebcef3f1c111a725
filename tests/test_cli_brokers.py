"""`recloop --help`, and `recloop broker` starting and stopping a real embedded broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from recloop.brokers import free_port
from tests.support import ROOT


def _recloop(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "recloop", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_help_lists_the_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "recloop", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for command in ["broker", "worker"]:
        assert command in out.stdout


async def _can_produce(bootstrap: str) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await producer.start()
        await producer.send_and_wait("cli-probe", b"hello")
        return True
    except (KafkaConnectionError, OSError):
        return False
    finally:
        await producer.stop()


def test_broker_command_starts_and_stops_the_embedded_broker() -> None:
    port = free_port()
    proc = _recloop("broker", "--port", str(port))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"ready at 127.0.0.1:{port}" in line, line
    assert asyncio.run(_can_produce(f"127.0.0.1:{port}"))
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert "broker stopped" in proc.stdout.read()
    time.sleep(0.5)
    assert not asyncio.run(_can_produce(f"127.0.0.1:{port}")), "broker still answering"


def test_unknown_broker_kind_is_a_clear_error() -> None:
    proc = _recloop("broker", "--kind", "zookeeper")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "unknown broker 'zookeeper'" in out and "kafka" in out

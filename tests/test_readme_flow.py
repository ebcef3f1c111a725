"""The README's "Everyday commands" and "Stress-testing your own recommender", run as written.

The commands are read from README.md's two bash blocks, so the README cannot drift from what
works: every line of the first block that touches Kafka (broker, topics, worker, simulate,
record, replay) runs in order, as a subprocess of the real CLI, on a fresh Apache Kafka started
by the README's own `recloop broker --kind kafka`; then the second block runs against a small
stand-in recommender (an aiokafka consumer and producer speaking the contract) on the same
broker. What differs from a user's terminal, and why:

* `recloop broker` gets a free `--port` and every client `RECLOOP_BOOTSTRAP` for it (9092 may be
  taken on a shared machine), so the second block's `RECLOOP_BOOTSTRAP` is replaced too;
* metrics ports are off and the simulator's live view too (`--no-live --metrics-port 0`
  appended; the last value of an option wins);
* the worker serves the small hand-written model directory of tests/streams/modeldir.py
  (`RECLOOP_WORKER__MODEL_DIR`) instead of one trained by the block's `recloop train`;
* before `recloop simulate` the test waits until the worker answers a probe, where a user would
  wait until its terminal is quiet.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from recloop.brokers import free_port
from recloop.core.contract import (
    ContractError,
    EventType,
    Recommendation,
    ScoredItem,
    StageTimes,
    decode_event,
    encode,
)
from recloop.core.settings import Settings, load_settings
from recloop.core.topics import assign_at_end
from recloop.processes import WorkerNotReady, stop_process, wait_for_recommender
from tests.streams.modeldir import write_model_dir
from tests.support import ROOT, require_tool

pytestmark = pytest.mark.kafka

README = ROOT / "README.md"
KAFKA_COMMANDS = {"broker", "topics", "worker", "simulate", "record", "replay"}
"""Subcommands that talk to Kafka; the others (data, train, evaluate, report) are offline."""
BACKGROUND = {"broker", "worker"}
"""Subcommands that run until Ctrl-C: started in the background, stopped at the end."""
QUIET = ["--no-live", "--metrics-port", "0"]
TRIGGERS = frozenset({EventType.SESSION_START, EventType.CLICK, EventType.REQUEST})
"""The worker's default `trigger_on`: the events a recommender answers."""


@dataclass
class Line:
    """One command line of a README block: `recloop ...` or `export NAME=value ...`."""

    args: list[str]

    @property
    def subcommand(self) -> str:
        return self.args[1] if self.args[0] == "recloop" and len(self.args) > 1 else ""


def readme_block(heading: str) -> list[Line]:
    """The command lines of the first bash block under `## heading` (comments dropped)."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)^```bash\n(.*?)^```", text, re.M | re.S)
    assert match, f"README.md has no bash block under '## {heading}'"
    joined = match.group(2).replace("\\\n", " ")
    lines = [shlex.split(raw, comments=True) for raw in joined.splitlines()]
    return [Line(args) for args in lines if args]


class Session:
    """Runs README lines as subprocesses in one working directory, with one environment."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.cwd = cwd
        self.env = env
        self.port = port
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []

    def command(self, line: Line, extra: list[str] = ()) -> list[str]:
        assert line.args[0] == "recloop", line.args
        return [sys.executable, "-m", "recloop", *line.args[1:], *extra]

    def run(self, line: Line, extra: list[str] = (), timeout: float = 120.0) -> str:
        """Run one line to its end; fail with its output unless it exits 0."""
        done = subprocess.run(
            self.command(line, extra),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"`{shlex.join(line.args)}` exited {done.returncode}:\n{output}"
        )
        return output

    def start(self, line: Line, extra: list[str] = ()) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a long-running line in its own process group, logging to a file."""
        log = self.cwd / f"{line.subcommand}-{len(self.background)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                self.command(line, extra),
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((proc, log))
        return proc, log

    def stop_all(self) -> None:
        for proc, _ in reversed(self.background):
            stop_process(proc)


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, pattern: str, timeout: float) -> None:
    """Wait until `log` matches `pattern`; fail with the log if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text):
            return
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before /{pattern}/:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"no /{pattern}/ within {timeout:.0f} s:\n{log.read_text(errors='replace')}")


def wait_answering(
    proc: subprocess.Popen[bytes], log: Path, settings: Settings, timeout: float = 90.0
) -> None:
    """Wait until the worker answers a probe; fail with its log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(wait_for_recommender(settings, timeout=10))
            return
        except WorkerNotReady:
            if proc.poll() is not None or time.monotonic() > deadline:
                state = "running" if proc.poll() is None else f"exited {proc.returncode}"
                pytest.fail(
                    f"the worker ({state}) did not answer:\n{log.read_text('utf-8', 'replace')}"
                )


def summary_of(output: str, cwd: Path) -> dict:
    """The summary.json a `recloop simulate` run in `cwd` printed the path of."""
    match = re.search(r"^summary: (.+)$", output, re.M)
    assert match, output
    return json.loads((cwd / match.group(1).strip()).read_text())


def answered(summary: dict) -> tuple[int, int]:
    counts = summary["counts"]
    return counts.get("recommendations", 0), counts.get("requests", 0)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    require_tool("java")
    require_tool("mvn")
    port = free_port()
    # Only what the test sets: RECLOOP_* variables of the calling shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env |= {
        "RECLOOP_BOOTSTRAP": f"127.0.0.1:{port}",
        "RECLOOP_WORKER__MODEL_DIR": str(write_model_dir(tmp_path / "models", "readme-v1")),
        "RECLOOP_WORKER__METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    s = Session(tmp_path, env, port)
    try:
        yield s
    finally:
        s.stop_all()


class StandInRecommender:
    """A recommender of one's own, in ~30 lines: read `UserEvent`s, answer each triggering one
    with a `Recommendation` (the items most interacted with so far) keyed by user id."""

    def __init__(self, bootstrap: str, events: str, recommendations: str) -> None:
        self.bootstrap, self.events, self.recommendations = bootstrap, events, recommendations
        self.answered = 0
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> StandInRecommender:
        self.thread.start()
        if not self.ready.wait(60):
            raise TimeoutError(f"stand-in recommender not ready: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the test through `error`
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=2)
        await consumer.start()
        await producer.start()
        try:
            await assign_at_end(consumer, producer, self.events)
            self.ready.set()
            popular: Counter[str] = Counter()
            while not self.stopping.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        try:
                            event = decode_event(record.value or b"")
                        except ContractError:
                            continue
                        if event.item_id:
                            popular[event.item_id] += 1
                        if event.event_type not in TRIGGERS:
                            continue
                        now = time.time()
                        rec = Recommendation(
                            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, event.event_id)),
                            user_id=event.user_id,
                            event_id=event.event_id,
                            items=[ScoredItem(i, float(n)) for i, n in popular.most_common(10)],
                            model_version="stand-in-1",
                            strategy="stand-in",
                            times=StageTimes(event=event.event_time, consumed=now, emitted=now),
                        )
                        await producer.send(
                            self.recommendations, encode(rec), key=event.user_id.encode()
                        )
                        self.answered += 1
        finally:
            await producer.stop()
            await consumer.stop()


def test_readme_everyday_commands_then_own_recommender(session: Session) -> None:
    started = time.monotonic()
    everyday = [line for line in readme_block("Everyday commands") if line.subcommand]
    kafka_lines = [line for line in everyday if line.subcommand in KAFKA_COMMANDS]
    assert {"broker", "topics", "worker", "simulate"} <= {line.subcommand for line in kafka_lines}
    assert kafka_lines[0].subcommand == "broker", "the block must start the broker first"

    for line in kafka_lines:
        sub = line.subcommand
        if sub == "broker":
            proc, log = session.start(line, ["--port", str(session.port)])
            wait_for_line(proc, log, r"broker ready at", timeout=120)
        elif sub == "worker":
            proc, log = session.start(line)
            wait_answering(proc, log, load_settings(bootstrap=session.env["RECLOOP_BOOTSTRAP"]))
        elif sub == "simulate":
            summary = summary_of(session.run(line, QUIET), session.cwd)
            recs, requests = answered(summary)
            assert requests > 0 and recs > 0, summary["counts"]
            assert summary["recommender"]["strategy"] == "onnx", summary["recommender"]
        elif sub == "replay":
            session.run(line, ["--metrics-port", "0"])
        else:
            output = session.run(line)
            if line.args[1:3] == ["topics", "describe"]:
                assert "missing" not in output, output
    for proc, log in session.background:
        assert proc.poll() is None, f"{log.name} ended early:\n{log.read_text(errors='replace')}"
    # RecLoop's worker is not part of the second flow: stop it (and keep the broker).
    worker = next(p for p, log in session.background if log.name.startswith("worker"))
    stop_process(worker)
    everyday_seconds = time.monotonic() - started

    own = readme_block("Stress-testing your own recommender")
    for line in own:
        if line.args[0] == "export":
            for assignment in line.args[1:]:
                name, _, value = assignment.partition("=")
                session.env[name] = value
    # The block's cluster is the user's; ours is the fresh one.
    session.env["RECLOOP_BOOTSTRAP"] = f"127.0.0.1:{session.port}"
    events = session.env["RECLOOP_TOPICS__EVENTS"]
    recommendations = session.env["RECLOOP_TOPICS__RECOMMENDATIONS"]
    assert events != "recloop.events" and recommendations != "recloop.recommendations"
    commands = [line for line in own if line.subcommand]
    assert "simulate" in {line.subcommand for line in commands}
    stand_in = StandInRecommender(session.env["RECLOOP_BOOTSTRAP"], events, recommendations)
    for line in commands:
        if line.subcommand == "simulate":
            with stand_in:
                summary = summary_of(session.run(line, QUIET), session.cwd)
            assert stand_in.error is None, repr(stand_in.error)
            recs, requests = answered(summary)
            assert requests > 0 and recs > 0, summary["counts"]
            assert summary["recommender"]["strategy"] == "stand-in", summary["recommender"]
            assert stand_in.answered >= recs
        else:
            output = session.run(line)
            assert events in output and recommendations in output, output
    print(
        f"README flow: everyday {everyday_seconds:.0f} s, own recommender "
        f"{time.monotonic() - started - everyday_seconds:.0f} s"
    )

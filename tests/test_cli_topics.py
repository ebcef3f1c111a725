"""`recloop topics create|describe` and the worker's topics at start-up, as a user runs them.

On both brokers, each test with topic names of its own (RECLOOP_TOPICS__*), so a shared
session broker behaves like a fresh one for these names.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recloop.core.settings import Settings
from recloop.core.topics import describe_topics
from recloop.processes import WorkerNotReady, stop_process, wait_for_recommender
from tests.support import run_recloop, unique_topics

pytestmark = pytest.mark.kafka


def _env(bootstrap: str, tmp_path: Path) -> tuple[dict[str, str], Settings]:
    topics = unique_topics("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env |= {
        "RECLOOP_BOOTSTRAP": bootstrap,
        "RECLOOP_TOPICS__EVENTS": topics.events,
        "RECLOOP_TOPICS__RECOMMENDATIONS": topics.recommendations,
        "RECLOOP_TOPICS__DEAD_LETTERS": topics.dead_letters,
        "RECLOOP_WORKER__APP_ID": f"cli-{topics.events}",
        "RECLOOP_WORKER__STRATEGY": "random",
        "RECLOOP_WORKER__METRICS_PORT": "0",
        "RECLOOP_WORKER__DATA_DIR": str(tmp_path / "worker-data"),
        "PYTHONUNBUFFERED": "1",
    }
    return env, Settings(bootstrap=bootstrap, topics=topics)


def _recloop(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_recloop(*args, env=env, timeout=timeout)


def test_topics_create_and_describe(broker, tmp_path: Path) -> None:
    env, settings = _env(broker.bootstrap, tmp_path)
    t = settings.topics

    missing = _recloop(env, "topics", "describe")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stdout.count("missing") == 3, missing.stdout
    assert "recloop topics create" in missing.stderr

    only = _recloop(env, "topics", "create", "events", "--partitions", "2")
    assert only.returncode == 0, only.stdout + only.stderr
    assert t.events in only.stdout and t.recommendations not in only.stdout

    rest = _recloop(env, "topics", "create")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    states = {line.split()[1]: line.split()[-1] for line in rest.stdout.splitlines()[2:]}
    assert states == {t.events: "exists", t.recommendations: "created", t.dead_letters: "created"}

    infos = {i.name: i for i in asyncio.run(describe_topics(settings))}
    assert infos[t.events].partitions == 2  # left as it was created
    assert infos[t.recommendations].partitions == settings.topics.partitions
    assert all(i.exists and i.replication_factor == 1 for i in infos.values())

    described = _recloop(env, "topics", "describe")
    assert described.returncode == 0, described.stdout + described.stderr

    bad = _recloop(env, "topics", "describe", "control")
    assert bad.returncode == 2 and "unknown topic role 'control'" in bad.stderr, bad.stderr


def test_worker_without_topic_creation_names_the_missing_topic(broker, tmp_path: Path) -> None:
    env, settings = _env(broker.bootstrap, tmp_path)
    done = _recloop(env, "worker", "--no-create-topics")
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert settings.topics.events in lines[0] and "`recloop topics create`" in lines[0]
    # Nothing was created behind the user's back.
    assert not any(i.exists for i in asyncio.run(describe_topics(settings)))


def test_worker_creates_missing_topics_and_answers(broker, tmp_path: Path) -> None:
    env, settings = _env(broker.bootstrap, tmp_path)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recloop", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Wait for the worker's topics first: the probe's metadata lookups would auto-create
        # a missing topic on brokers with auto.create.topics.enable.
        deadline = time.monotonic() + 60
        while not all(i.exists for i in asyncio.run(describe_topics(settings))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no topics from the worker:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        try:
            asyncio.run(wait_for_recommender(settings, timeout=90))
        except WorkerNotReady:
            pytest.fail(f"the worker did not answer:\n{log.read_text(errors='replace')}")
        assert "created topics" in log.read_text(errors="replace")
    finally:
        stop_process(proc)


def test_simulate_names_what_creates_a_missing_topic(broker, tmp_path: Path) -> None:
    env, settings = _env(broker.bootstrap, tmp_path)
    done = _recloop(
        env, "simulate", "--rate", "1", "--duration", "1", "--no-live", "--metrics-port", "0"
    )
    assert done.returncode == 3, done.stdout + done.stderr
    line = done.stderr.strip()
    assert "\n" not in line, line
    assert settings.topics.events in line and "`recloop topics create`" in line, line

"""The live dashboard, the report and the comparison in a real browser, on real brokers.

A real `recloop worker` answers a real `recloop simulate --web` on the embedded broker and on
Apache Kafka; headless Chromium (Selenium, the system chromedriver) opens the pages, checks
that the charts draw and grow, that the console has no errors, and takes screenshots into the
test's directory (and into $RECLOOP_SCREENSHOTS: `RECLOOP_SCREENSHOTS=docs/img` makes the
README's pictures). `recloop compare` gates a slow recommender's run against a healthy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from recloop.brokers import BROKERS, free_port
from recloop.core.settings import Settings, WorkerConfig
from recloop.core.topics import ensure_topics
from recloop.processes import wait_for_recommender
from tests.conftest import Broker
from tests.support import ROOT, WorkerProcess, run_recloop, unique_topics
from tests.web.browser import (
    axis_ticks,
    chart_points,
    chromium,
    console_errors,
    screenshot,
    wait_for,
)

pytestmark = pytest.mark.kafka

THRESHOLDS = ["p99 latency < 30s", "abandonment < 50%"]
SLOW_DELAY = 0.8
"""The slow recommender's injected delay per batch (as simulator/scenarios/slow-recommender.yaml)."""


@dataclass(slots=True)
class Loop:
    """A running worker and how a `recloop` subprocess reaches it."""

    settings: Settings
    env: dict[str, str]


def scenario_file(path: Path, seconds: float, *, seed: int = 4) -> Path:
    """The slow-recommender scenario's users and load, shortened, with lenient thresholds."""
    sc = yaml.safe_load((ROOT / "simulator/scenarios/slow-recommender.yaml").read_text())
    sc.update(
        name=path.stem,
        seed=seed,
        stages=[{"kind": "constant", "rate": 12, "duration": f"{seconds}s"}],
        thresholds=THRESHOLDS,
    )
    path.write_text(yaml.safe_dump(sc))
    return path


@pytest.fixture(scope="module")
def loops(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Loop]]:
    """A healthy and a slow `random` worker on the same broker, each on topics of its own."""
    tmp = tmp_path_factory.mktemp("web-loops")
    client = BROKERS[broker.kind].client_settings() if broker.kind in BROKERS else {}
    workers: list[WorkerProcess] = []
    out: dict[str, Loop] = {}
    try:
        for name, delay in (("healthy", 0.0), ("slow", SLOW_DELAY)):
            topics = unique_topics(f"web-{name}")
            settings = Settings(
                bootstrap=broker.bootstrap,
                topics=topics,
                worker=WorkerConfig(
                    app_id=f"w-{topics.events}",
                    strategy="random",
                    model_dir=tmp / "no-models",
                    data_dir=tmp / f"worker-{name}",
                    metrics_port=0,
                    inject_delay_seconds=delay,
                ),
                **client,
            )
            asyncio.run(ensure_topics(settings))
            workers.append(WorkerProcess(settings).start())
            asyncio.run(wait_for_recommender(settings, timeout=90))
            env = {
                **os.environ,
                "RECLOOP_BOOTSTRAP": broker.bootstrap,
                "RECLOOP_TOPICS__EVENTS": topics.events,
                "RECLOOP_TOPICS__RECOMMENDATIONS": topics.recommendations,
                "RECLOOP_TOPICS__DEAD_LETTERS": topics.dead_letters,
                **{f"RECLOOP_{k.upper()}": str(v) for k, v in client.items()},
            }
            out[name] = Loop(settings, env)
        yield out
    finally:
        for w in workers:
            w.stop()


@pytest.fixture(scope="module")
def runs(loops: dict[str, Loop], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two healthy runs with the same seed and one against the slow worker (summary.json each),
    run as a user runs them: `recloop simulate` with its live terminal view."""
    tmp = tmp_path_factory.mktemp("web-runs")
    scenario = scenario_file(tmp / "short.yaml", 8)
    out: dict[str, Path] = {}
    for name, loop in (("healthy-a", "healthy"), ("healthy-b", "healthy"), ("slow", "slow")):
        proc = run_recloop(
            "simulate",
            str(scenario),
            "--metrics-port",
            "0",
            "--out",
            str(tmp / name),
            env=loops[loop].env,
            timeout=120,
        )
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        (tmp / name / "stdout.txt").write_text(proc.stdout)
        out[name] = tmp / name / "summary.json"
    return out


def test_terminal_prints_each_verdict_once_aligned_with_units(runs: dict[str, Path]) -> None:
    out = runs["healthy-a"].parent
    stdout = (out / "stdout.txt").read_text()
    # The live view's last frame (a table) ends on its own line; then exactly these lines.
    frame, _, tail = stdout.rpartition("┘\n")
    assert frame, stdout
    pattern = (
        r"✓ p99 latency < 30s  measured \d+\.\d ms\n"
        r"✓ abandonment < 50%  measured \d+\.\d\d %\n"
        f"report: {re.escape(str(out / 'report.html'))}\n"
        f"summary: {re.escape(str(out / 'summary.json'))}\n"
    )
    assert re.fullmatch(pattern, tail), tail
    for threshold in THRESHOLDS:
        assert stdout.count(threshold) == 1, stdout


def test_compare_gates_a_slow_recommender(runs: dict[str, Path], tmp_path: Path) -> None:
    # Two healthy runs with the same seed differ by tens to hundreds of ms at p99 on a busy
    # machine; the slow recommender adds its 0.8 s to every answer and its users leave.
    gates = ["--fail-if", "p99 latency +1s", "--fail-if", "abandonment +10pp"]
    same = run_recloop(
        "compare",
        str(runs["healthy-a"]),
        str(runs["healthy-b"]),
        "--out",
        str(tmp_path / "same"),
        *gates,
    )
    print(same.stdout)
    assert same.returncode == 0, same.stdout + same.stderr
    slow = run_recloop(
        "compare",
        str(runs["healthy-a"]),
        str(runs["slow"]),
        "--out",
        str(tmp_path / "slow"),
        *gates,
    )
    print(slow.stdout)
    assert slow.returncode == 1, slow.stdout + slow.stderr
    line = r"^✗ p99 latency \+1s    slow: \d+\.\d ms → .+ \(\+.+\)$"
    assert re.search(line, slow.stdout, re.M), slow.stdout
    data = json.loads((tmp_path / "slow" / "compare.json").read_text())
    assert data["passed"] is False and data["gates"][0]["passed"] is False
    bad = run_recloop("compare", str(runs["healthy-a"]), str(runs["slow"]), "--fail-if", "p99 +10")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "cannot parse gate 'p99 +10'" in bad.stderr


def test_report_and_comparison_render_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    compare = run_recloop(
        "compare",
        str(runs["healthy-a"]),
        str(runs["slow"]),
        "--out",
        str(tmp_path / "compare"),
        "--fail-if",
        "p99 latency +1s",
        "--fail-if",
        "ctr -20%",
    )
    assert compare.returncode in (0, 1), compare.stdout + compare.stderr
    with chromium(tmp_path / "profile") as driver:
        for page, name in (
            (runs["healthy-a"].parent / "report.html", "report"),
            (tmp_path / "compare" / "compare.html", "compare"),
        ):
            driver.get(page.as_uri())
            points = wait_for(lambda: chart_points(driver), 10, f"the charts of {name}")
            assert len(points) >= 4 and all(n > 0 for n in points.values()), points
            assert console_errors(driver) == [], name
            assert_readable_axes(axis_ticks(driver))
            screenshot(driver, tmp_path, name)
        gates = driver.find_element("id", "gates").text
        assert "p99 latency +1s" in gates and "FAIL" in gates


def test_live_dashboard_updates_then_shows_the_report(
    loops: dict[str, Loop], tmp_path: Path
) -> None:
    scenario = scenario_file(tmp_path / "live.yaml", 14)
    args = ["simulate", str(scenario), "--no-live", "--metrics-port", "0"]
    with _web_run(loops, tmp_path, [*args, "--out", str(tmp_path / "out")]) as (driver, proc, url):
        first = _first_points(driver)
        time.sleep(2.5)
        second = chart_points(driver)
        assert set(first) == {"rate", "latency", "users"}, first
        assert second["rate"] > first["rate"], (first, second)
        assert sum(second.values()) > sum(first.values()), (first, second)
        assert console_errors(driver) == []
        assert_readable_axes(axis_ticks(driver))
        sources = driver.find_element("id", "sources").text
        verdicts = driver.find_element("id", "verdicts").text
        meta = driver.find_element("id", "meta").text
        assert "simulated" in sources and "p99 latency" in sources
        assert all(t in verdicts for t in THRESHOLDS) and "pass" in verdicts
        assert "live" in meta and "broker" in meta
        progress = driver.find_element("id", "progress")
        wait_for(lambda: float(progress.get_attribute("value")) >= 10, 20, "10 s of the run")
        screenshot(driver, tmp_path, "live-dashboard")
        stdout = _end_report(driver, proc, "finished: PASSED")
        assert f"live dashboard: {url}" in stdout
        assert "PASSED" in driver.find_element("tag name", "h1").text
        assert all(
            n > 0 for n in wait_for(lambda: chart_points(driver), 10, "report charts").values()
        )
        driver.switch_to.default_content()
        assert console_errors(driver) == []


@contextlib.contextmanager
def _web_run(
    loops: dict[str, Loop], tmp_path: Path, args: list[str]
) -> Iterator[tuple[Any, subprocess.Popen[str], str]]:
    """`recloop ARGS --web` against the healthy loop, its page open in Chromium; yields the
    driver, the process and the page's URL (the process is killed if still running after)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "recloop", *args, "--web", "--web-port", str(port)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=loops["healthy"].env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with chromium(tmp_path / "profile") as driver:
            wait_for(lambda: _serving(url), 60, f"the dashboard at {url}")
            driver.get(url)
            yield driver, proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _first_points(driver: Any) -> dict[str, int]:
    """The charts' point counts, once the rate chart has a few."""
    return wait_for(
        lambda: (p := chart_points(driver)) and p.get("rate", 0) > 2 and p, 30, "points"
    )


def _end_report(driver: Any, proc: subprocess.Popen[str], status: str) -> str:
    """Wait for the run to end, check its exit code and the page's final status, and switch
    into the report frame the page then shows; returns the run's stdout."""
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    # The run is over: the page shows the final report it fetched before the server left.
    wait_for(
        lambda: driver.find_element("tag name", "body").get_attribute("data-final"),
        10,
        "the final report",
    )
    assert driver.find_element("id", "status").text == status
    driver.switch_to.frame(driver.find_element("id", "report"))
    return stdout


TICK = re.compile(r"(?P<number>\d+(?:\.\d+)?) (?P<unit>ms|%|/s|s)")


def assert_readable_axes(ticks: dict[str, dict[str, list[str]]]) -> None:
    """Every tick label is a round number with its unit: `250 ms`, `2.5 %`, `10 /s`, `4 s`."""
    for chart, axes in ticks.items():
        units = set()
        for axis, labels in axes.items():
            assert len(labels) >= 2, (chart, axis, labels)
            for label in labels:
                m = TICK.fullmatch(label)
                assert m, (chart, axis, label)
                digits = m["number"].replace(".", "").strip("0")
                assert len(digits) <= 2, f"{chart} {axis}: {label} is not a round value"
                units.add((axis, m["unit"]))
        assert len(units) == 2, (chart, units)  # one unit per axis


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_replay_dashboard_shows_progress_then_the_summary(
    loops: dict[str, Loop], tmp_path: Path
) -> None:
    log = ROOT / "simulator/scenarios/data/replay-sample.jsonl"
    args = ["replay", f"jsonl:{log}", "--speed", "20", "--loops", "4", "--measure", "--wait", "5"]
    with _web_run(loops, tmp_path, args) as (driver, proc, _):
        first = _first_points(driver)
        time.sleep(1.5)
        assert chart_points(driver)["rate"] > first["rate"]
        assert "replayed" in driver.find_element("id", "sources").text
        _end_report(driver, proc, "finished: DONE")
        body = driver.find_element("tag name", "body").text
        assert "finished" in body and "sent " in body and "recommendations " in body
        assert wait_for(lambda: chart_points(driver), 10, "the replay's charts")
        driver.switch_to.default_content()
        assert console_errors(driver) == []

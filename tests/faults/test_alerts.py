"""Every alert of prometheus/rules/recloop.yml fires under its fault, on a real Prometheus.

One stack on real Apache Kafka (the observability tests' helpers and the committed rules,
only `for:` shortened to 3 s in the test copy): several real `recloop worker` processes, each
with its own topics and Prometheus job, and real drivers, run at once:

| run | fault | alerts expected (only for its labels) |
| --- | --- | --- |
| healthy | none: a worker answering in ms, `recloop simulate` | none |
| slow | worker with 1.5 s `inject_delay_seconds` per batch, users' patience 1 s | RecLoopWorkerLatencySLOBurn, RecLoopUserLatencySLOBurn, RecLoopAbandonmentHigh |
| dlq | every message is malformed (invalid JSON, JSON that is no event) | RecLoopDeadLetterRateHigh |
| lagging | a worker slowed to 2 answers/s (2 s per batch of 4) while `recloop replay` sends 100 session starts/s | RecLoopConsumerLagGrowing |
| deaf | a misconfigured worker (`trigger_on: [request]`) consumes the session starts `recloop replay` sends and answers none | RecLoopNoRecommendations |
| killed | a worker SIGKILLed mid-run | RecLoopTargetDown |
| starved | `recloop simulate` with no recommender on its topics | RecLoopSimulatorStarved |

The dlq run found a rule bug: with no valid event at all the dead-letter ratio had no
denominator (no `recloop_worker_events_total` series), so a worker rejecting everything never
alerted; the rule now reads 1 then.

It also found a worker bug: with six workers starting at once, one dead-lettered every event
(its producer had never fetched the metadata of the table's changelog topic, which Faust
partitions without waiting); the dead-letter alert fired for that worker, as it should. The
worker now fetches that metadata before its first event, and this test starts its six workers
with no changelog topic created beforehand, as a user would.

Each alert is checked in Prometheus' own ALERTS series (firing, with the faulty run's labels),
and the healthy run's labels never appear in any alert expression while every process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recloop.brokers import free_port
from recloop.core.settings import Settings, WorkerConfig
from recloop.core.topics import ensure_topics
from tests.faults.faultlib import recloop, scrape
from tests.observability.promlib import Prometheus, alerting_prometheus, rule_queries
from tests.support import WorkerProcess, produce, unique_topics

# alone: the healthy run's users must get answers within 0.5 s; beside the other test process
# (training models, other workers) they did not, once in a fresh-clone run, and its latency SLO
# alert rightly returned a series.
pytestmark = [pytest.mark.kafka, pytest.mark.alone]

LOAD_SECONDS = 20
HEALTHY = "healthy"

EXPECTED: dict[str, set[str]] = {
    HEALTHY: set(),
    "slow": {"RecLoopWorkerLatencySLOBurn", "RecLoopUserLatencySLOBurn", "RecLoopAbandonmentHigh"},
    "dlq": {"RecLoopDeadLetterRateHigh"},
    "lagging": {"RecLoopConsumerLagGrowing"},
    "deaf": {"RecLoopNoRecommendations"},
    "killed": {"RecLoopTargetDown"},
    "starved": {"RecLoopSimulatorStarved"},
}

SCENARIO = """\
name: alerts-%(name)s
seed: 1
stages: [{kind: constant, rate: 4, duration: %(seconds)ss}]
population: {size: 300, source: world, world: {users: 300, items: 100, seed: 1}}
user: {patience: %(patience)ss, think_time: 0.3s, max_steps: 6}
recommendation_timeout: 3s
"""


@dataclass
class Run:
    """One fault (or the healthy run): its worker, its driver and its labels."""

    name: str
    settings: Settings
    worker: WorkerProcess | None
    run_id: str
    sim_port: int | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def job(self) -> str:
        return f"recloop-worker-{self.name}"

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.settings.worker.metrics_port}"

    def labels(self) -> set[tuple[str, str]]:
        """Label pairs that identify this run's series in any alert."""
        out = {("job", self.job), ("run_id", self.run_id), ("instance", self.instance)}
        if self.sim_port:
            out.add(("instance", f"127.0.0.1:{self.sim_port}"))
        return out


@dataclass
class Stack:
    prom: Prometheus
    runs: dict[str, Run]
    steady: float
    all_up_until: float


def _settings(bootstrap: str, name: str, tmp: Path, **worker: object) -> Settings:
    port = free_port()
    config: dict[str, object] = {
        "app_id": f"alerts-{name}-{port}",
        "strategy": "random",
        "model_dir": tmp / "no-model",
        "metrics_port": port,
        "data_dir": tmp / f"worker-{name}",
        "lag_interval_seconds": 0.5,
    }
    return Settings(
        bootstrap=bootstrap,
        topics=unique_topics(f"al-{name}"),
        worker=WorkerConfig(**(config | worker)),  # type: ignore[arg-type]
    )


def _wait_ready(run: Run, timeout: float = 120.0) -> None:
    assert run.worker is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.worker.alive(), f"{run.name} worker died:\n{run.worker.log()[-3000:]}"
        with contextlib.suppress(OSError):
            text = scrape(run.settings.worker.metrics_port)
            if any(
                line.startswith("recloop_worker_assigned_partitions ") and float(line.split()[1])
                for line in text.splitlines()
            ):
                return
        time.sleep(0.5)
    raise AssertionError(f"{run.name} worker not ready:\n{run.worker.log()[-3000:]}")


def _simulate(run: Run, tmp: Path, patience: float) -> subprocess.Popen[bytes]:
    scenario = tmp / f"{run.name}.yaml"
    scenario.write_text(
        SCENARIO % {"name": run.name, "seconds": LOAD_SECONDS, "patience": patience}
    )
    args = ["simulate", str(scenario), "--no-live", "--out", str(tmp / f"{run.name}-report")]
    args += ["--run-id", run.run_id, "--metrics-port", str(run.sim_port)]
    return recloop(args, run.settings, tmp / f"{run.name}-driver.log")


def _replay_flood(run: Run, tmp: Path, rate: float) -> subprocess.Popen[bytes]:
    """`recloop replay` of session starts at `rate`/s for the run's length."""
    log = tmp / f"{run.name}.jsonl"
    with log.open("w") as f:
        for n in range(int(rate * LOAD_SECONDS)):
            row = {"user_id": f"u{n}", "event_type": "session_start", "event_time": n / rate}
            f.write(json.dumps(row) + "\n")
    args = ["replay", f"jsonl:{log}", "--timestamps", "shift", "--run-id", run.run_id]
    return recloop(args, run.settings, tmp / f"{run.name}-driver.log")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited {proc.returncode}"
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{proc.args}: no metrics on :{port} after {timeout}s")


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("alerts")
    specs: dict[str, dict[str, object]] = {
        HEALTHY: {},
        "slow": {"inject_delay_seconds": 1.5},
        "dlq": {},
        "lagging": {"inject_delay_seconds": 2.0, "batch_size": 4},
        "deaf": {"trigger_on": ["request"]},
        "killed": {},
        "starved": {},
    }
    runs: dict[str, Run] = {}
    for name, worker in specs.items():
        settings = _settings(kafka.bootstrap, name, tmp, **worker)
        # The contract's topics (the starved run has no worker to create them); not the
        # table's changelog topic, which each worker creates at start-up.
        asyncio.run(ensure_topics(settings))
        wp = None if name == "starved" else WorkerProcess(settings)
        sim_port = free_port() if name in (HEALTHY, "slow", "starved") else None
        runs[name] = Run(name, settings, wp, f"al-{name}-{uuid.uuid4().hex[:6]}", sim_port)
    workers = [r for r in runs.values() if r.worker is not None]
    scrape_configs = [
        {"job_name": r.job, "static_configs": [{"targets": [r.instance]}]} for r in workers
    ] + [
        {
            "job_name": "recloop-simulator",
            "static_configs": [
                {"targets": [f"127.0.0.1:{r.sim_port}" for r in runs.values() if r.sim_port]}
            ],
        }
    ]
    prom = alerting_prometheus(tmp, scrape_configs)
    try:
        for r in workers:
            assert r.worker is not None
            r.worker.start()
        prom.start()
        for r in workers:
            _wait_ready(r)
        runs[HEALTHY].procs.append(_simulate(runs[HEALTHY], tmp, patience=2.0))
        runs["slow"].procs.append(_simulate(runs["slow"], tmp, patience=1.0))
        runs["starved"].procs.append(_simulate(runs["starved"], tmp, patience=1.0))
        runs["lagging"].procs.append(_replay_flood(runs["lagging"], tmp, rate=100.0))
        runs["deaf"].procs.append(_replay_flood(runs["deaf"], tmp, rate=10.0))
        for r in runs.values():
            if r.sim_port:
                _wait_for_port(r.sim_port, r.procs[0])
        # Alerts are judged from here: every driver serves metrics and has been scraped.
        steady = time.time() + 2
        dlq = runs["dlq"].settings.topics.events
        started = time.monotonic()
        killed = False
        all_up_until: float | None = None
        drivers = [p for r in runs.values() for p in r.procs]
        while any(p.poll() is None for p in drivers):
            if all_up_until is None and any(p.poll() is not None for p in drivers):
                all_up_until = time.time() - 1  # the last scrape that saw every driver up
            # Only malformed input for the dlq worker: invalid JSON, and JSON that is no event.
            bad = [(f"k{i}".encode(), b"{not json") for i in range(8)]
            asyncio.run(produce(kafka.bootstrap, dlq, [*bad, (b"k", b"[]")]))
            if not killed and time.monotonic() - started > 5:
                worker = runs["killed"].worker
                assert worker is not None
                worker.kill()
                killed = True
            time.sleep(0.5)
        for r in runs.values():
            for p in r.procs:
                log = (tmp / f"{r.name}-driver.log").read_text(errors="replace")
                assert p.wait() in (0, 1), f"{r.name} driver exited {p.returncode}:\n{log[-3000:]}"
        time.sleep(3)  # the last evaluations
        yield Stack(prom, runs, steady, all_up_until or time.time())
    finally:
        for r in runs.values():
            for p in r.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        # Stopped together: each Faust worker takes seconds to shut down.
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(lambda r: r.worker.stop(), workers))  # type: ignore[union-attr]
        prom.stop()


def _fired(stack: Stack, alert: str, end: float | None = None) -> list[dict[str, str]]:
    """Label sets of `alert` that were firing at some point of the run (until `end`)."""
    series = stack.prom.query_range(
        f'ALERTS{{alertname="{alert}", alertstate="firing"}}', stack.steady, end or time.time()
    )
    return [s["metric"] for s in series]


ALERT_RUNS = [(alert, name) for name, alerts in EXPECTED.items() for alert in sorted(alerts)]


@pytest.mark.parametrize(("alert", "run"), ALERT_RUNS, ids=[f"{a}-{r}" for a, r in ALERT_RUNS])
def test_alert_fires_under_its_fault(stack: Stack, alert: str, run: str) -> None:
    fired = _fired(stack, alert)
    faulty = stack.runs[run].labels()
    assert any(set(labels.items()) & faulty for labels in fired), (
        f"{alert} did not fire for the {run} run; firing for: {fired}"
    )


def test_every_alert_has_a_fault() -> None:
    alerts = {r.name for r in rule_queries() if r.kind == "alert"}
    assert alerts == {a for a, _ in ALERT_RUNS}


def test_no_alert_for_the_healthy_run(stack: Stack) -> None:
    healthy = stack.runs[HEALTHY].labels()
    for rule in rule_queries():
        if rule.kind != "alert":
            continue
        for series in stack.prom.query_range(rule.expr, stack.steady, stack.all_up_until):
            labels = set(series["metric"].items())
            assert not labels & healthy, f"{rule.name} returned {labels} for the healthy run"
        # Until every process ended: a finished driver's target is rightly down afterwards.
        for labels in _fired(stack, rule.name, stack.all_up_until):
            assert not set(labels.items()) & healthy, f"{rule.name} fired: {labels}"

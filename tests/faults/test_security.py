"""Security on real Apache Kafka: SASL/SCRAM-SHA-512 over TLS and TLS client authentication.

The broker (started here, with a CA and certificates made by `openssl` for this session) has a
SASL_SSL listener and an MTLS listener (SSL, client certificate required). `recloop worker`,
`simulate`, `record` and `replay` run on each with the RECLOOP_SECURITY__* settings a user
sets; wrong credentials and untrusted certificates must end in one line and exit 3 within a
bounded time; the password must not appear in anything the commands produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop.brokers import ApacheKafkaBroker, free_port
from recloop.core.contract import encode
from recloop.core.settings import KafkaSecurity, Settings, Strategy, WorkerConfig, settings_env
from recloop.processes import wait_for_recommender
from recloop.simulator.replay.recording import Header, Record, RecordingWriter
from tests.faults.security_support import PASSWORD, USER, Pki, make_pki, secure_kafka
from tests.support import ROOT, WorkerProcess, make_events, require_tool, run_recloop, unique_topics

COMMAND_SECONDS = 45
"""A failing connection ends in about 3 s alone; this bound leaves room for a loaded machine
(a start-up of the CLI under load) while a retry loop or a hang still hits it and fails."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_broker(pki: Pki) -> Iterator[ApacheKafkaBroker]:
    require_tool("java")
    require_tool("mvn")
    broker = secure_kafka(pki)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _security(pki: Pki, listener: str, **changes: object) -> KafkaSecurity:
    if listener == "SASL_SSL":
        sec = KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=USER,
            sasl_password=PASSWORD,
            ssl_cafile=pki.ca,
        )
    else:
        sec = KafkaSecurity(
            protocol="SSL",
            ssl_cafile=pki.ca,
            ssl_certfile=pki.client_cert,
            ssl_keyfile=pki.client_key,
        )
    return sec.model_copy(update=changes)


def _settings(broker: ApacheKafkaBroker, security: KafkaSecurity, **kw: object) -> Settings:
    return Settings(
        bootstrap=broker.listener_bootstrap("SASL_SSL" if security.sasl_mechanism else "MTLS"),
        security=security,
        **kw,  # type: ignore[arg-type]
    )


def _env(settings: Settings) -> dict[str, str]:
    """The environment a user sets: RECLOOP_BOOTSTRAP, RECLOOP_SECURITY__*, RECLOOP_TOPICS__*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    return clean | settings_env(settings)


@pytest.mark.parametrize("listener", ["SASL_SSL", "MTLS"])
def test_every_command_runs_on_the_secured_listener_and_never_shows_the_password(
    secure_broker: ApacheKafkaBroker, pki: Pki, tmp_path: Path, listener: str
) -> None:
    metrics_port = free_port()
    settings = _settings(
        secure_broker,
        _security(pki, listener),
        topics=unique_topics("sec"),
        worker=WorkerConfig(
            strategy=Strategy.RANDOM, metrics_port=metrics_port, data_dir=tmp_path / "worker"
        ),
    )
    env = _env(settings)
    worker = WorkerProcess(settings).start()
    outputs: dict[str, str] = {}
    try:
        asyncio.run(wait_for_recommender(settings, timeout=60))
        report = tmp_path / "report"
        # 12 s: several scrapes (each may wait 5 s) on a machine busy starting brokers.
        sim, outputs["simulate /metrics"] = _run_scraping(
            ["simulate", "--duration", "12", "--rate", "5", "--no-live", "--out", str(report)],
            env,
        )  # fmt: skip
        assert sim.returncode in (0, 1), sim.stdout + sim.stderr  # 1: a latency threshold
        assert "recloop_sim_" in outputs["simulate /metrics"], (
            f"no metrics page read from the simulator while it ran:\n{sim.stderr[-3000:]}"
        )
        recording = tmp_path / "events.rec.zst"
        rec = run_recloop(
            "record", str(recording), "-t", settings.topics.events, "--idle-seconds", "2",
            env=env, timeout=60,
        )  # fmt: skip
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert " records" in rec.stdout + rec.stderr
        rep = run_recloop(
            "replay", str(recording), "--speed", "max", "--measure", "--wait", "10",
            "--metrics-port", "0", env=env, timeout=90,
        )  # fmt: skip
        assert rep.returncode in (0, 1), rep.stdout + rep.stderr
        assert "sent " in rep.stdout + rep.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            outputs["worker /metrics"] = r.read().decode()
        assert "recloop_worker_recommendations_total" in outputs["worker /metrics"]
        for name, proc in {"simulate": sim, "record": rec, "replay": rep}.items():
            outputs[f"{name} stdout"], outputs[f"{name} stderr"] = proc.stdout, proc.stderr
        for path in sorted(report.iterdir()):
            outputs[str(path.name)] = path.read_text(errors="replace")
        assert {"summary.json", "report.html"} <= set(outputs)
    finally:
        worker.stop()
    outputs["worker log"] = worker.log()
    assert "Traceback" not in outputs["worker log"], outputs["worker log"][-3000:]
    leaks = [name for name, text in outputs.items() if PASSWORD in text]
    assert leaks == [], f"the password appears in {leaks}"
    if listener == "MTLS":
        key = pki.client_key.read_text().splitlines()[1]
        assert [name for name, text in outputs.items() if key in text] == []


def _run_scraping(
    args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a command with `--metrics-port`, reading its /metrics while it runs; returns it and
    the last page read. A port taken between choosing and binding it (by another test's
    connection: free ports are ephemeral ports) gets the run repeated on another port."""
    for _ in range(3):
        port = free_port()
        proc, page = _scraped([*args, "--metrics-port", str(port)], port, env)
        if f"metrics port {port} unavailable" not in proc.stderr:
            break
    return proc, page


def _scraped(
    args: list[str], port: int, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recloop", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    page = ""
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        url = f"http://127.0.0.1:{port}/metrics"
        # Generous: at the start of a parallel test run two Kafka JVMs start beside it.
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as r:
            page = r.read().decode()
        time.sleep(0.3)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), page


BAD = {
    "wrong password": ("SASL_SSL", {"sasl_password": "not-the-password"}, "authentication failed"),
    "unknown user": ("SASL_SSL", {"sasl_username": "mallory"}, "authentication failed"),
    "untrusted broker": ("SASL_SSL", {"ssl_cafile": "rogue_ca"}, "certificate verify failed"),
    "untrusted client": (
        "MTLS",
        {"ssl_certfile": "rogue_client_cert", "ssl_keyfile": "rogue_client_key"},
        "client certificate",
    ),
    "no client certificate": (
        "MTLS",
        {"ssl_certfile": None, "ssl_keyfile": None},
        "client certificate",
    ),
}


def _recording(path: Path) -> None:
    """A valid recording of a few events, so replay gets as far as connecting."""
    events = make_events(2, 3)
    with RecordingWriter(path, Header(created=time.time(), topics=["recloop.events"])) as writer:
        for i, e in enumerate(events):
            writer.write(Record.of("recloop.events", 0, i, 1000 * i, e.user_id.encode(), encode(e)))


def _command(name: str, tmp_path: Path) -> list[str]:
    recording = tmp_path / "in.rec.zst"
    if name == "replay":
        _recording(recording)
    return {
        "worker": ["worker", "--strategy", "random", "--metrics-port", "0"],
        "simulate": ["simulate", "--duration", "2", "--no-live", "--metrics-port", "0"],
        "record": ["record", str(tmp_path / "out.rec.zst"), "-t", "recloop.events"],
        "replay": ["replay", str(recording), "--speed", "max", "--topic", "recloop.events"],
    }[name]


@pytest.mark.parametrize("command", ["worker", "simulate", "record", "replay"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_credentials_end_in_one_line_and_exit_3(
    secure_broker: ApacheKafkaBroker, pki: Pki, tmp_path: Path, case: str, command: str
) -> None:
    listener, changes, says = BAD[case]
    changes = {
        k: getattr(pki, v) if isinstance(v, str) and hasattr(pki, v) else v
        for k, v in changes.items()
    }
    settings = _settings(secure_broker, _security(pki, listener, **changes))
    env = _env(settings) | {"RECLOOP_WORKER__DATA_DIR": str(tmp_path / "worker")}
    started = time.monotonic()
    proc = run_recloop(*_command(command, tmp_path), env=env, timeout=COMMAND_SECONDS)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    # One error line, last; before it only what the command says when it starts (replay names
    # its source), never a client library's log line or a traceback.
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("cannot connect to Kafka at " + settings.bootstrap), proc.stderr
    assert says in error.lower(), error
    assert "Unable connect" not in output and "Traceback" not in output, output
    assert PASSWORD not in output and "not-the-password" not in output
    assert elapsed < COMMAND_SECONDS


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RECLOOP_SECURITY__SSL_CAFILE", "/nonexistent/ca.pem", "security.ssl_cafile"),
        ("RECLOOP_SECURITY__PROTOCOL", "SASL_TLS", "security.protocol"),
        ("RECLOOP_SECURITY__SSL_CAFILE", "/etc/hostname", "not a PEM CA certificate"),
        ("RECLOOP_SECURITY__SASL_USERNAME", "", "non-empty sasl_username"),
        ("RECLOOP_SECURITY__SASL_MECHANISM", "GSSAPI", "security.sasl_mechanism"),
    ],
)
def test_bad_security_setting_exits_2_naming_the_key(
    secure_broker: ApacheKafkaBroker, pki: Pki, variable: str, value: str, says: str
) -> None:
    settings = _settings(secure_broker, _security(pki, "SASL_SSL"))
    env = _env(settings) | {variable: value}
    proc = run_recloop(
        "simulate",
        "--duration",
        "1",
        "--no-live",
        "--metrics-port",
        "0",
        env=env,
        timeout=COMMAND_SECONDS,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr

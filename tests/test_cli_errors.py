"""One error hierarchy and one exit-code map (README, "Exit codes").

Every project exception derives from `RecLoopError` and carries its command exit code; the
CLI's one handler prints it as one line. Checked on the classes, through typer's `CliRunner`,
and as a user runs the commands (subprocesses, unreachable broker at 127.0.0.1:1).
"""

from __future__ import annotations

import ast
import builtins
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recloop.cli import app
from recloop.cli.app import RecLoopGroup, main
from recloop.core.errors import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INVALID,
    CheckFailedError,
    InvalidInputError,
    RunError,
)
from tests.support import run_recloop

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["recloop", "streams", "models", "simulator"]
UNREACHABLE = "127.0.0.1:1"

BAD_INPUT = {
    "recloop.core.settings": ["ConfigError"],
    "recloop.core.contract": ["ContractError"],
    "recloop.models.data.schema": ["DataError", "EmptyDataError"],
    "recloop.models.runtime.card": ["ModelLoadError"],
    "recloop.streams.strategies": ["StrategyError"],
    "recloop.simulator.scenario": ["ScenarioError"],
    "recloop.simulator.thresholds": ["ThresholdError"],
    "recloop.simulator.population": ["PopulationError"],
    "recloop.simulator.replay.recording": [
        "RecordingError",
        "MalformedRecordError",
        "TruncatedRecordingError",
    ],
    "recloop.simulator.replay.sources": ["ReplayInputError"],
}
COULD_NOT_RUN = {
    "recloop.core.topics": ["TopicError"],
    "recloop.brokers": ["BrokerError"],
    "recloop.processes": ["WorkerNotReady"],
    "recloop.cli.demo": ["DemoError"],
    "recloop.simulator.runner": ["SimulationError"],
    "recloop.simulator.replay.replayer": ["ReplayError"],
    "recloop.simulator.replay.capture": ["RecordError"],
}
# Callers catch ValueError for these (pydantic validators, msgspec hooks, parsing helpers), so
# they (and their subclasses) keep it as a second base.
STILL_VALUE_ERRORS = {
    "ConfigError",
    "ContractError",
    "DataError",
    "ScenarioError",
    "ThresholdError",
    "RecordingError",
    "ReplayInputError",
}


def _classes(table: dict[str, list[str]]) -> list[type]:
    import importlib

    return [getattr(importlib.import_module(m), n) for m, names in table.items() for n in names]


@pytest.mark.parametrize(
    ("table", "base", "code"),
    [(BAD_INPUT, InvalidInputError, EXIT_INVALID), (COULD_NOT_RUN, RunError, EXIT_ERROR)],
)
def test_each_error_has_its_kind_and_exit_code(table, base, code) -> None:
    for cls in _classes(table):
        assert issubclass(cls, base), cls
        assert cls.exit_code == code, cls
        if cls.__name__ in STILL_VALUE_ERRORS:
            assert issubclass(cls, ValueError), cls


def test_no_project_exception_bypasses_the_hierarchy() -> None:
    """Every exception class in the project reaches RecLoopError through its first base.

    A class deriving straight from a builtin exception would end in a traceback, not in one
    line and its exit code. Read with `ast`, so no module (Faust app, TensorFlow) is imported.
    """
    builtin = {
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    first_base: dict[str, str] = {}
    where: dict[str, str] = {}
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and node.bases:
                    base = node.bases[0]
                    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                    first_base[node.name] = name
                    where[node.name] = str(path.relative_to(ROOT))

    def chain(name: str) -> list[str]:
        seen = [name]
        while seen[-1] in first_base and seen[-1] != "RecLoopError" and len(seen) < 20:
            seen.append(first_base[seen[-1]])
        return seen

    offenders = [
        f"{where[name]}: {' -> '.join(chain(name))}"
        for name in first_base
        if chain(name)[-1] in builtin and name != "RecLoopError"
    ]
    assert offenders == [], offenders
    for names in (*BAD_INPUT.values(), *COULD_NOT_RUN.values()):
        for name in names:
            assert chain(name)[-1] == "RecLoopError", chain(name)


def test_the_handler_maps_each_kind_to_one_line_and_its_code() -> None:
    demo = typer.Typer(cls=RecLoopGroup)

    @demo.command()
    def fail(kind: str) -> None:
        raise {"invalid": InvalidInputError, "check": CheckFailedError, "run": RunError}[kind](
            f"{kind} went wrong; do this"
        )

    @demo.command()
    def ok() -> None:
        pass

    runner = CliRunner()
    for kind, code in (("invalid", EXIT_INVALID), ("check", EXIT_FAILED), ("run", EXIT_ERROR)):
        result = runner.invoke(demo, ["fail", kind])
        assert result.exit_code == code, result.output
        assert result.stderr == f"{kind} went wrong; do this\n"
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert runner.invoke(demo, ["ok"]).exit_code == 0


def _one_line(result_stderr: str) -> str:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert "Traceback" not in result_stderr, result_stderr
    assert len(lines) == 1, result_stderr
    return lines[0]


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    noise = tmp_path / "noise.rec.zst"
    noise.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\nstages: []\n")
    summary = tmp_path / "summary.json"
    summary.write_text("{")
    cases = {
        "no such data": (["data", "movielens:/nonexistent"], "no such file"),
        "no models": (["evaluate", "--model-dir", "/nonexistent"], "no card.json"),
        "not a recording": (["replay", str(noise), "--dry-run"], "not a RecLoop recording"),
        "bad scenario": (["simulate", str(empty), "--no-live", "--metrics-port", "0"], "stages"),
        "bad summary": (["report", str(summary)], "cannot read summaries"),
    }
    for name, (args, needle) in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_INVALID, (name, result.output)
        assert needle in result.stderr, (name, result.stderr)
    assert "truncated" not in runner.invoke(app, ["replay", str(noise), "--dry-run"]).stderr
    assert runner.invoke(app, ["worker", "--strategy", "magic"]).exit_code == 2  # usage error


def test_main_is_the_entry_point(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["recloop", "data", "movielens:/nonexistent"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_INVALID


def _recloop(*args: str) -> subprocess.CompletedProcess[str]:
    # PYTHONWARNINGS: show ResourceWarnings too (aiokafka warns "Unclosed ..." with them).
    return run_recloop(*args, timeout=120, env={**os.environ, "PYTHONWARNINGS": "default"})


def test_worker_without_models_is_one_line_exit_2() -> None:
    proc = _recloop(
        "worker", "--strategy", "onnx", "--model-dir", "/nonexistent", "--bootstrap", UNREACHABLE
    )
    assert proc.returncode == EXIT_INVALID, proc.stderr
    line = _one_line(proc.stderr)
    assert "strategy 'onnx' needs a trained model directory" in line and "recloop train" in line


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--duration", "2", "--rate", "2", "--no-live", "--metrics-port", "0"],
        ["record", "unreached.rec.zst", "--max-seconds", "1"],
        ["replay", "jsonl:simulator/scenarios/data/replay-sample.jsonl", "--speed", "max"],
    ],
    ids=["simulate", "record", "replay"],
)
def test_unreachable_broker_exits_3_and_closes_its_clients(args: list[str], tmp_path) -> None:
    if args[0] == "record":
        args = ["record", str(tmp_path / args[1]), *args[2:]]
    proc = _recloop(*args, "--bootstrap", UNREACHABLE)
    assert proc.returncode == EXIT_ERROR, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Unclosed" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"cannot reach Kafka at {UNREACHABLE}" in last, proc.stderr

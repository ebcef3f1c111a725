"""The README's benchmark table and capacity figures are what `scripts/bench_table.py`
generates from the committed result files (benchmarks/results/*.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_table():  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location(
        "bench_table", ROOT / "scripts" / "bench_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_the_committed_results() -> None:
    table = bench_table()
    readme = (ROOT / "README.md").read_text()
    assert table.generated(readme) == readme, "run .venv/bin/python scripts/bench_table.py"


def test_every_row_names_an_existing_result_file() -> None:
    table = bench_table()
    rows = [
        line for line in table.render().splitlines() if line.startswith("| ") and ".json" in line
    ]
    files = {p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert rows, "no benchmark results are committed"
    for row in rows:
        assert row.rsplit("`", 2)[1] in files, row


def test_the_newest_file_wins_per_benchmark(tmp_path: Path) -> None:
    table = bench_table()
    old = {"benchmarks": {"replay": {"x": 1}, "simulator": {"x": 1}}}
    new = {"benchmarks": {"replay": {"x": 2}}}
    (tmp_path / "20260101T000000Z-a.json").write_text(json.dumps(old))
    (tmp_path / "20260102T000000Z-b.json").write_text(json.dumps(new))
    found = table.newest(tmp_path)
    assert found["replay"][0] == "20260102T000000Z-b.json"
    assert found["simulator"][0] == "20260101T000000Z-a.json"


def _worker_result(**extra: object) -> dict:
    """A `bench_worker` result as an older file holds it (worker and passthrough only)."""
    kind = {"events_per_s": 1000.0, "cpu_us_per_event": 200.0, "latency": {}}
    passthrough = {"events_per_s": 40000.0, "cpu_us_per_event": 10.0, "latency": {}}
    worker = {
        "worker": kind,
        "passthrough": passthrough,
        "ratio_to_passthrough": 0.025,
        "cpu_ratio_to_passthrough": 20.0,
    }
    worker.update(extra)
    return {
        "load_average_before": [1.0],
        "load_average_after": [1.0],
        "benchmarks": {"worker": worker},
    }


def test_an_older_worker_file_says_the_new_baselines_were_not_measured(tmp_path: Path) -> None:
    table = bench_table()
    (tmp_path / "20260101T000000Z-a.json").write_text(json.dumps(_worker_result()))
    rendered = table.render(tmp_path)
    for what in ("Faust agent passthrough", "worker, random strategy"):
        row = next(line for line in rendered.splitlines() if what in line)
        assert "not measured in this file" in row
    assert "taken apart" not in rendered
    assert "Faust's floor" not in table.capacity(tmp_path)


def test_the_worker_cost_is_taken_apart_when_measured(tmp_path: Path) -> None:
    table = bench_table()
    result = _worker_result(
        faust_passthrough={"events_per_s": 5000.0, "cpu_us_per_event": 120.0, "latency": {}},
        worker_random={"events_per_s": 1500.0, "cpu_us_per_event": 190.0, "latency": {}},
        faust_passthrough_ratio_to_passthrough=0.125,
        faust_passthrough_cpu_ratio_to_passthrough=12.0,
        worker_random_ratio_to_passthrough=0.0375,
        worker_random_cpu_ratio_to_passthrough=19.0,
        ranking={"batch": 64},
        decomposition={
            "inference_us_per_event": 10.0,
            "random_strategy_us_per_event": 50.0,
            "onnx_strategy_us_per_event": 55.0,
            "inference_us_per_event_net_of_random": 60.0,
            "faust_floor_us_per_event": 120.0,
            "pipeline_us_per_event": 20.0,
        },
    )
    (tmp_path / "20260101T000000Z-a.json").write_text(json.dumps(result))
    rendered = table.render(tmp_path)
    assert "12.0x the passthrough's CPU per event" in rendered
    assert "200 µs = 120 (Faust agent passthrough) + 20 (" in rendered
    assert "Faust's floor**: a Faust agent" in table.capacity(tmp_path)

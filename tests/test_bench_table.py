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

"""`recloop compare`: two or more runs side by side, with regression gates for CI.

Exit codes (README, "Exit codes"): 0 every gate passed (or none was given), 1 a gate failed,
2 a gate could not be parsed or a summary could not be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recloop.core.errors import EXIT_FAILED, EXIT_OK, InvalidInputError


def register(app: typer.Typer) -> None:
    """Add `recloop compare` to the CLI."""
    app.command()(compare)


def compare(
    summaries: Annotated[
        list[Path], typer.Argument(help="summary.json of each run; the first is the baseline")
    ],
    out: Annotated[Path, typer.Option(help="Directory for compare.html and compare.json")] = Path(
        "reports/compare"
    ),
    fail_if: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-if",
            help="Exit 1 on this regression against the baseline, e.g. 'p99 latency +10%', "
            "'ctr -5%', 'abandonment +2pp' (repeatable)",
        ),
    ] = None,
) -> None:
    """Compare runs side by side (figures, changes, overlaid charts) and gate regressions."""
    from recloop.simulator.compare import compare as compare_runs
    from recloop.simulator.compare import labels_of, parse_gate, terminal_lines, write_comparison
    from recloop.simulator.report import Summary

    gates = [parse_gate(g) for g in fail_if or []]  # bad syntax: one line, exit 2
    if len(summaries) < 2:
        raise InvalidInputError("compare needs two or more summary.json files (baseline first)")
    runs = []
    for p in summaries:
        try:
            runs.append(Summary.from_json(p.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidInputError(f"cannot read summary {p}: {exc}") from None
    result = compare_runs(runs, labels_of(runs, summaries), gates)
    path = write_comparison(result, out)
    for line in terminal_lines(result):
        typer.echo(line)
    typer.echo(f"comparison: {path}")
    raise typer.Exit(EXIT_OK if result.passed else EXIT_FAILED)

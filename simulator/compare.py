"""Side-by-side comparison of runs (`recloop compare`) and regression gates (`--fail-if`).

The first summary is the baseline; every other run is compared with it: key figures with
their change and whether the change is better or worse, overlaid latency CDFs and time series
(`web/charts.py`, drawn by the shared `charts.js`), and gates. A gate names a figure as a
threshold does and the regression that fails it:

    p99 latency +10%     fails when p99 latency rose by more than 10 % of the baseline's
    ctr -5%              fails when CTR fell by more than 5 % (relative)
    abandonment +2pp     fails when abandonment rose by more than 2 percentage points
    p99 latency +50ms    fails when p99 latency rose by more than 50 ms

A figure missing in either run fails its gate: a gate that cannot be checked does not pass.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from recloop.simulator.figures import figure
from recloop.simulator.report import KEY_FIGURES, Summary
from recloop.simulator.stats import RunStats
from recloop.simulator.thresholds import (
    LATENCY_METRICS,
    RATIO_METRICS,
    ThresholdError,
    figure_key,
    unit_of,
)
from recloop.simulator.web.charts import compare_specs, inline_assets, render_script

GATE_FORMS = "'p99 latency +10%', 'ctr -5%', 'abandonment +2pp', 'p99 latency +50ms'"
_GATE = re.compile(
    r"^\s*(?:(?P<stat>p\d+(?:\.\d+)?|mean|max)\s+)?(?P<metric>[a-z_]+)\s+"
    r"(?P<sign>[+-])\s*(?P<value>[0-9]*\.?[0-9]+)\s*(?P<unit>%|ms|s|pp)?\s*$"
)

LOWER_IS_BETTER = (
    "latency",
    "actual_latency",
    "schedule_lag",
    "abandonment",
    "timeout_rate",
    "late_send_rate",
    "error_rate",
    "gini",
)
HIGHER_IS_BETTER = (
    "ctr",
    "conversion",
    "return_rate",
    "hit_rate",
    "coverage",
    "session_depth",
    "achieved_rate",
    "novelty",
)


class GateError(ThresholdError):
    """A `--fail-if` gate could not be parsed (exit 2); the message shows the accepted forms."""


def better_when(key: str) -> Literal["lower", "higher", ""]:
    """Which direction of a figure's change is an improvement ("" when neither)."""
    metric = key.split(".", 1)[0]
    if metric in LOWER_IS_BETTER:
        return "lower"
    return "higher" if metric in HIGHER_IS_BETTER else ""


@dataclass(frozen=True, slots=True)
class Gate:
    """One parsed gate: fail when `key` moves in `sign`'s direction by more than `limit`."""

    text: str
    key: str
    sign: int
    limit: float
    relative: bool
    """`limit` is a share of the baseline's value; else an absolute change in base units."""


@dataclass(frozen=True, slots=True)
class GateResult:
    """A gate checked for one run against the baseline."""

    gate: str
    run: str
    baseline: str
    value: str
    change: str
    passed: bool


def parse_gate(text: str) -> Gate:
    """Parse one `--fail-if` expression; raises `GateError` with the accepted forms."""
    m = _GATE.match(text.lower())
    if not m:
        raise GateError(
            f"cannot parse gate {text!r}; write METRIC +/-CHANGE like {GATE_FORMS} "
            "(+ fails on a rise, - on a fall)"
        )
    stat, metric, unit = m["stat"], m["metric"], m["unit"]
    try:
        key = figure_key(stat, metric, text, what="gate")
    except ThresholdError as exc:
        raise GateError(str(exc)) from None
    value = float(m["value"])
    sign = 1 if m["sign"] == "+" else -1
    if unit == "%":
        return Gate(text, key, sign, value / 100, relative=True)
    if unit in ("ms", "s"):
        if metric not in LATENCY_METRICS:
            raise GateError(f"gate {text!r}: {metric} is not a duration; use % or pp")
        return Gate(text, key, sign, value / 1000 if unit == "ms" else value, relative=False)
    if unit == "pp":
        if metric not in RATIO_METRICS:
            raise GateError(f"gate {text!r}: pp (percentage points) is for ratios like ctr")
        return Gate(text, key, sign, value / 100, relative=False)
    if metric in LATENCY_METRICS:
        raise GateError(f"gate {text!r}: give the change in % of the baseline, ms or s")
    return Gate(text, key, sign, value, relative=False)


def change(base: float, value: float, relative: bool) -> float:
    """`value` - `base`, as a share of `base` when `relative` (inf when base is 0)."""
    if math.isinf(base) and math.isinf(value):
        return 0.0  # both unanswered: no measurable change
    delta = value - base
    if not relative:
        return delta
    if base == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / abs(base)


def format_change(key: str, base: float, value: float, relative: bool = True) -> str:
    """A change for people: `+12.5 %` relative, or in the figure's unit (ms, pp)."""
    c = change(base, value, relative)
    if math.isinf(c):
        return "+∞" if c > 0 else "−∞"
    if relative:
        return f"{c * 100:+.1f} %"
    unit = unit_of(key)
    if unit == "ms":
        return f"{c * 1000:+.1f} ms"
    if unit == "%":
        return f"{c * 100:+.2f} pp"
    return f"{c:+.4g}"


def check_gate(gate: Gate, run: str, base: Summary, other: Summary) -> GateResult:
    """Whether `other` regressed against `base` by more than `gate` allows."""
    b, v = base.figures.get(gate.key), other.figures.get(gate.key)
    unit = unit_of(gate.key)
    if b is None or v is None:
        where = "the baseline" if b is None else run
        return GateResult(
            gate.text, run, figure(b, unit), figure(v, unit), f"not measured in {where}", False
        )
    c = change(b, v, gate.relative)
    return GateResult(
        gate.text,
        run,
        figure(b, unit),
        figure(v, unit),
        format_change(gate.key, b, v, gate.relative),
        not gate.sign * c > gate.limit,
    )


@dataclass(slots=True)
class Comparison:
    """Runs (the first is the baseline), their labels, and the gates checked."""

    labels: list[str]
    runs: list[Summary]
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def labels_of(runs: list[Summary], paths: list[Path]) -> list[str]:
    """A short, unique name per run: its directory's name (the run id by default)."""
    names = [p.parent.name or s.run_id for s, p in zip(runs, paths, strict=True)]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def compare(runs: list[Summary], labels: list[str], gates: list[Gate]) -> Comparison:
    """Check every gate for every run after the first, against the first."""
    base = runs[0]
    results = [
        check_gate(g, label, base, run)
        for label, run in zip(labels[1:], runs[1:], strict=True)
        for g in gates
    ]
    return Comparison(labels, runs, results)


def verdict(better: str, key: str, base: float | None, value: float | None) -> str:
    """`better`, `worse` or `same` for a figure's change ("" when it cannot be judged)."""
    if base is None or value is None or not better or base == value:
        return "same" if base == value and base is not None else ""
    rising = change(base, value, relative=False) > 0
    return "better" if rising == (better == "higher") else "worse"


def figure_rows(c: Comparison) -> list[dict[str, Any]]:
    """The key figures of every run, with change and direction against the baseline."""
    rows = []
    base = c.runs[0]
    for label, key, kind in KEY_FIGURES:
        b = base.figures.get(key)
        better = better_when(key)
        cells = [{"value": figure(b, kind)}]
        for run in c.runs[1:]:
            v = run.figures.get(key)
            cells.append(
                {
                    "value": figure(v, kind),
                    "change": "" if b is None or v is None else format_change(key, b, v),
                    "verdict": verdict(better, key, b, v),
                }
            )
        rows.append({"figure": label, "better": better, "cells": cells})
    return rows


def terminal_lines(c: Comparison) -> list[str]:
    """What `recloop compare` prints: the gates (aligned), or the headline changes."""
    lines = []
    if c.gates:
        width = max(len(g.gate) for g in c.gates)
        for g in c.gates:
            mark = "✓" if g.passed else "✗"
            lines.append(
                f"{mark} {g.gate:<{width}}  {g.run}: {g.baseline} → {g.value} ({g.change})"
            )
        return lines
    head = {"p99 latency (intended)", "achieved event rate (/s)", "CTR", "abandonment"}
    rows = [r for r in figure_rows(c) if r["figure"] in head]
    width = max(len(r["figure"]) for r in rows)
    for r in rows:
        for label, cell in zip(c.labels[1:], r["cells"][1:], strict=True):
            lines.append(
                f"{r['figure']:<{width}}  {label}: {r['cells'][0]['value']} → {cell['value']}"
                + (f" ({cell['change']}, {cell['verdict']})" if cell["change"] else "")
            )
    return lines


def render_html(c: Comparison) -> str:
    """The self-contained comparison page (charts inlined, no network)."""
    e = html.escape
    status = "PASSED" if c.passed else "FAILED"
    colour = "#16a34a" if c.passed else "#dc2626"
    head = "".join(f"<th>{e(label)}</th>" for label in c.labels)
    change_heads = "".join(f"<th>{e(label)} vs {e(c.labels[0])}</th>" for label in c.labels[1:])
    body = []
    for r in figure_rows(c):
        cells = "".join(f"<td>{e(cell['value'])}</td>" for cell in r["cells"])
        changes = "".join(
            f"<td class='{cell['verdict']}'>{e(cell['change'])} {e(cell['verdict'])}</td>"
            for cell in r["cells"][1:]
        )
        better = {"lower": "lower", "higher": "higher"}.get(r["better"], "")
        body.append(f"<tr><td>{e(r['figure'])}</td>{cells}{changes}<td>{better}</td></tr>")
    gates = "".join(
        f"<tr><td>{e(g.gate)}</td><td>{e(g.run)}</td><td>{e(g.baseline)}</td>"
        f"<td>{e(g.value)}</td><td>{e(g.change)}</td>"
        f"<td class='{'better' if g.passed else 'worse'}'>{'pass' if g.passed else 'FAIL'}</td></tr>"
        for g in c.gates
    )
    meta_keys = ("run id", "scenario", "seed", "started", "duration", "recommender", "broker")
    meta = "".join(
        f"<tr><td>{k}</td>" + "".join(f"<td>{e(run_meta(s)[k])}</td>" for s in c.runs) + "</tr>"
        for k in meta_keys
    )
    specs = compare_specs(
        [(label, RunStats.from_dict(s.stats)) for label, s in zip(c.labels, c.runs, strict=True)]
    )
    title = f"RecLoop comparison: {' vs '.join(c.labels)}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<link rel="icon" href="data:,">
{inline_assets()}<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #111; }}
table {{ border-collapse: collapse; margin: 8px 24px 16px 0; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; font-size: 13px; text-align: left; }}
th {{ background: #f6f6f6; }}
.better {{ color: #16a34a; }} .worse {{ color: #dc2626; font-weight: bold; }}
.chart {{ display: inline-block; margin: 6px; border: 1px solid #eee; vertical-align: top; }}
</style></head><body>
<h1>{e(title)}{"" if not c.gates else f': <span style="color:{colour}">{status}</span>'}</h1>
<p>The first run is the baseline; changes are relative to it, coloured by whether they are
better (green) or worse (red) for the figure's direction.</p>
<h2>Gates</h2>
<table id="gates"><tr><th>gate</th><th>run</th><th>baseline</th><th>run's value</th>
<th>change</th><th>verdict</th></tr>{gates or "<tr><td>none</td></tr>"}</table>
<h2>Key figures</h2>
<table id="figures"><tr><th>figure</th>{head}{change_heads}<th>better when</th></tr>
{"".join(body)}</table>
<h2>Over time and latency distribution</h2><div id="charts"></div>{render_script("charts", specs)}
<h2>Runs</h2><table><tr><th></th>{head}</tr>{meta}</table>
</body></html>
"""


def run_meta(s: Summary) -> dict[str, str]:
    rec = s.recommender
    return {
        "run id": s.run_id,
        "scenario": s.scenario_name,
        "seed": str(s.seed),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)),
        "duration": f"{s.finished - s.started:.1f} s",
        "recommender": " ".join(f"{k}={v}" for k, v in rec.items()) or "–",
        "broker": s.broker,
    }


def write_comparison(c: Comparison, out_dir: str | Path) -> Path:
    """Write `compare.html` and `compare.json` (figures and gates) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "runs": c.labels,
        "run_ids": [s.run_id for s in c.runs],
        "passed": c.passed,
        "gates": [asdict(g) for g in c.gates],
        "figures": figure_rows(c),
    }
    (out / "compare.json").write_text(json.dumps(data, indent=1))
    path = out / "compare.html"
    path.write_text(render_html(c))
    return path

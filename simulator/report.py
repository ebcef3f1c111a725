"""The end-of-run JSON summary and a self-contained HTML report.

The report's charts are drawn by the same code as the live dashboard's (`web/static/charts.js`
on the vendored uPlot), inlined with the data so the report stays one file that works offline.

`summary.json` carries the figures, the threshold verdicts, the run's metadata and the raw
mergeable stats, so `recloop report a/summary.json b/summary.json` can combine the processes
of one sharded run into one report. With a `replay:` section, `replay` holds the same for the
replayed users (figures, counts and stats from a second `RunStats`), reported next to the
simulated users'.
"""

from __future__ import annotations

import html
import json
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recloop.simulator.figures import figure
from recloop.simulator.runner import RunResult
from recloop.simulator.stats import RunStats
from recloop.simulator.thresholds import Verdict, evaluate, parse_threshold, unit_of
from recloop.simulator.web.charts import inline_assets, render_script, run_specs

ROOT = Path(__file__).resolve().parent.parent


def git_revision() -> str:
    """The repository's HEAD (with `-dirty`), or `unknown` outside a checkout."""
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(slots=True)
class Summary:
    """Everything the report shows, JSON-ready."""

    run_id: str
    scenario_name: str
    scenario: dict[str, Any]
    seed: int
    shards: list[str]
    started: float
    finished: float
    git_revision: str
    broker: str
    versions: dict[str, str]
    recommender: dict[str, str]
    passed: bool
    aborted: bool
    figures: dict[str, float | None]
    counts: dict[str, int]
    ended_by: dict[str, int]
    verdicts: list[dict[str, Any]]
    stats: dict[str, Any] = field(repr=False)
    replay: dict[str, Any] | None = field(default=None, repr=False)
    """The replayed users' `figures`, `counts` and `stats` (None without a replay)."""

    def to_json(self) -> str:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return json.dumps(clean(asdict(self)), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Summary:
        data = json.loads(text)

        def unclean(v: Any) -> Any:
            return math.inf if v == "inf" else v

        data["figures"] = {k: unclean(v) for k, v in data["figures"].items()}
        if data.get("replay"):
            figures = data["replay"]["figures"]
            data["replay"]["figures"] = {k: unclean(v) for k, v in figures.items()}
        return cls(**data)


def replay_section(stats: RunStats | None) -> dict[str, Any] | None:
    """The summary's `replay` part from the replayed users' stats."""
    if stats is None:
        return None
    return {"figures": stats.figures(), "counts": dict(stats.counts), "stats": stats.to_dict()}


def summarise(result: RunResult, broker: str) -> Summary:
    """The summary of one simulator process's result."""
    return Summary(
        run_id=result.run_id,
        scenario_name=result.scenario.name,
        scenario=result.scenario.model_dump(mode="json"),
        seed=result.scenario.seed,
        shards=[str(result.shard)],
        started=result.started,
        finished=result.finished,
        git_revision=git_revision(),
        broker=broker,
        versions=result.versions,
        recommender=result.recommender,
        passed=result.passed,
        aborted=result.aborted,
        figures=result.stats.figures(),
        counts=dict(result.stats.counts),
        ended_by=dict(result.stats.ended_by),
        verdicts=[asdict(v) for v in result.verdicts],
        stats=result.stats.to_dict(),
        replay=replay_section(result.replay_stats),
    )


def merge_summaries(parts: list[Summary]) -> Summary:
    """One summary for the processes of one sharded run (histograms merged exactly)."""
    if not parts:
        raise ValueError("nothing to merge")
    stats = RunStats.from_dict(parts[0].stats)
    for p in parts[1:]:
        stats.merge(RunStats.from_dict(p.stats))
    first = parts[0]
    thresholds = [parse_threshold(t) for t in first.scenario.get("thresholds", [])]
    verdicts = evaluate(thresholds, stats.figures(), final=True)
    aborted = any(p.aborted for p in parts)
    replay: RunStats | None = None
    for p in parts:
        if p.replay is not None:
            part = RunStats.from_dict(p.replay["stats"])
            replay = part if replay is None else replay.merge(part)
    return Summary(
        run_id=first.run_id,
        scenario_name=first.scenario_name,
        scenario=first.scenario,
        seed=first.seed,
        shards=[s for p in parts for s in p.shards],
        started=min(p.started for p in parts),
        finished=max(p.finished for p in parts),
        git_revision=first.git_revision,
        broker=first.broker,
        versions=first.versions,
        recommender=first.recommender,
        passed=all(v.passed for v in verdicts) and not aborted,
        aborted=aborted,
        figures=stats.figures(),
        counts=dict(stats.counts),
        ended_by=dict(stats.ended_by),
        verdicts=[asdict(v) for v in verdicts],
        stats=stats.to_dict(),
        replay=replay_section(replay),
    )


KEY_FIGURES = (
    ("p50 latency (intended)", "latency.p50", "ms"),
    ("p99 latency (intended)", "latency.p99", "ms"),
    ("p99.9 latency (intended)", "latency.p99.9", "ms"),
    ("p99 latency (actual send)", "actual_latency.p99", "ms"),
    ("p99 schedule lag", "schedule_lag.p99", "ms"),
    ("achieved event rate (/s)", "achieved_rate", ""),
    ("late send rate", "late_send_rate", "%"),
    ("timeout rate", "timeout_rate", "%"),
    ("abandonment", "abandonment", "%"),
    ("CTR", "ctr", "%"),
    ("conversion (purchase/click)", "conversion", "%"),
    ("mean session depth (events)", "session_depth", ""),
    ("return rate", "return_rate", "%"),
    ("hit rate vs true preferences", "hit_rate", "%"),
    ("catalogue coverage", "coverage", "%"),
    ("Gini of exposure", "gini", ""),
    ("novelty (bits)", "novelty", ""),
)


REPLAY_FIGURES = (
    ("p50 latency (intended)", "latency.p50", "ms"),
    ("p99 latency (intended)", "latency.p99", "ms"),
    ("p99 latency (actual send)", "actual_latency.p99", "ms"),
    ("p99 schedule lag", "schedule_lag.p99", "ms"),
    ("achieved event rate (/s)", "achieved_rate", ""),
    ("late send rate", "late_send_rate", "%"),
    ("timeout rate", "timeout_rate", "%"),
    ("catalogue coverage", "coverage", "%"),
)
REPLAY_COUNTS = (
    "events_sent",
    "late_sends",
    "send_errors",
    "requests",
    "recommendations",
    "unmatched_recommendations",
    "timeouts",
    "impressions",
)


def _replay_html(replay: dict[str, Any] | None) -> str:
    if replay is None:
        return ""
    figures = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{figure(replay['figures'].get(key), kind)}</td></tr>"
        for label, key, kind in REPLAY_FIGURES
    )
    counts = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{replay['counts'].get(k, 0)}</td></tr>"
        for k in REPLAY_COUNTS
    )
    return (
        "<h2>Replayed users</h2><p>Recorded users replayed at their intended times; they do "
        "not react, so there are no CTR or session figures.</p>"
        f"<table>{figures}</table><table><tr><td colspan=2><b>Counts</b></td></tr>{counts}</table>"
    )


def render_html(summary: Summary) -> str:
    """The self-contained HTML report."""
    stats = RunStats.from_dict(summary.stats)
    replay = RunStats.from_dict(summary.replay["stats"]) if summary.replay else None
    status = "PASSED" if summary.passed else ("ABORTED" if summary.aborted else "FAILED")
    colour = "#16a34a" if summary.passed else "#dc2626"
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{figure(summary.figures.get(key), kind)}</td></tr>"
        for label, key, kind in KEY_FIGURES
    )
    verdicts = "".join(
        f"<tr><td>{html.escape(v['threshold'])}</td>"
        f"<td>{figure(v['value'], unit_of(v['key']))}</td>"
        f"<td style='color:{'#16a34a' if v['passed'] else '#dc2626'}'>"
        f"{'pass' if v['passed'] else 'FAIL'}</td></tr>"
        for v in summary.verdicts
    )
    meta = {
        "run id": summary.run_id,
        "scenario": summary.scenario_name,
        "seed": summary.seed,
        "shards": ", ".join(summary.shards),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary.started)),
        "duration (s)": f"{summary.finished - summary.started:.1f}",
        "git revision": summary.git_revision,
        "broker": summary.broker,
        **{f"version: {k}": v for k, v in summary.versions.items()},
        **{f"recommender: {k}": v for k, v in summary.recommender.items()},
    }
    meta_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items()
    )
    counts = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in summary.counts.items()
    )
    ended = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in summary.ended_by.items()
    )
    charts = render_script("charts", run_specs(stats, replay))
    scenario = html.escape(json.dumps(summary.scenario, indent=1))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>RecLoop run {html.escape(summary.run_id)}</title>
<link rel="icon" href="data:,">
{inline_assets()}<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #111; }}
table {{ border-collapse: collapse; margin: 8px 24px 16px 0; display: inline-table;
        vertical-align: top; }}
td {{ border-bottom: 1px solid #ddd; padding: 3px 10px; font-size: 13px; }}
.chart {{ display: inline-block; margin: 6px; border: 1px solid #eee; vertical-align: top; }}
pre {{ background: #f6f6f6; padding: 8px; font-size: 12px; }}
</style></head><body>
<h1>RecLoop run {html.escape(summary.run_id)}:
<span style="color:{colour}">{status}</span></h1>
<h2>Key figures</h2><table>{rows}</table>
<table><tr><td colspan=3><b>Thresholds</b></td></tr>{verdicts or "<tr><td>none</td></tr>"}</table>
{_replay_html(summary.replay)}
<h2>Over time</h2><div id="charts"></div>{charts}
<h2>Run</h2><table>{meta_rows}</table>
<table><tr><td colspan=2><b>Counts</b></td></tr>{counts}</table>
<table><tr><td colspan=2><b>Sessions ended by</b></td></tr>{ended}</table>
<h2>Scenario</h2><pre>{scenario}</pre>
</body></html>
"""


def write_report(summary: Summary, out_dir: str | Path) -> Path:
    """Write `summary.json` and `report.html` into `out_dir`; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.to_json())
    path = out / "report.html"
    path.write_text(render_html(summary))
    return path


def verdict_lines(verdicts: list[Verdict] | list[dict[str, Any]]) -> list[str]:
    """One line per threshold for terminal output, aligned, the measured value with its unit."""
    rows = [v if isinstance(v, dict) else asdict(v) for v in verdicts]
    width = max((len(d["threshold"]) for d in rows), default=0)
    return [
        f"{'✓' if d['passed'] else '✗'} {d['threshold']:<{width}}  measured "
        f"{figure(d['value'], unit_of(d['key']))}"
        for d in rows
    ]

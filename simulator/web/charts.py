"""Chart specs (JSON for `static/charts.js`) from a run's stats, and the inlined chart assets.

A spec is `{id, title, x: {label, unit, log}, y: {label, unit}, spanGaps, series: [{label, x,
y}]}`; latency is in milliseconds, shares are fractions (shown as percent), rates per second.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

from recloop.simulator.stats import RunStats

Spec = dict[str, Any]

STATIC = "static"
CDF_QUANTILES = [q / 2 for q in range(0, 199)] + [99.5, 99.9, 99.99, 100.0]


@cache
def asset(name: str) -> str:
    """The text of one file of `static/` (uPlot, its CSS, the chart code)."""
    return resources.files(__package__).joinpath(STATIC, name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` or `<!--` can end it early)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def inline_assets() -> str:
    """uPlot's CSS and JS and the chart code as inline <style>/<script> elements."""
    return (
        f"<style>{asset('uPlot.min.css')}</style>\n"
        f"<script>{asset('uPlot.iife.min.js')}</script>\n"
        f"<script>{asset('charts.js')}</script>\n"
    )


def render_script(container_id: str, specs: list[Spec]) -> str:
    """A <script> that draws `specs` into the element `container_id`."""
    return (
        f"<script>RecLoopCharts.renderAll(document.getElementById({script_json(container_id)}), "
        f"{script_json(specs)});</script>"
    )


def spec(
    id: str,
    title: str,
    series: list[tuple[str, list[float], list[float | None]]],
    *,
    y_label: str,
    y_unit: str,
    x_label: str = "time since start",
    x_unit: str = "s",
    log_x: bool = False,
    span_gaps: bool = False,
) -> Spec:
    """One chart's spec; non-finite values become gaps."""

    def finite(ys: list[float | None]) -> list[float | None]:
        return [y if y is not None and math.isfinite(y) else None for y in ys]

    return {
        "id": id,
        "title": title,
        "x": {"label": x_label, "unit": x_unit, "log": log_x},
        "y": {"label": y_label, "unit": y_unit},
        "spanGaps": span_gaps,
        "series": [{"label": n, "x": xs, "y": finite(ys)} for n, xs, ys in series],
    }


def per_second(stats: RunStats) -> dict[str, list[float | None]]:
    """The timeline as columns: latency p50/p99 (ms), rates, CTR, conversion, abandonment."""
    cols: dict[str, list[float | None]] = {
        k: []
        for k in (
            "t",
            "p50",
            "p99",
            "target",
            "achieved",
            "late",
            "ctr",
            "conversion",
            "abandonment",
        )
    }
    for i, sec in enumerate(stats.timeline):
        c = sec.counts
        cols["t"].append(float(i + 1))  # the second ending at i + 1 s
        if sec.latency.get_total_count():
            v = sec.latency.get_percentile_to_value_dict([50, 99])
            cols["p50"].append(v[50] / 1000)
            cols["p99"].append(v[99] / 1000)
        else:
            cols["p50"].append(None)
            cols["p99"].append(None)
        cols["target"].append(float(c["events_intended"]))
        cols["achieved"].append(float(c["events_sent"]))
        cols["late"].append(float(c["late_sends"]))
        cols["ctr"].append(c["clicks"] / c["impressions"] if c["impressions"] else None)
        cols["conversion"].append(c["purchases"] / c["clicks"] if c["clicks"] else None)
        cols["abandonment"].append(
            c["abandoned"] / c["sessions_ended"] if c["sessions_ended"] else None
        )
    return cols


def latency_cdf(stats: RunStats, actual: bool = False) -> tuple[list[float], list[float]] | None:
    """(latency in ms, share of answers) points of the latency CDF, or None without answers."""
    h = stats.actual_latency if actual else stats.latency
    if not h.get_total_count():
        return None
    vals = h.get_percentile_to_value_dict(CDF_QUANTILES)
    return [vals[q] / 1000 for q in CDF_QUANTILES], [q / 100 for q in CDF_QUANTILES]


def cdf_spec(id: str, curves: list[tuple[str, tuple[list[float], list[float]] | None]]) -> Spec:
    series = [(name, xs, list(ys)) for name, c in curves if c is not None for xs, ys in [c]]
    return spec(
        id,
        "Latency CDF (from intended send time unless noted)",
        series,  # type: ignore[arg-type]
        x_label="latency (log scale)",
        x_unit="ms",
        log_x=True,
        y_label="share of answers",
        y_unit="%",
        span_gaps=True,
    )


def run_specs(stats: RunStats, replay: RunStats | None = None) -> list[Spec]:
    """The report's charts: latency, rate, user figures over time, and the latency CDF."""
    c = per_second(stats)
    t: list[float] = c["t"]  # type: ignore[assignment]
    curves = [("intended", latency_cdf(stats)), ("actual send", latency_cdf(stats, True))]
    if replay is not None:
        curves += [
            ("replay intended", latency_cdf(replay)),
            ("replay actual send", latency_cdf(replay, True)),
        ]
    return [
        spec(
            "latency",
            "Recommendation latency per second (from intended send time)",
            [("p50", t, c["p50"]), ("p99", t, c["p99"])],
            y_label="latency",
            y_unit="ms",
        ),
        spec(
            "rate",
            "Event rate: target vs achieved",
            [("target", t, c["target"]), ("achieved", t, c["achieved"]), ("late", t, c["late"])],
            y_label="events",
            y_unit="/s",
        ),
        spec(
            "users",
            "CTR, conversion and abandonment per second",
            [
                ("CTR", t, c["ctr"]),
                ("conversion", t, c["conversion"]),
                ("abandonment (of ended)", t, c["abandonment"]),
            ],
            y_label="share",
            y_unit="%",
        ),
        cdf_spec("cdf", curves),
    ]


def compare_specs(runs: list[tuple[str, RunStats]]) -> list[Spec]:
    """Overlaid charts of several runs: latency CDF, p99 latency, achieved rate, CTR."""
    cols = [(name, per_second(stats)) for name, stats in runs]

    def over_time(key: str) -> list[tuple[str, list[float], list[float | None]]]:
        return [(name, c["t"], c[key]) for name, c in cols]  # type: ignore[misc]

    return [
        cdf_spec("cdf", [(name, latency_cdf(stats)) for name, stats in runs]),
        spec(
            "p99",
            "p99 latency per second (from intended send time)",
            over_time("p99"),
            y_label="latency",
            y_unit="ms",
        ),
        spec("rate", "Achieved event rate", over_time("achieved"), y_label="events", y_unit="/s"),
        spec("ctr", "CTR per second", over_time("ctr"), y_label="CTR", y_unit="%"),
        spec(
            "abandonment",
            "Abandonment per second (of ended sessions)",
            over_time("abandonment"),
            y_label="abandonment",
            y_unit="%",
        ),
    ]

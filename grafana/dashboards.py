"""RecLoop's Grafana dashboards as code (grafana-foundation-sdk); writes grafana/dashboards/*.json.

Run `python grafana/dashboards.py` after editing, and commit the JSON: Grafana provisions the
JSON files, and tests/observability fails when they differ from what this script generates.

Three dashboards: the recommender (worker metrics, `instance` variable), the simulated users
(simulator/replay metrics, `run_id` variable) and a run overview with the SLO thresholds of
prometheus/rules/recloop.yml drawn on its latency panels. No query groups by a user or item.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="recloop-prometheus")
"""Matches grafana/provisioning/datasources/prometheus.yml."""

WORKER_LATENCY_SLO_SECONDS = 0.2
"""99% of recommendations processed within this (rule recloop:worker_latency_slo_errors:*)."""
USER_LATENCY_SLO_SECONDS = 0.5
"""99% of recommendations seen by users within this of the intended send (recloop:sim_*)."""
ABANDONMENT_ALERT_RATIO = 0.2
"""RecLoopAbandonmentHigh fires above this share of abandoned sessions."""

W = 'instance=~"$instance"'
R = 'run_id=~"$run_id"'
RI = "$__rate_interval"


@dataclass(frozen=True)
class Q:
    """One PromQL target: the expression and its legend."""

    expr: str
    legend: str = ""


def _target(q: Q, ref: str) -> prom.Dataquery:
    return prom.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(ref)


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def ts(
    title: str,
    queries: Iterable[Q],
    unit: str = "short",
    description: str = "",
    slo: float | None = None,
    width: int = 12,
) -> timeseries.Panel:
    """A time series panel; with `slo`, a dashed red line is drawn at the threshold."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .line_width(1)
        .fill_opacity(10)
    )
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    if slo is not None:
        panel = panel.thresholds(_thresholds((None, "transparent"), (slo, "red"))).thresholds_style(
            GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
        )
    return panel


def single(
    title: str,
    q: Q,
    unit: str = "short",
    description: str = "",
    red_above: float | None = None,
    width: int = 4,
) -> stat.Panel:
    """A stat panel showing the last value; with `red_above`, the value turns red past it."""
    steps: list[tuple[float | None, str]] = [(None, "green")]
    if red_above is not None:
        steps.append((red_above, "red"))
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(4)
        .with_target(_target(q, "A"))
        .thresholds(_thresholds(*steps))
    )


def _variable(name: str, label: str, metric: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


INSTANCE = _variable("instance", "Worker instance", "recloop_worker_events_total")
RUN_ID = _variable("run_id", "Run id", "recloop_sim_events_sent_total")


def _dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["recloop"])
        .refresh("5s")
        .time("now-15m", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(RUN_ID)
        .with_variable(INSTANCE)
    )


def _quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{{{selector}}}[{RI}])))"


def _mean(metric: str, selector: str, by: str = "") -> str:
    agg = f"sum by ({by})" if by else "sum"
    return f"{agg} (rate({metric}_sum{{{selector}}}[{RI}])) / {agg} (rate({metric}_count{{{selector}}}[{RI}]))"


def recommender() -> db.Dashboard:
    """The worker: throughput, errors, latency by stage, inference, table size, lag."""
    p = "recloop_worker_processing_seconds"
    return (
        _dashboard(
            "recloop-recommender",
            "RecLoop · Recommender",
            "The Faust recommender worker(s): throughput, dead letters, latency by stage, "
            "inference, state table and consumer lag.",
        )
        .with_row(db.Row("Throughput and errors"))
        .with_panel(
            ts(
                "Events consumed by type",
                [
                    Q(
                        f"sum by (event_type) (rate(recloop_worker_events_total{{{W}}}[{RI}]))",
                        "{{event_type}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            ts(
                "Recommendations emitted",
                [
                    Q(
                        f"sum by (strategy) (rate(recloop_worker_recommendations_total{{{W}}}[{RI}]))",
                        "{{strategy}}",
                    ),
                    Q(
                        f"sum by (instance) (rate(recloop_worker_recommendations_total{{{W}}}[{RI}]))",
                        "{{instance}}",
                    ),
                ],
                "reqps",
            )
        )
        .with_panel(
            ts(
                "Dead letters by reason",
                [
                    Q(
                        f"sum by (reason) (rate(recloop_worker_dead_letters_total{{{W}}}[{RI}]))",
                        "{{reason}}",
                    )
                ],
                "reqps",
                "Messages rejected to the dead-letter topic (errors).",
            )
        )
        .with_panel(
            ts(
                "Redeliveries and sequence gaps",
                [
                    Q(
                        f"sum(rate(recloop_worker_redelivered_events_total{{{W}}}[{RI}]))",
                        "redelivered",
                    ),
                    Q(
                        f"sum(rate(recloop_worker_sequence_gaps_total{{{W}}}[{RI}]))",
                        "sequence gaps",
                    ),
                ],
                "reqps",
                "Events seen again after a restart, and per-user sequence numbers skipped.",
            )
        )
        .with_row(db.Row("Latency"))
        .with_panel(
            ts(
                "Processing latency (consumed → emitted)",
                [
                    Q(_quantile(0.5, p, W), "p50"),
                    Q(_quantile(0.99, p, W), "p99"),
                    Q(_quantile(0.99, p, W, "instance"), "p99 {{instance}}"),
                ],
                "s",
                f"SLO: 99% within {WORKER_LATENCY_SLO_SECONDS} s (dashed line).",
                slo=WORKER_LATENCY_SLO_SECONDS,
            )
        )
        .with_panel(
            ts(
                "p99 duration by stage",
                [Q(_quantile(0.99, "recloop_worker_stage_seconds", W, "stage"), "{{stage}}")],
                "s",
                "queue = produced → consumed; batch_and_infer; emit.",
            )
        )
        .with_panel(
            ts(
                "Inference latency per batch",
                [
                    Q(
                        _quantile(0.99, "recloop_worker_inference_seconds", W, "strategy"),
                        "p99 {{strategy}}",
                    ),
                    Q(
                        _mean("recloop_worker_inference_seconds", W, "strategy"),
                        "mean {{strategy}}",
                    ),
                ],
                "s",
            )
        )
        .with_panel(
            ts(
                "Inference batch size",
                [
                    Q(_mean("recloop_worker_inference_batch_size", W), "mean"),
                    Q(_quantile(0.9, "recloop_worker_inference_batch_size", W), "p90"),
                ],
                "short",
            )
        )
        .with_row(db.Row("State and lag"))
        .with_panel(
            ts(
                "Users in state table",
                [Q(f"sum by (instance) (recloop_worker_table_users{{{W}}})", "{{instance}}")],
                "short",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Consumer lag",
                [Q(f"sum by (instance) (recloop_worker_consumer_lag{{{W}}})", "{{instance}}")],
                "short",
                "Events not yet consumed, summed over this worker's partitions.",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Assigned partitions",
                [
                    Q(
                        f"sum by (instance) (recloop_worker_assigned_partitions{{{W}}})",
                        "{{instance}}",
                    )
                ],
                "short",
                "Events-topic partitions per worker; a worker with none idles.",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Model reloads",
                [
                    Q(
                        f"sum by (outcome) (increase(recloop_worker_model_reloads_total{{{W}}}[{RI}]))",
                        "{{outcome}}",
                    )
                ],
                "short",
                "Hot reloads of the model directory, by outcome.",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Model served",
                [
                    Q(
                        f"count by (strategy, version) (recloop_worker_model_info{{{W}}})",
                        "{{strategy}} {{version}}",
                    )
                ],
                "short",
                "Number of workers serving each model version.",
                width=8,
            )
        )
    )


def users() -> db.Dashboard:
    """The simulated (or replayed) users of a run: load, engagement, sessions, latency."""
    lat = "recloop_sim_recommendation_latency_seconds"
    by = "sum by (run_id)"
    return (
        _dashboard(
            "recloop-users",
            "RecLoop · Simulated users",
            "What the simulated users did: target vs achieved load, CTR, conversion, session "
            "depth, abandonment and the latency they saw.",
        )
        .with_row(db.Row("Load"))
        .with_panel(
            ts(
                "Target vs achieved event rate",
                [
                    Q(f"{by} (recloop_sim_target_rate{{{R}}})", "target {{run_id}}"),
                    Q(
                        f"{by} (rate(recloop_sim_events_sent_total{{{R}}}[{RI}]))",
                        "achieved {{run_id}}",
                    ),
                ],
                "reqps",
            )
        )
        .with_panel(
            ts(
                "Events sent by type",
                [
                    Q(
                        f"sum by (event_type) (rate(recloop_sim_events_sent_total{{{R}}}[{RI}]))",
                        "{{event_type}}",
                    )
                ],
                "reqps",
            )
        )
        .with_panel(
            ts(
                "Send lateness",
                [
                    Q(
                        _quantile(0.99, "recloop_sim_schedule_lag_seconds", R, "run_id"),
                        "p99 lag {{run_id}}",
                    ),
                    Q(
                        f"{by} (rate(recloop_sim_late_sends_total{{{R}}}[{RI}]))",
                        "late sends/s {{run_id}}",
                    ),
                ],
                "s",
                "Actual minus intended send time: above a few ms the simulator itself is the bottleneck.",
            )
        )
        .with_panel(
            ts(
                "Recommendation latency seen by users",
                [
                    Q(
                        _quantile(0.99, lat, f'{R}, basis="intended"', "run_id"),
                        "p99 intended {{run_id}}",
                    ),
                    Q(
                        _quantile(0.99, lat, f'{R}, basis="actual"', "run_id"),
                        "p99 actual {{run_id}}",
                    ),
                    Q(
                        _quantile(0.5, lat, f'{R}, basis="intended"', "run_id"),
                        "p50 intended {{run_id}}",
                    ),
                ],
                "s",
                f"From the intended send time (no coordinated omission). SLO: 99% within "
                f"{USER_LATENCY_SLO_SECONDS} s.",
                slo=USER_LATENCY_SLO_SECONDS,
            )
        )
        .with_row(db.Row("Engagement"))
        .with_panel(
            ts(
                "Click-through rate",
                [
                    Q(
                        f"{by} (rate(recloop_sim_clicks_total{{{R}}}[{RI}])) / {by} (rate(recloop_sim_impressions_total{{{R}}}[{RI}]))",
                        "{{run_id}}",
                    )
                ],
                "percentunit",
                "Clicks per recommended item shown.",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Conversion",
                [
                    Q(
                        f"{by} (rate(recloop_sim_purchases_total{{{R}}}[{RI}])) / {by} (rate(recloop_sim_sessions_ended_total{{{R}}}[{RI}]))",
                        "{{run_id}}",
                    )
                ],
                "short",
                "Purchases of recommended items per finished session.",
                width=8,
            )
        )
        .with_panel(
            ts(
                "Recommendations received and timeouts",
                [
                    Q(
                        f"{by} (rate(recloop_sim_recommendations_received_total{{{R}}}[{RI}]))",
                        "received {{run_id}}",
                    ),
                    Q(
                        f"{by} (rate(recloop_sim_timeouts_total{{{R}}}[{RI}]))",
                        "timeouts {{run_id}}",
                    ),
                ],
                "reqps",
                width=8,
            )
        )
        .with_row(db.Row("Sessions"))
        .with_panel(
            ts(
                "Active sessions",
                [Q(f"{by} (recloop_sim_active_sessions{{{R}}})", "{{run_id}}")],
                "short",
                width=6,
            )
        )
        .with_panel(
            ts(
                "Session depth",
                [
                    Q(_quantile(0.5, "recloop_sim_session_depth", R, "run_id"), "p50 {{run_id}}"),
                    Q(_mean("recloop_sim_session_depth", R, "run_id"), "mean {{run_id}}"),
                ],
                "short",
                "Events per finished session.",
                width=6,
            )
        )
        .with_panel(
            ts(
                "Sessions ended by reason",
                [
                    Q(
                        f"sum by (reason) (rate(recloop_sim_sessions_ended_total{{{R}}}[{RI}]))",
                        "{{reason}}",
                    )
                ],
                "reqps",
                width=6,
            )
        )
        .with_panel(
            ts(
                "Abandonment",
                [
                    Q(
                        f'({by} (rate(recloop_sim_sessions_ended_total{{{R}, reason="abandoned"}}[{RI}])) or {by} (rate(recloop_sim_sessions_ended_total{{{R}}}[{RI}])) * 0) / {by} (rate(recloop_sim_sessions_ended_total{{{R}}}[{RI}]))',
                        "{{run_id}}",
                    )
                ],
                "percentunit",
                f"Share of finished sessions abandoned; the alert fires above {ABANDONMENT_ALERT_RATIO:.0%}.",
                slo=ABANDONMENT_ALERT_RATIO,
                width=6,
            )
        )
    )


def overview() -> db.Dashboard:
    """One screen per run: load, SLOs with thresholds, user outcomes and firing alerts."""
    return (
        _dashboard(
            "recloop-overview",
            "RecLoop · Run overview",
            "A run at a glance: load in and out, latency against the SLOs, what users did, "
            "and which RecLoop alerts fire.",
        )
        .with_panel(
            single(
                "Events sent/s",
                Q(f"sum(rate(recloop_sim_events_sent_total{{{R}}}[{RI}]))"),
                "reqps",
            )
        )
        .with_panel(
            single(
                "Recommendations/s",
                Q(f"sum(rate(recloop_worker_recommendations_total{{{W}}}[{RI}]))"),
                "reqps",
            )
        )
        .with_panel(
            single(
                "Worker p99 latency",
                Q(_quantile(0.99, "recloop_worker_processing_seconds", W)),
                "s",
                f"SLO {WORKER_LATENCY_SLO_SECONDS} s",
                red_above=WORKER_LATENCY_SLO_SECONDS,
            )
        )
        .with_panel(
            single(
                "User p99 latency",
                Q(
                    _quantile(
                        0.99, "recloop_sim_recommendation_latency_seconds", f'{R}, basis="intended"'
                    )
                ),
                "s",
                f"SLO {USER_LATENCY_SLO_SECONDS} s, from the intended send time",
                red_above=USER_LATENCY_SLO_SECONDS,
            )
        )
        .with_panel(
            single(
                "Click-through rate",
                Q(
                    f"sum(rate(recloop_sim_clicks_total{{{R}}}[{RI}])) / sum(rate(recloop_sim_impressions_total{{{R}}}[{RI}]))"
                ),
                "percentunit",
            )
        )
        .with_panel(
            single(
                "Alerts firing",
                Q('count(ALERTS{alertname=~"RecLoop.*", alertstate="firing"}) or vector(0)'),
                "short",
                red_above=1,
            )
        )
        .with_panel(
            ts(
                "Worker latency vs SLO",
                [
                    Q(
                        _quantile(0.99, "recloop_worker_processing_seconds", W, "instance"),
                        "p99 {{instance}}",
                    ),
                    Q(_quantile(0.5, "recloop_worker_processing_seconds", W), "p50"),
                ],
                "s",
                f"99% of recommendations within {WORKER_LATENCY_SLO_SECONDS} s of consuming the event.",
                slo=WORKER_LATENCY_SLO_SECONDS,
            )
        )
        .with_panel(
            ts(
                "User-seen latency vs SLO",
                [
                    Q(
                        _quantile(
                            0.99,
                            "recloop_sim_recommendation_latency_seconds",
                            f'{R}, basis="intended"',
                            "run_id",
                        ),
                        "p99 {{run_id}}",
                    ),
                ],
                "s",
                f"99% of recommendations within {USER_LATENCY_SLO_SECONDS} s of the intended send.",
                slo=USER_LATENCY_SLO_SECONDS,
            )
        )
        .with_panel(
            ts(
                "SLO error ratio (5 m)",
                [
                    Q("recloop:worker_latency_slo_errors:ratio_rate5m", "worker {{job}}"),
                    Q(f"recloop:sim_latency_slo_errors:ratio_rate5m{{{R}}}", "users {{run_id}}"),
                ],
                "percentunit",
                "Share of recommendations over the latency SLO; the error budget is 1% (line).",
                slo=0.01,
            )
        )
        .with_panel(
            ts(
                "Load in and out",
                [
                    Q(f"sum by (run_id) (recloop_sim_target_rate{{{R}}})", "target {{run_id}}"),
                    Q(
                        f"sum by (run_id) (rate(recloop_sim_events_sent_total{{{R}}}[{RI}]))",
                        "sent {{run_id}}",
                    ),
                    Q(
                        f"sum(rate(recloop_worker_recommendations_total{{{W}}}[{RI}]))",
                        "recommendations",
                    ),
                ],
                "reqps",
            )
        )
        .with_panel(
            ts(
                "Abandonment and dead letters",
                [
                    Q(f"recloop:sim_abandonment:ratio_rate5m{{{R}}}", "abandoned {{run_id}}"),
                    Q("recloop:worker_dead_letters:ratio_rate5m", "dead letters {{job}}"),
                ],
                "percentunit",
            )
        )
        .with_panel(
            ts(
                "Consumer lag",
                [Q("recloop:worker_consumer_lag:sum", "{{job}}")],
                "short",
            )
        )
    )


DASHBOARDS = {"recommender": recommender, "users": users, "overview": overview}


def render() -> dict[str, str]:
    """File name → JSON text for every dashboard (stable key order, trailing newline)."""
    return {
        f"recloop-{name}.json": json.dumps(
            build().build(), cls=JSONEncoder, indent=2, sort_keys=True
        )
        + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`recloop simulate` and `recloop report`.

Exit codes (README, "Exit codes"): 0 every threshold passed, 1 a threshold failed (or the run
was aborted on a breach), 2 invalid scenario or configuration, 3 the simulation could not run.
Errors reach the CLI's one handler (`recloop.cli.app`) as `RecLoopError`s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recloop.cli.web import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    WebFlag,
    WebHost,
    WebOptions,
    WebPort,
    fan_out,
    open_dashboard,
    run_meta,
    run_status,
    web_options,
)
from recloop.core.errors import EXIT_FAILED, EXIT_OK, InvalidInputError

if TYPE_CHECKING:  # the modules are imported inside the commands, to keep --help fast
    from recloop.core.settings import Settings
    from recloop.simulator.population import Shard
    from recloop.simulator.report import Summary
    from recloop.simulator.runner import Snapshot
    from recloop.simulator.scenario import Scenario
    from recloop.simulator.stats import RunStats


def register(app: typer.Typer) -> None:
    """Add this package's subcommands to the `recloop` CLI."""
    app.command()(simulate)
    app.command()(report)


def simulate(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (default: a constant-rate scenario)")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    rate: Annotated[float, typer.Option(help="Sessions/s when no scenario file is given")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds when no scenario file is given")] = 60.0,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed")] = None,
    shard: Annotated[str, typer.Option(help="This process's share of users, i/n")] = "0/1",
    run_id: Annotated[
        str | None, typer.Option(help="Run id (share it across the shards of one run)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory (reports/<run-id>)")] = None,
    metrics_port: Annotated[int, typer.Option(help="Prometheus port (0: off)")] = 9466,
    live: Annotated[bool, typer.Option(help="Live terminal view")] = True,
    abort_on_breach: Annotated[
        bool | None, typer.Option(help="Stop as soon as a threshold is breached")
    ] = None,
    web: WebFlag = False,
    web_port: WebPort = DEFAULT_PORT,
    web_host: WebHost = DEFAULT_HOST,
) -> None:
    """Run simulated users against the recommender on Kafka; report and check thresholds."""
    from recloop.core.settings import load_settings
    from recloop.simulator.population import Shard
    from recloop.simulator.scenario import load_scenario, quick_scenario

    try:
        part = Shard.parse(shard)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None
    sc = load_scenario(scenario) if scenario else quick_scenario(rate, duration)
    updates = {}
    if seed is not None:
        updates["seed"] = seed
    if abort_on_breach is not None:
        updates["abort_on_breach"] = abort_on_breach
    sc = sc.model_copy(update=updates)
    settings = load_settings(bootstrap=bootstrap)
    code = run_and_report(
        sc,
        settings,
        part,
        run_id,
        out,
        metrics_port,
        live,
        web=web_options(web, web_port, web_host),
    )
    raise typer.Exit(code)


def run_and_report(
    scenario: Scenario,
    settings: Settings,
    shard: Shard,
    run_id: str | None,
    out: Path | None,
    metrics_port: int,
    live: bool,
    broker_name: str | None = None,
    *,
    web: WebOptions | None = None,
    amend: Callable[[Summary], None] | None = None,
) -> int:
    """Run one simulator process with the live view, write its report, return the exit code.

    With `web`, a live dashboard is served too, and shows the report when the run is over.
    `amend` may add to the summary before the report is written (the demo names its models).
    A run that cannot start raises its `RecLoopError` (bad scenario or population 2, Kafka 3).
    """
    import uuid

    from recloop.simulator.live import LiveView
    from recloop.simulator.report import summarise, verdict_lines, write_report
    from recloop.simulator.runner import run_simulation

    run_id = run_id or uuid.uuid4().hex[:12]
    if metrics_port:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr="0.0.0.0")
        except OSError as exc:
            typer.secho(f"metrics port {metrics_port} unavailable ({exc}); metrics off", err=True)
    title = f"RecLoop {scenario.name} · run {run_id}"
    broker = broker_name or settings.bootstrap
    with contextlib.ExitStack() as stack:
        ticks: list[Callable[[Snapshot], None]] = []
        dashboard = None
        if web is not None:
            dashboard = stack.enter_context(
                open_dashboard(
                    web,
                    title,
                    run_meta(scenario, run_id, shard, broker),
                    scenario.model_dump(mode="json"),
                )
            )
            ticks.append(dashboard.update)
        if live:
            ticks.append(stack.enter_context(LiveView(title)).update)
        result = run_simulation(
            scenario, settings, shard=shard, run_id=run_id, on_tick=fan_out(ticks)
        )
        summary = summarise(result, broker)
        if amend is not None:
            amend(summary)
        suffix = "" if shard.count == 1 else f"-shard{shard.index}"
        path = write_report(summary, out or Path("reports") / f"{run_id}{suffix}")
        if dashboard is not None:
            dashboard.finish(path.read_text(), run_status(result.passed, result.aborted))
    for line in verdict_lines(result.verdicts):
        typer.echo(line)
    if result.aborted:
        typer.secho("aborted: a threshold was breached", fg="red")
    for line in source_lines(result.stats, result.replay_stats):
        typer.echo(line)
    typer.echo(f"report: {path}")
    typer.echo(f"summary: {path.parent / 'summary.json'}")
    return EXIT_OK if result.passed else EXIT_FAILED


def source_lines(sim: RunStats, replay: RunStats | None) -> list[str]:
    """Events sent and answered per source (simulated, replayed) for terminal output."""
    from recloop.simulator.figures import ms

    if replay is None:
        return []
    lines = []
    for name, stats in (("simulated", sim), ("replayed", replay)):
        c, f = stats.counts, stats.figures()
        lines.append(
            f"{name}: {c['events_sent']} events sent, {c['recommendations']}/{c['requests']} "
            f"requests answered, p99 latency {ms(f['latency.p99'])}"
        )
    return lines


def report(
    summaries: Annotated[list[Path], typer.Argument(help="summary.json files of one run")],
    out: Annotated[Path, typer.Option(help="Directory for the merged report")] = Path(
        "reports/merged"
    ),
) -> None:
    """Merge the summaries of a sharded run (histograms merge exactly) into one report."""
    from recloop.simulator.report import Summary, merge_summaries, verdict_lines, write_report

    try:
        parts = [Summary.from_json(p.read_text()) for p in summaries]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"cannot read summaries: {exc}") from None
    merged = merge_summaries(parts)
    path = write_report(merged, out)
    for line in verdict_lines(merged.verdicts):
        typer.echo(line)
    typer.echo(f"report: {path}")
    raise typer.Exit(EXIT_OK if merged.passed else EXIT_FAILED)

"""The `--web`, `--web-port` and `--web-host` options shared by simulate, replay and demo."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported inside the functions, to keep --help fast
    from recloop.simulator.runner import Snapshot
    from recloop.simulator.scenario import Scenario
    from recloop.simulator.web.dashboard import Dashboard

DEFAULT_HOST = "127.0.0.1"  # same as recloop.simulator.web.dashboard (not imported: fast --help)
DEFAULT_PORT = 8089

WebFlag = Annotated[
    bool, typer.Option("--web", help="Serve a live dashboard in the browser while it runs")
]
WebPort = Annotated[int, typer.Option("--web-port", help="Port of the live dashboard")]
WebHost = Annotated[
    str,
    typer.Option("--web-host", help="Address the dashboard binds to (0.0.0.0: every interface)"),
]


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Where the live dashboard listens."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT


def web_options(web: bool, port: int, host: str) -> WebOptions | None:
    """The options when `--web` was given, else None (a bad port is a usage error, exit 2)."""
    if not web:
        return None
    if not 0 < port < 65536:
        raise typer.BadParameter(f"{port} is not a TCP port (1-65535)", param_hint="--web-port")
    return WebOptions(host, port)


def run_status(passed: bool, aborted: bool) -> str:
    """PASSED, ABORTED or FAILED, as the report's title says."""
    return "PASSED" if passed else ("ABORTED" if aborted else "FAILED")


def run_meta(scenario: Scenario, run_id: str, shard: object, broker: str) -> dict[str, str]:
    """The run's metadata for the dashboard's "Run" table."""
    import time

    return {
        "run id": run_id,
        "scenario": scenario.name,
        "seed": str(scenario.seed),
        "shard": str(shard),
        "duration": f"{scenario.duration:g} s",
        "thresholds": "; ".join(scenario.thresholds) or "none",
        "broker": broker,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def fan_out(ticks: list[Callable[[Snapshot], None]]) -> Callable[[Snapshot], None] | None:
    """One `on_tick` callback that calls each of `ticks` (None when there are none)."""
    if not ticks:
        return None
    if len(ticks) == 1:
        return ticks[0]

    def tick(snapshot: Snapshot) -> None:
        for fn in ticks:
            fn(snapshot)

    return tick


@contextlib.contextmanager
def open_dashboard(
    options: WebOptions,
    title: str,
    meta: dict[str, str],
    scenario: dict[str, Any],
    first_source: str = "simulated",
) -> Iterator[Dashboard]:
    """Serve the live dashboard for the block; on leaving, let open pages fetch the report.

    `scenario` is shown as the run's settings; `first_source` names the snapshots' own source
    in the per-source table (a replay's is "replayed")."""
    from recloop.simulator.web.dashboard import Dashboard

    dashboard = Dashboard(
        title=title,
        meta=meta,
        scenario=scenario,
        host=options.host,
        port=options.port,
        source_names=(first_source, "replayed"),
    ).start()
    typer.echo(f"live dashboard: {dashboard.url}")
    try:
        yield dashboard
    finally:
        dashboard.close()

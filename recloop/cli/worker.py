"""`recloop` subcommands owned by the `streams` package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this package's subcommands to the `recloop` CLI."""
    app.command()(worker)


def worker(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="onnx, popular, cooccurrence or random")
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Trained model directory")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port (0: off)")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level")] = "warning",
) -> None:
    """Run the Faust recommender worker (settings from RECLOOP_* variables and options)."""
    # Options become environment variables so recloop.streams.app builds the same Settings that
    # `faust -A recloop.streams.app worker` would, from one place.
    for name, value in {
        "RECLOOP_BOOTSTRAP": bootstrap,
        "RECLOOP_WORKER__STRATEGY": strategy,
        "RECLOOP_WORKER__MODEL_DIR": model_dir,
        "RECLOOP_WORKER__METRICS_PORT": metrics_port,
    }.items():
        if value is not None:
            os.environ[name] = str(value)
    from recloop.core.settings import ConfigError

    try:
        from recloop.streams.app import app as faust_app
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    from faust.worker import Worker

    worker = Worker(faust_app, loglevel=loglevel)
    # Faust's terminal spinner, enabled at loglevel warning and above, sets the root logger to
    # DEBUG so it can spin on every record: every debug call in Faust, mode and aiokafka (several
    # per message sent) then builds a LogRecord. That was ~8% of the worker's CPU under load.
    worker.spinner = None
    worker.execute_from_commandline()

"""`recloop` subcommands owned by the `streams` package."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recloop.core.settings import Strategy

if TYPE_CHECKING:
    from recloop.core.settings import Settings


def register(app: typer.Typer) -> None:
    """Add this package's subcommands to the `recloop` CLI."""
    app.command()(worker)


def worker(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    strategy: Annotated[
        Strategy | None, typer.Option(help="How to recommend (random needs no model)")
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Trained model directory")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port (0: off)")] = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level")] = "warning",
    create_topics: Annotated[
        bool | None,
        typer.Option(
            "--create-topics/--no-create-topics",
            help="Create missing topics at start-up (default: worker.create_topics, on); "
            "off: exit naming a missing topic",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the Faust recommender worker (settings from RECLOOP_* variables and options)."""
    # Options become environment variables so recloop.streams.app builds the same Settings that
    # `faust -A recloop.streams.app worker` would, from one place.
    for name, value in {
        "RECLOOP_BOOTSTRAP": bootstrap,
        "RECLOOP_WORKER__STRATEGY": strategy,
        "RECLOOP_WORKER__MODEL_DIR": model_dir,
        "RECLOOP_WORKER__METRICS_PORT": metrics_port,
        "RECLOOP_WORKER__CREATE_TOPICS": None if create_topics is None else str(create_topics),
    }.items():
        if value is not None:
            os.environ[name] = str(value)
    from recloop.core.settings import ConfigError, load_settings

    # Before Faust starts: it neither creates the topics its agent reads nor fails without them
    # (it logs "not found in cluster metadata" and idles).
    settings = load_settings()
    # Bad input first (exit 2, nothing touched), before connecting to Kafka for the topics.
    from recloop.streams.strategies import check_model_dir

    check_model_dir(settings.worker.strategy, settings.worker.model_dir)
    # Faust creates only the last level of its data directory and otherwise fails to start
    # (in a fresh checkout, artifacts/ does not exist until `recloop train`).
    try:
        settings.worker.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"worker.data_dir: cannot create {settings.worker.data_dir} ({exc.strerror}); "
            "set RECLOOP_WORKER__DATA_DIR to a writable directory"
        ) from None
    _prepare_topics(settings)
    if settings.worker.store == "rocksdb":
        _refuse_rocksdb_on_tansu(settings)
    # Importing the app loads the settings and the strategy: a ConfigError or StrategyError here
    # ends as one line and exit 2 through the CLI's error handler.
    from faust.worker import Worker

    from recloop.streams.app import app as faust_app

    worker = Worker(faust_app, loglevel=loglevel)
    # Faust's terminal spinner, enabled at loglevel warning and above, sets the root logger to
    # DEBUG so it can spin on every record: every debug call in Faust, mode and aiokafka (several
    # per message sent) then builds a LogRecord. That was ~8% of the worker's CPU under load.
    worker.spinner = None
    worker.execute_from_commandline()


def _prepare_topics(settings: Settings) -> None:
    """Create the missing contract topics or, with creation off, fail naming them."""
    from recloop.core.topics import TopicError, ensure_topics, missing_topics

    # A private loop: asyncio.run would leave the thread without the event loop Faust expects.
    loop = asyncio.new_event_loop()
    try:
        if settings.worker.create_topics:
            if created := loop.run_until_complete(ensure_topics(settings)):
                typer.echo(f"created topics {', '.join(created)} on {settings.bootstrap}", err=True)
            return
        missing = loop.run_until_complete(missing_topics(settings))
    finally:
        loop.close()
    if missing:
        names = ", ".join(repr(name) for name in missing)
        what = f"topic {names} does not" if len(missing) == 1 else f"topics {names} do not"
        raise TopicError(
            f"{what} exist on {settings.bootstrap} and topic creation is off "
            "(--no-create-topics); create them with `recloop topics create`"
        )


def _refuse_rocksdb_on_tansu(settings: Settings) -> None:
    """Stop before Faust does, with the reason: RocksDB recovery cannot work on Tansu.

    Tansu (0.6, and its main branch in July 2026) answers ListOffsets(latest) with the first
    offset of the partition's last record batch + 1, below the real end when that batch holds
    several records. Faust compares the changelog offset RocksDB persisted with that "high
    watermark" at every restart and stops with ConsistencyError.
    """
    from recloop.brokers import cluster_kind
    from recloop.core.settings import ConfigError

    loop = asyncio.new_event_loop()
    try:
        kind = loop.run_until_complete(cluster_kind(settings.kafka_kwargs()))
    finally:
        loop.close()
    if kind == "tansu":
        raise ConfigError(
            f"worker.store=rocksdb does not work on the embedded Tansu broker at "
            f"{settings.bootstrap}: Tansu reports a partition's end offset below its last "
            "records, and Faust's RocksDB recovery then stops at the first restart; use "
            "worker.store=memory on Tansu, or Apache Kafka (`recloop broker --kind kafka`)"
        )

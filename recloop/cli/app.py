"""The `recloop` command line. Each package registers its own subcommands.

Subcommand modules import their heavy dependencies (TensorFlow, Faust, onnxruntime) inside
the command functions, so `recloop --help` stays fast and a worker image without TensorFlow
can still run every command but `train`.
"""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from recloop.cli.demo import register as register_demo
from recloop.cli.replay import register as register_replay
from recloop.cli.simulate import register as register_simulator
from recloop.cli.train import register as register_train
from recloop.cli.worker import register as register_worker

app = typer.Typer(
    name="recloop",
    help="Stress-test recommender systems with simulated users, in real time, over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Stress-test recommender systems with simulated users, in real time, over Kafka."""


@app.command()
def broker(
    kind: Annotated[
        str, typer.Option(help="tansu (embedded, memory only) or kafka (Apache)")
    ] = "tansu",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 9092,
    fetch_only: Annotated[bool, typer.Option(help="Only download the Kafka jars")] = False,
) -> None:
    """Run a local Kafka-compatible broker on 127.0.0.1 until Ctrl-C."""
    from recloop.brokers import BROKERS, BrokerError, fetch_kafka_jars

    if kind not in BROKERS:
        raise typer.BadParameter(f"unknown broker {kind!r}; choose one of {sorted(BROKERS)}")
    try:
        if fetch_only:
            typer.echo(f"Kafka jars in {fetch_kafka_jars()}")
            return
        local = BROKERS[kind](port).start()
    except BrokerError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{local.name} broker ready at {local.bootstrap} (Ctrl-C to stop)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        local.wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
        typer.echo("broker stopped")


register_train(app)
register_worker(app)
register_simulator(app)
register_replay(app)
register_demo(app)

"""The `recloop` command line. Each package registers its own subcommands.

Subcommand modules import their heavy dependencies (TensorFlow, Faust, onnxruntime) inside
the command functions, so `recloop --help` stays fast and a worker image without TensorFlow
can still run every command but `train`.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from recloop.cli.compare import register as register_compare
from recloop.cli.demo import register as register_demo
from recloop.cli.replay import register as register_replay
from recloop.cli.simulate import register as register_simulator
from recloop.cli.topics import register as register_topics
from recloop.cli.train import register as register_train
from recloop.cli.worker import register as register_worker
from recloop.core.errors import EXIT_ERROR, RecLoopError


def report_error(exc: RecLoopError) -> int:
    """Print `exc` as one red line on stderr; returns the exit code of its kind of failure."""
    typer.secho(str(exc), fg="red", err=True)
    return exc.exit_code


class RecLoopGroup(TyperGroup):
    """The command group with RecLoop's one error handler around every command.

    It sits inside the click command (not only in `main`) so that typer's `CliRunner`, which
    invokes `app` directly, sees the same one line and exit code as a user does.
    """

    def invoke(self, ctx: Any) -> Any:
        from aiokafka.errors import KafkaError

        try:
            return super().invoke(ctx)
        except RecLoopError as exc:
            raise typer.Exit(report_error(exc)) from None
        except KafkaError as exc:  # a Kafka failure no command anticipated: still one line
            typer.secho(f"Kafka error: {exc!r}", fg="red", err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    name="recloop",
    cls=RecLoopGroup,
    help="Stress-test recommender systems with simulated users, in real time, over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    """The `recloop` command (console script and `python -m recloop`).

    Runs the app in standalone mode (usage errors exit 2, Ctrl-C 130); a `RecLoopError` that
    escapes outside a command still ends as one line and its exit code, never a traceback.
    """
    try:
        app()
    except RecLoopError as exc:
        sys.exit(report_error(exc))


@app.callback()
def _root() -> None:
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
    from recloop.brokers import BROKERS, fetch_kafka_jars

    if kind not in BROKERS:
        raise typer.BadParameter(f"unknown broker {kind!r}; choose one of {sorted(BROKERS)}")
    if fetch_only:
        typer.echo(f"Kafka jars in {fetch_kafka_jars()}")
        return
    local = BROKERS[kind](port).start()
    typer.echo(f"{local.name} broker ready at {local.bootstrap} (Ctrl-C to stop)")
    if tuned := local.client_settings():
        env = " ".join(f"RECLOOP_{k.upper()}={v}" for k, v in tuned.items())
        typer.echo(f"clients on this broker need: {env} (recloop demo sets it itself)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        local.wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
        typer.echo("broker stopped")


register_train(app)
register_topics(app)
register_worker(app)
register_simulator(app)
register_compare(app)
register_replay(app)
register_demo(app)

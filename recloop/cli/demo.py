"""`recloop demo`: the whole loop on one machine, from nothing to a report.

Starts the embedded broker (or uses `--bootstrap`), creates the topics, trains small models
into the model directory if there are none (a synthetic world, or the log given by `--data`),
starts the worker as a subprocess, waits until it answers, runs the simulated users with the
live view, writes the report and stops everything it started.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from aiokafka.errors import KafkaError

from recloop.cli.simulate import run_and_report
from recloop.cli.web import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    WebFlag,
    WebHost,
    WebOptions,
    WebPort,
    web_options,
)
from recloop.core.errors import RunError, kafka_unreachable
from recloop.core.settings import Strategy, Topics, WorkerConfig, load_settings
from recloop.processes import WorkerNotReady, start_worker, stop_process, wait_for_recommender
from recloop.simulator.scenario import Scenario, scenario_from_dict

if TYPE_CHECKING:
    from recloop.simulator.report import Summary

DEMO_WORLD = {"users": 500, "items": 300, "seed": 0}
"""The synthetic world the demo trains on and whose ground truth drives the users."""


def register(app: typer.Typer) -> None:
    """Add `recloop demo` to the CLI."""
    app.command()(demo)


class DemoError(RunError):
    """A step of the demo failed; the message says which and what to do."""


def world_of(model_dir: Path) -> dict[str, int] | None:
    """The synthetic world a model directory was trained on, from its card, if any."""
    from recloop.models.runtime import ModelDir, ModelLoadError

    try:
        source = ModelDir(model_dir).card.data_source
    except ModelLoadError:
        return None
    m = re.search(r"synthetic:users=(\d+),items=(\d+),seed=(\d+)", source)
    return {"users": int(m[1]), "items": int(m[2]), "seed": int(m[3])} if m else None


def ensure_models(model_dir: Path, data: str | None) -> None:
    """Train the small preset into `model_dir` unless a model card is already there."""
    if (model_dir / "card.json").is_file():
        typer.echo(f"using the models in {model_dir}")
        return
    typer.echo(f"no models in {model_dir}: training the small preset (about a minute)...")
    try:
        from recloop.models.train.config import TrainConfig
        from recloop.models.train.pipeline import train_all
    except ImportError as exc:
        raise DemoError(
            f"training needs the extra: pip install -e '.[train]' ({exc}); "
            "or point --model-dir at trained models"
        ) from None
    if data:
        from recloop.models.data.loaders import load

        log = load(data)
    else:
        from recloop.models.data.synthetic import SyntheticWorld

        log = SyntheticWorld.generate(**DEMO_WORLD).log
    started = time.monotonic()
    card = train_all(log, model_dir, TrainConfig.preset_named("small"))
    typer.echo(f"trained model {card.version} in {time.monotonic() - started:.0f}s")


def models_used(model_dir: Path, strategy: str) -> dict[str, str]:
    """Which models the demo serves and simulates with: directory, card version, strategy."""
    from recloop.models.runtime import ModelDir, ModelLoadError

    try:
        card = ModelDir(model_dir).card
    except ModelLoadError as exc:
        raise DemoError(f"cannot use the models in {model_dir}: {exc}") from None
    return {
        "dir": str(model_dir),
        "version": card.version,
        "created": card.created,
        "data_source": card.data_source,
        "strategy": strategy,
    }


def users_used(scenario: Scenario, models: dict[str, str]) -> str:
    """Which simulated users the demo ran: learned ones, or a synthetic world's ground truth."""
    population = scenario.population
    if population.source == "model":
        return (
            f"learned users: user generator and behaviour model ({population.behaviour}) of "
            f"model {models['version']}, trained on {models['data_source']}"
        )
    w = population.world
    return (
        f"synthetic world's users ({w.users} users x {w.items} items, seed {w.seed}), "
        "reacting through its true click model"
    )


def name_models(summary: Summary, broker: str, models: dict[str, str], users: str) -> None:
    """Name the demo's broker, models and users in the run's summary (so in report.html too)."""
    summary.broker = broker
    summary.versions = {**summary.versions, "users": users}
    # The recommender as seen in the answers (strategy, model_version) plus where it came from.
    summary.recommender = {
        **summary.recommender,
        "model_dir": models["dir"],
        "card_version": models["version"],
        "card_created": models["created"],
        "trained_on": models["data_source"],
    }


def demo_scenario(duration: float, rate: float, model_dir: Path) -> Scenario:
    """A gentle ramp then constant load. Models trained on a synthetic world get that world's
    users (its ground truth); models trained on a real log get learned users: drawn from the
    trained user generator, reacting through the trained behaviour model."""

    world = world_of(model_dir)
    population = (
        {"size": 2000, "source": "world", "world": world}
        if world
        else {"size": 2000, "source": "model", "model_dir": str(model_dir)}
    )
    ramp = min(10.0, duration / 4)
    return scenario_from_dict(
        {
            "name": "demo",
            "seed": 1,
            "stages": [
                {"kind": "ramp", "start": rate / 5, "end": rate, "duration": ramp},
                {"kind": "constant", "rate": rate, "duration": duration - ramp},
            ],
            "population": population,
            "user": {"patience": "3s", "think_time": "1s"},
            "thresholds": ["p99 latency < 3s", "abandonment < 15%"],
        },
        "demo scenario",
    )


def run_demo(
    *,
    duration: float = 60.0,
    rate: float = 20.0,
    bootstrap: str | None = None,
    model_dir: Path = Path("artifacts/models"),
    data: str | None = None,
    strategy: Strategy = Strategy.ONNX,
    live: bool = True,
    out: Path | None = None,
    web: WebOptions | None = None,
) -> int:
    """Run the demo; returns the simulator's exit code (0 when every threshold passed)."""
    from recloop.brokers import BROKERS, EmbeddedBroker, cluster_kind, free_port
    from recloop.core.topics import ensure_topics
    from recloop.simulator.population import Shard

    model_dir = model_dir.resolve()
    ensure_models(model_dir, data)
    models = models_used(model_dir, strategy)
    broker = None
    worker = None
    workdir = Path(tempfile.mkdtemp(prefix="recloop-demo-"))
    try:
        if bootstrap is None:
            typer.echo("starting the embedded broker (Tansu)...")
            broker = EmbeddedBroker().start()
            bootstrap = broker.bootstrap
        if broker is not None:
            kind, tuned = "tansu (embedded)", broker.client_settings()
        else:
            given = load_settings(bootstrap=bootstrap)
            try:
                found = asyncio.run(cluster_kind(given.kafka_kwargs()))
            except KafkaError as exc:
                # The same line as every other command: a failed login or certificate is named.
                raise DemoError(
                    kafka_unreachable(bootstrap, exc, given.security.protocol)
                ) from None
            kind, tuned = f"{found} (--bootstrap)", BROKERS[found].client_settings()
        # Per broker kind: on Tansu every consumer needs a short fetch wait (see brokers.py).
        base = load_settings(bootstrap=bootstrap, **tuned)
        broker_name = f"{kind} at {bootstrap}, fetch wait {base.fetch_max_wait_ms} ms"
        models_line = f"models {model_dir} version {models['version']} (strategy {strategy})"
        typer.echo(f"broker: {broker_name}; {models_line}")
        tag = uuid.uuid4().hex[:6]
        settings = base.model_copy(
            update={
                "topics": base.topics if broker is None else Topics(partitions=4),
                "worker": WorkerConfig(
                    app_id=f"recloop-demo-{tag}",
                    strategy=strategy,
                    model_dir=model_dir,
                    data_dir=workdir / "worker",
                    metrics_port=free_port(),
                    web_port=free_port(),
                ),
            }
        )
        asyncio.run(ensure_topics(settings))
        log_path = workdir / "worker.log"
        typer.echo(f"starting the worker (strategy {strategy}); log: {log_path}")
        worker = start_worker(settings, log_path)
        try:
            waited = asyncio.run(wait_for_recommender(settings))
        except (WorkerNotReady, KafkaError) as exc:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise DemoError(f"worker not ready: {exc}\n--- worker log ---\n{tail}") from None
        typer.echo(f"worker answering after {waited:.1f}s; simulating for {duration:.0f}s")
        scenario = demo_scenario(duration, rate, model_dir)
        users = users_used(scenario, models)
        typer.echo(f"users: {users}")
        run_id = uuid.uuid4().hex[:12]
        out = out or Path("reports") / run_id
        code = run_and_report(
            scenario,
            settings,
            Shard(),
            run_id,
            out,
            0,
            live,
            broker_name=broker_name,
            web=web,
            amend=lambda summary: name_models(summary, broker_name, models, users),
        )
        typer.echo(f"demo used: broker {broker_name}; {models_line}; {users}")
        return code
    finally:
        if worker is not None:
            stop_process(worker)
        if broker is not None:
            broker.stop()


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of simulated load")] = 60.0,
    rate: Annotated[float, typer.Option(help="Sessions per second")] = 20.0,
    bootstrap: Annotated[
        str | None, typer.Option(help="Use this Kafka instead of the embedded broker")
    ] = None,
    model_dir: Annotated[Path, typer.Option(help="Models (trained here if missing)")] = Path(
        "artifacts/models"
    ),
    data: Annotated[
        str | None,
        typer.Option(help="kind:path of a training log (default: a synthetic world)"),
    ] = None,
    strategy: Annotated[Strategy, typer.Option(help="Worker strategy")] = Strategy.ONNX,
    live: Annotated[bool, typer.Option(help="Live terminal view")] = True,
    out: Annotated[Path | None, typer.Option(help="Report directory")] = None,
    web: WebFlag = False,
    web_port: WebPort = DEFAULT_PORT,
    web_host: WebHost = DEFAULT_HOST,
) -> None:
    """The whole loop: broker, models, worker and simulated users, then the report."""
    code = run_demo(
        duration=duration,
        rate=rate,
        bootstrap=bootstrap,
        model_dir=model_dir,
        data=data,
        strategy=strategy,
        live=live,
        out=out,
        web=web_options(web, web_port, web_host),
    )
    raise typer.Exit(code)

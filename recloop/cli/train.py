"""`recloop` subcommands owned by the `models` package: data, train, evaluate.

TensorFlow is imported inside `train` only, so the other commands work without the extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recloop.core.errors import RunError


def data(
    spec: Annotated[
        str, typer.Argument(help="kind:path, e.g. movielens:data/movielens-latest-small")
    ],
    lenient: Annotated[
        bool, typer.Option(help="Skip and count bad rows instead of failing")
    ] = False,
    write_jsonl: Annotated[Path | None, typer.Option(help="Write canonical events here")] = None,
) -> None:
    """Load a data set, print a summary, optionally convert it to canonical JSONL.

    Logs without session ids (MovieLens, Taobao, RetailRocket) are sessionised as training does
    it (a new session after 30 minutes without events), so `sessions` is what the models see.
    """
    import msgspec

    from recloop.models.data.loaders import load
    from recloop.models.data.loaders import write_jsonl as write
    from recloop.models.data.preprocess import DEFAULT_SESSION_GAP, sessionise

    log = load(spec, lenient=lenient)
    if not (log.session != "").any():
        log = sessionise(log, DEFAULT_SESSION_GAP)
        typer.echo(
            f"sessions: none in the log; split by {DEFAULT_SESSION_GAP / 60:.0f}-minute gaps"
        )
    typer.echo(msgspec.json.format(msgspec.json.encode(log.summary())).decode())
    if write_jsonl:
        typer.echo(f"wrote {write(log, write_jsonl)} events to {write_jsonl}")


def train(
    data_spec: Annotated[str, typer.Option("--data", help="kind:path of the training log")] = (
        "movielens:data/movielens-latest-small"
    ),
    out: Annotated[Path, typer.Option(help="Model directory to write")] = Path("artifacts/models"),
    preset: Annotated[str, typer.Option(help="small (fast) or full")] = "full",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Train all models (TensorFlow), export ONNX, write the model card and offline metrics."""
    from recloop.models.data.loaders import load

    try:
        from recloop.models.train.config import TrainConfig
        from recloop.models.train.pipeline import train_all
    except ImportError as exc:
        raise RunError(f"training needs the extra: pip install -e '.[train]' ({exc})") from None
    from recloop.models.evaluate import format_table

    try:
        config = TrainConfig.preset_named(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    config.seed = seed
    card = train_all(load(data_spec), out, config)
    typer.echo(f"model version {card.version} written to {out}")
    typer.echo(
        f"training seconds: {json.dumps({k: round(v, 1) for k, v in card.training_seconds.items()})}"
    )
    typer.echo(format_table(card.metrics))


def evaluate(
    model_dir: Annotated[Path, typer.Option(help="Model directory")] = Path("artifacts/models"),
    data_spec: Annotated[
        str | None, typer.Option("--data", help="kind:path (default: the card's training data)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Metrics JSON (default: model dir)")] = None,
) -> None:
    """Offline metrics on the held-out chronological split, baselines beside the model."""
    from recloop.models.data.loaders import load
    from recloop.models.evaluate import evaluate_all, format_table
    from recloop.models.runtime import ModelDir
    from recloop.models.train.config import TrainConfig
    from recloop.models.train.pipeline import prepare

    md = ModelDir(model_dir)
    spec = data_spec or md.card.data_source
    cfg = md.card.training_config
    config = TrainConfig.preset_named(str(cfg.get("preset", "full")))
    config.seed = int(cfg.get("seed", 0))  # type: ignore[arg-type]
    prep = prepare(load(spec), config)
    if prep.vocab.sha256() != md.card.vocab_sha256:
        typer.secho(
            "warning: this data gives a different vocabulary than the model's; "
            "unknown items count as misses",
            fg="yellow",
            err=True,
        )
    metrics = evaluate_all(md, prep.held)
    typer.echo(f"model {md.version} on {spec}")
    typer.echo(format_table(metrics))
    target = out or model_dir / "metrics.json"
    target.write_text(json.dumps(metrics, indent=2))
    typer.echo(f"metrics written to {target}")


def fidelity(
    data_spec: Annotated[
        str, typer.Option("--data", help="kind:path of the log the models were trained on")
    ],
    model_dir: Annotated[Path, typer.Option(help="Model directory")] = Path("artifacts/models"),
    out: Annotated[Path, typer.Option(help="Directory for fidelity.json and fidelity.html")] = (
        Path("reports/fidelity")
    ),
    users: Annotated[int, typer.Option(min=1, help="Simulated users")] = 500,
    behaviour: Annotated[str, typer.Option(help="Behaviour model: lstm or lm")] = "lstm",
    recommender: Annotated[
        str, typer.Option(help="Slates from: transformer, popular, cooccurrence or random")
    ] = "transformer",
    seed: Annotated[int, typer.Option(help="Random seed of the simulated users")] = 0,
    rankings: Annotated[
        bool, typer.Option(help="Also rank the four recommenders by simulated CTR vs NDCG@10")
    ] = True,
) -> None:
    """Fidelity report: behaviour predictions and simulated vs real users on the hold-out."""
    from recloop.models.data.loaders import load
    from recloop.models.fidelity import RECOMMENDERS, SimulationConfig, fidelity_report
    from recloop.models.fidelity import write_report as write
    from recloop.models.runtime import ModelDir

    if behaviour not in ("lstm", "lm"):
        raise typer.BadParameter("use lstm or lm", param_hint="--behaviour")
    if recommender not in RECOMMENDERS:
        raise typer.BadParameter(
            f"use one of {', '.join(RECOMMENDERS)}", param_hint="--recommender"
        )
    md = ModelDir(model_dir)
    config = SimulationConfig(users=users, behaviour=behaviour, recommender=recommender, seed=seed)
    report = fidelity_report(load(data_spec), md, config, rankings)
    json_path, html_path = write(report, out)
    for action in ("click", "buy_given_click", "leave"):
        shown = ", ".join(
            f"{name}={by_action[action]['auc']:.3f}"
            for name, by_action in report.prediction.items()
        )
        typer.echo(f"{action:16s} AUC  {shown}")
    for name, value in report.js.items():
        typer.echo(f"{name:24s} JS {value:.4f}  (noise floor {report.noise_floor[name]:.4f})")
    if report.ranking:
        r = report.ranking
        typer.echo(
            f"ranking agreement (simulated CTR vs NDCG@10): spearman={r['spearman']:.3f} "
            f"kendall={r['kendall_tau']:.3f}  CTR {r['simulated_ctr']}"
        )
    typer.echo(f"report written to {json_path} and {html_path}")


def register(app: typer.Typer) -> None:
    """Add this package's subcommands to the `recloop` CLI."""
    app.command("data")(data)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("fidelity")(fidelity)

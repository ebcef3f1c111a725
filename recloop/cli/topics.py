"""`recloop topics create|describe`: the contract's topics (events, recommendations, dead letters).

Names, partitions and replication factor come from the settings (`RECLOOP_TOPICS__*`), so the
same variables point the worker, the simulator and these commands at the same topics.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from recloop.core.errors import EXIT_FAILED

if TYPE_CHECKING:  # imported inside the commands, to keep --help fast
    from recloop.core.topics import TopicInfo

topics_app = typer.Typer(
    name="topics",
    help="Create or describe the contract's topics (events, recommendations, dead letters).",
    no_args_is_help=True,
)

Roles = Annotated[
    list[str] | None,
    typer.Argument(
        help="Which topics: events, recommendations, dead-letters (default: all three)",
        metavar="ROLE",
        show_default=False,
    ),
]
Bootstrap = Annotated[str | None, typer.Option(help="Kafka bootstrap servers")]


def register(app: typer.Typer) -> None:
    """Add `recloop topics` to the `recloop` CLI."""
    app.add_typer(topics_app)


@topics_app.command()
def create(
    roles: Roles = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions of new topics (default: settings)")
    ] = None,
    replication_factor: Annotated[
        int | None, typer.Option(min=1, help="Replication factor of new topics (default: settings)")
    ] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Create the missing topics; existing ones are left as they are. Prints what is there."""
    from recloop.core.settings import load_settings
    from recloop.core.topics import describe_topics, ensure_topics

    settings = load_settings(bootstrap=bootstrap)

    async def run() -> tuple[list[str], list[TopicInfo]]:
        created = await ensure_topics(
            settings, roles=roles, partitions=partitions, replication_factor=replication_factor
        )
        return created, await describe_topics(settings, roles)

    created, infos = asyncio.run(run())
    _print(infos, set(created), settings.bootstrap)


@topics_app.command()
def describe(roles: Roles = None, bootstrap: Bootstrap = None) -> None:
    """Show each topic's partitions and replication factor; exits 1 if one is missing."""
    from recloop.core.settings import load_settings
    from recloop.core.topics import describe_topics

    settings = load_settings(bootstrap=bootstrap)
    infos = asyncio.run(describe_topics(settings, roles))
    _print(infos, set(), settings.bootstrap)
    if missing := [i.name for i in infos if not i.exists]:
        typer.secho(
            f"missing on {settings.bootstrap}: {', '.join(missing)}; "
            "create with `recloop topics create`",
            fg="red",
            err=True,
        )
        raise typer.Exit(EXIT_FAILED)  # a check that failed (README, "Exit codes")


def _print(infos: list[TopicInfo], created: set[str], bootstrap: str) -> None:
    """One line per topic: role, name, partitions, replication factor, state."""
    rows = [("role", "topic", "partitions", "replication", "state")]
    for info in infos:
        state = "created" if info.name in created else "exists" if info.exists else "missing"
        rows.append(
            (
                info.role,
                info.name,
                "-" if info.partitions is None else str(info.partitions),
                "-" if info.replication_factor is None else str(info.replication_factor),
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    typer.echo(f"topics on {bootstrap}:")
    for row in rows:
        typer.echo(
            "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        )

"""`recloop` subcommands owned by the `simulator` package."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's subcommands to the `recloop` CLI."""

"""The `recloop` command line: the only place that wires the packages together."""

from recloop.cli.app import app, main

__all__ = ["app", "main"]

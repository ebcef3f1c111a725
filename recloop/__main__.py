"""`python -m recloop` is the `recloop` command."""

from recloop.cli import app

app()

"""`python -m recloop` is the `recloop` command."""

from recloop.cli.app import main

main()

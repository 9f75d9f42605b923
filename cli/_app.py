"""The command tree. Each group lives in its own module and calls the component it drives."""

from __future__ import annotations

import typer

from runstream.cli import _consume, _db, _stack, _sync

app = typer.Typer(
    name="runstream",
    help="Watch machine-learning training live: Kafka in, PostgreSQL and Prometheus out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_stack.app, name="stack")
app.add_typer(_db.app, name="db")
app.add_typer(_consume.app, name="consume")
app.command(name="sync")(_sync.sync)


def main() -> None:
    """Entry point of the `runstream` script."""
    app()

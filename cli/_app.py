"""The command tree. Each group lives in its own module and calls the component it drives."""

from __future__ import annotations

import typer

from runstream.cli import (
    _consume,
    _db,
    _delete,
    _export,
    _grafana,
    _launch,
    _logcmd,
    _plot,
    _query,
    _stack,
    _sync,
    _watch,
)
from runstream.cli._format import unwrap
from runstream.cli._groups import group_with_default

app = typer.Typer(
    name="runstream",
    help="Watch machine-learning training live: Kafka in, PostgreSQL and Prometheus out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_stack.app, name="stack")
app.add_typer(_db.app, name="db")
app.add_typer(_consume.app, name="consume")
app.add_typer(_grafana.app, name="grafana")
app.command(name="sync")(_sync.sync)
app.command(
    name="run",
    help=unwrap(_launch.run.__doc__),
    context_settings={"allow_interspersed_args": False},
    no_args_is_help=True,
)(_launch.run)
app.command(name="watch", help=unwrap(_watch.watch.__doc__))(_watch.watch)
runs_app = group_with_default("List runs (the default: `runstream runs [OPTIONS]`) or delete them.")
runs_app.command(name="list", help=unwrap(_query.runs.__doc__))(_query.runs)
runs_app.command(name="delete", help=unwrap(_delete.runs_delete.__doc__))(_delete.runs_delete)
app.add_typer(runs_app, name="runs")
experiments_app = typer.Typer(
    help="Experiments: delete one with all its runs.", no_args_is_help=True
)
experiments_app.command(name="delete", help=unwrap(_delete.experiments_delete.__doc__))(
    _delete.experiments_delete
)
app.add_typer(experiments_app, name="experiments")
app.command(name="show", help=unwrap(_query.show.__doc__))(_query.show)
app.command(name="metrics", help=unwrap(_export.metrics.__doc__))(_export.metrics)
app.command(name="plot", help=unwrap(_plot.plot.__doc__))(_plot.plot)
app.command(name="log", help=unwrap(_logcmd.log.__doc__))(_logcmd.log)


def main() -> None:
    """Entry point of the `runstream` script."""
    app()

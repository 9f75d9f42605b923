"""What the CLI reads from PostgreSQL, through the read layer (`runstream.consumers.read`).

The queries live there; this module only turns its lookup errors into `CommandError`s with the
CLI's exit codes and hints. Every function takes a connection of the read-only role
(`runstream.cli._connect.reader`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from runstream._errors import AmbiguousRunError, NotFoundError
from runstream.cli._connect import Connection
from runstream.cli._exits import CommandError, ExitCode
from runstream.consumers.read import queries
from runstream.consumers.read.queries import (
    Row,
    RunFilter,
    database_now,
    extras,
    launcher_state,
    log_tail,
    metric_names,
    metric_summaries,
    ranks,
    recent_values,
)

__all__ = [
    "Row",
    "RunFilter",
    "database_now",
    "extras",
    "get_run",
    "launcher_state",
    "list_runs",
    "log_tail",
    "metric_names",
    "metric_summaries",
    "pick_run",
    "ranks",
    "recent_values",
    "unknown_metric",
]


async def list_runs(
    conn: Connection, experiment: str | None, status: str | None, limit: int
) -> list[Row]:
    """Newest runs first, optionally of one experiment and one status."""
    return await queries.list_runs(conn, RunFilter(experiment, status, limit=limit))


async def get_run(conn: Connection, run_id: str) -> Row:
    """The run `run_id` (or the only run whose id starts with it); `CommandError` otherwise."""
    try:
        return await queries.get_run(conn, run_id)
    except AmbiguousRunError as exc:
        raise CommandError(exc.message, "Give more of the id.", ExitCode.USAGE) from None
    except NotFoundError as exc:
        raise _not_found(exc) from None


async def pick_run(conn: Connection, experiment: str, *, latest: bool) -> Row:
    """The newest run of `experiment` (`latest`), or its only live run."""
    try:
        return await queries.pick_run(conn, experiment, latest=latest)
    except AmbiguousRunError as exc:
        several = "Name one run id, or add --latest for the newest."
        raise CommandError(exc.message, several, ExitCode.USAGE) from None
    except NotFoundError as exc:
        hint: str | None = "--latest picks the newest run, whatever its status."
        if latest:
            hint = None
        raise CommandError(exc.message, hint, ExitCode.NOT_FOUND) from None


def _not_found(exc: NotFoundError) -> CommandError:
    hint = "`runstream runs` lists the runs."
    if exc.suggestions:
        hint = "Did you mean: " + ", ".join(exc.suggestions) + "?"
    return CommandError(exc.message, hint, ExitCode.NOT_FOUND)


def unknown_metric(names: Sequence[str], wanted: str, runs: str) -> CommandError:
    """The error for a metric that `runs` never logged, with the names they did log."""
    close = difflib.get_close_matches(wanted, names, n=3)
    if close:
        hint = "Did you mean: " + ", ".join(close) + "?"
    elif names:
        hint = "Logged metrics: " + ", ".join(names[:20])
    else:
        hint = "No scalar metric has been stored for it yet."
    return CommandError(f"{runs} logged no metric {wanted!r}", hint, ExitCode.NOT_FOUND)

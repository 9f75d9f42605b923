"""`runstream runs delete` and `runstream experiments delete`: remove runs from PostgreSQL.

The rows to go are counted and shown first, table by table; the deletion happens once confirmed
(a prompt on a terminal, `--yes` elsewhere) in one transaction, as the writer role
(`RUNSTREAM_DATABASE_URL`: the read-only role cannot delete), and what PostgreSQL removed is
printed. See `runstream.consumers._deletion` for what is refused.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from runstream._settings import Settings
from runstream.cli._connect import Connection, writer
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.consumers._deletion import (
    DeletionRefused,
    Removal,
    delete,
    plan_experiment_deletion,
    plan_run_deletion,
)

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Delete without asking (needed off a terminal).")
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Also delete runs that are not finished (running, …).")
]
Planner = Callable[[Connection], Awaitable[Removal]]


@reports_errors
def runs_delete(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID", help="Whole run ids.")],
    yes: YesOption = False,
    force: ForceOption = False,
) -> None:
    """Delete runs: every row of each, in every table (counted and confirmed first)."""
    asyncio.run(_carry_out(lambda conn: plan_run_deletion(conn, run_ids, force=force), yes))


@reports_errors
def experiments_delete(
    names: Annotated[list[str], typer.Argument(metavar="EXPERIMENT", help="Experiment names.")],
    yes: YesOption = False,
    force: ForceOption = False,
) -> None:
    """Delete experiments and every run in them (counted and confirmed first)."""
    asyncio.run(_carry_out(lambda conn: plan_experiment_deletion(conn, names, force=force), yes))


async def _carry_out(plan_with: Planner, yes: bool) -> None:
    async with writer(Settings().database()) as conn:
        try:
            plan = await plan_with(conn)
        except DeletionRefused as exc:
            code = ExitCode.NOT_FOUND if str(exc).startswith("no such") else ExitCode.USAGE
            raise CommandError(str(exc), "Nothing was deleted.", code) from exc
        typer.echo(f"to delete: {describe(plan)}", err=True)
        if not (yes or _confirmed(plan)):
            raise CommandError("nothing deleted", "Confirm, or give --yes.")
        removed = await delete(conn, plan)
    typer.echo(f"deleted {describe(removed)}")


def describe(removal: Removal) -> str:
    """`3 runs, 1,204 rows (metrics 1,200, runs 3, …)`: tables with no row left out."""
    tables = ", ".join(f"{t} {n:,}" for t, n in sorted(removal.rows.items()) if n)
    runs = f"{len(removal.runs)} run{'s' * (len(removal.runs) != 1)}"
    values = f", {removal.values:,} metric values" if removal.values else ""
    return f"{runs}, {removal.total:,} rows{values}" + (f" ({tables})" if tables else "")


def _confirmed(plan: Removal) -> bool:
    if not sys.stdin.isatty():
        raise CommandError("refusing to delete without confirmation off a terminal", "Give --yes.")
    return typer.confirm(f"Delete {plan.total:,} rows of {len(plan.runs)} runs?", default=False)

"""`runstream watch`: a run, live in the terminal, from PostgreSQL, until it ends.

It reads only the database (works from any machine that reaches it), once per `--interval`.
It ends when the run ends, printing a summary; the exit code says how the run ended:
0 completed, 1 failed, 5 canceled (130 when you stop watching with Ctrl-C).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from runstream._settings import Settings
from runstream.cli import _reads
from runstream.cli._connect import Connection, reader
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.cli._watchview import Snapshot, summary, take_snapshot, view

console = Console(highlight=False)
EXIT_CODES = {"completed": ExitCode.OK, "failed": ExitCode.RUN_FAILED}


@reports_errors
def watch(
    run_id: Annotated[
        str | None, typer.Argument(help="A run id, or its first characters.", show_default=False)
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Watch this experiment's live run.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="With --experiment: its newest run, live or not.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between two readings.")
    ] = 1.0,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for a run id to appear.")
    ] = 10.0,
) -> None:
    """Watch a run live: status, ranks, metrics with sparklines, the log; exit with its status."""
    if (run_id is None) == (experiment is None):
        raise CommandError("give either a RUN_ID or --experiment", "e.g. runstream watch 1f3c2a")
    if latest and experiment is None:
        raise CommandError("--latest needs --experiment")
    final = asyncio.run(_watch(run_id, experiment, latest=latest, interval=interval, wait=wait))
    console.print(summary(final))
    raise typer.Exit(EXIT_CODES.get(final.run["status"], ExitCode.RUN_CANCELED))


async def _watch(
    run_id: str | None, experiment: str | None, *, latest: bool, interval: float, wait: float
) -> Snapshot:
    async with reader(Settings().database(read_only=True)) as conn:
        found = await _find(conn, run_id, experiment, latest=latest, wait=wait)
        snapshot = await take_snapshot(conn, found)
        if snapshot.finished:
            console.print(view(snapshot))
            return snapshot
        with Live(view(snapshot), console=console, auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval)
                snapshot = await take_snapshot(conn, found)
                live.update(view(snapshot), refresh=True)
                if snapshot.finished:
                    return snapshot


async def _find(
    conn: Connection, run_id: str | None, experiment: str | None, *, latest: bool, wait: float
) -> str:
    """The full id of the run to watch; a run id not stored yet is waited for up to `wait`."""
    if experiment is not None:
        return str((await _reads.pick_run(conn, experiment, latest=latest))["run_id"])
    assert run_id is not None
    deadline = time.monotonic() + wait
    with console.status(f"waiting for run {run_id}…"):
        while True:
            try:
                return str((await _reads.get_run(conn, run_id))["run_id"])
            except CommandError as exc:
                if exc.code != ExitCode.NOT_FOUND or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.5)

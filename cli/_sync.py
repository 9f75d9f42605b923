"""`runstream sync`: deliver what spools hold from crashed or offline runs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from runstream._settings import Settings
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.producer._sync import pending_bytes, sync_spool

console = Console(stderr=True)


@reports_errors
def sync(
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Spool directory (default RUNSTREAM_SPOOL_DIR)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
) -> None:
    """Deliver every event left on disk by runs that ended before Kafka acknowledged it."""
    settings = Settings()
    config = settings.producer()
    if spool is not None:
        config = replace(config, spool_dir=spool)
    total = pending_bytes(config.spool_dir)
    columns = (TextColumn("sync"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sync", total=max(total, 1))

        def advance(done: int, _total: int) -> None:
            progress.update(task, completed=done)

        try:
            report = asyncio.run(asyncio.wait_for(sync_spool(config, advance), timeout))
        except TimeoutError:
            raise CommandError(
                f"Kafka at {config.kafka.bootstrap_servers} did not take the events within "
                f"{timeout:g}s; they stay in {config.spool_dir}",
                "Check the broker and run `runstream sync` again.",
                ExitCode.KAFKA,
            ) from None
    console.print(
        f"delivered {report.events} events from {report.folders} spool folders"
        + (f"; {report.busy} belong to live runs and deliver themselves" if report.busy else "")
    )

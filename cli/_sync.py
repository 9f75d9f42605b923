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
from runstream.producer._spool import Destination
from runstream.producer._sync import SyncReport, pending_bytes, sync_spool

console = Console(stderr=True)


def parse_destination(text: str, topic: str) -> Destination:
    """`HOST:PORT[,HOST:PORT…][/TOPIC]` (the topic defaults to `topic`)."""
    servers, _, named = text.partition("/")
    if not servers.strip() or ":" not in servers:
        raise CommandError(f"--to {text!r}: expected HOST:PORT[,HOST:PORT…][/TOPIC]")
    return Destination(servers.strip(), named.strip() or topic)


@reports_errors
def sync(
    spool: Annotated[
        Path | None, typer.Option("--spool", help="Spool directory (default RUNSTREAM_SPOOL_DIR)")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Send every folder to HOST:PORT[,…][/TOPIC] instead of where each one records "
            "it was going (the topic defaults to RUNSTREAM_TOPIC)",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 300.0,
) -> None:
    """Deliver every event left on disk by runs that ended before Kafka acknowledged it.

    Each spool folder goes to the Kafka servers and topic it was written for, unless --to says
    otherwise. Events over their size limit are moved to the spool's dead-letter file.
    """
    settings = Settings()
    config = settings.producer()
    if spool is not None:
        config = replace(config, spool_dir=spool)
    destination = None if to is None else parse_destination(to, config.kafka.topic)
    total = pending_bytes(config.spool_dir)
    columns = (TextColumn("sync"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sync", total=max(total, 1))

        def advance(done: int, _total: int) -> None:
            progress.update(task, completed=done)

        report = asyncio.run(sync_spool(config, advance, to=destination, within=timeout))
    _say(report)
    if report.left:
        raise CommandError(
            f"left {report.left} events on disk: Kafka did not take them within {timeout:g}s; "
            f"they stay in {config.spool_dir}",
            "Check the broker and run `runstream sync` again.",
            ExitCode.KAFKA,
        )


def _say(report: SyncReport) -> None:
    console.print(f"delivered {report.events} events from {report.folders} spool folders")
    if report.skipped:
        console.print(
            f"[yellow]skipped {report.skipped} events over their size limit[/]: "
            f"moved to {report.dead_letters}"
        )
    if report.busy:
        console.print(f"{report.busy} spool folders belong to live runs and deliver themselves")

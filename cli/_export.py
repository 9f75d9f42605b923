"""`runstream metrics`: a run's full metric history as CSV, JSON, JSON lines or Parquet.

Rows stream from a server-side cursor in batches (the read layer, `runstream.consumers.read`),
each metric one index range scan in step order, inside one read-only snapshot; no more than one
batch is in memory, so a 10M-point export needs no more memory than a small one. A file is
written as `FILE.part` and renamed when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runstream._settings import Settings
from runstream.cli import _reads
from runstream.cli._connect import Connection, reader
from runstream.cli._exits import CommandError, reports_errors
from runstream.cli._writers import open_writer
from runstream.consumers.read import queries

stderr = Console(stderr=True)


class ExportFormat(StrEnum):
    """The formats `--format` accepts."""

    csv = "csv"
    json = "json"
    jsonl = "jsonl"
    parquet = "parquet"


@reports_errors
def metrics(
    run_id: Annotated[str, typer.Argument(help="A run id, or its first characters.")],
    names: Annotated[
        list[str] | None, typer.Argument(metavar="NAME", help="Only these metrics.")
    ] = None,
    rank: Annotated[int | None, typer.Option("--rank", "-r", min=0, help="Only this rank.")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ExportFormat.csv
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export every logged value (name, step, rank, time, value), streaming, in step order."""
    if fmt is ExportFormat.parquet and output is None:
        raise CommandError("--format parquet writes a file", "Add -o FILE.parquet.")
    with _destination(output) as sink:
        count = asyncio.run(_export(run_id, names or [], rank, fmt.value, sink))
    if output is not None:
        stderr.print(f"wrote {count} values to {output}", highlight=False)


@contextlib.contextmanager
def _destination(output: Path | None) -> Iterator[BinaryIO]:
    """stdout, or `output` written through `output.part` and renamed once complete."""
    if output is None:
        yield sys.stdout.buffer
        return
    part = output.with_name(output.name + ".part")
    try:
        with part.open("wb") as file:
            yield file
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, output)


async def _export(run_id: str, names: list[str], rank: int | None, fmt: str, sink: BinaryIO) -> int:
    async with reader(Settings().database(read_only=True)) as conn:
        found = (await _reads.get_run(conn, run_id))["run_id"]
        await _check_names(conn, found, names)
        writer = open_writer(fmt, sink)
        total = await queries.metric_total(conn, found, names, rank)
        written = 0
        with _progress(total) as advance:
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                async for batch in queries.export_batches(conn, found, names, rank):
                    writer.write(batch)
                    written += len(batch)
                    advance(len(batch))
        writer.close()
        return written


async def _check_names(conn: Connection, run_id: str, names: list[str]) -> None:
    known = await _reads.metric_names(conn, [run_id])
    for name in names:
        if name not in known:
            raise _reads.unknown_metric(known, name, f"run {run_id}")


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    columns = (TextColumn("export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    quiet = not stderr.is_terminal
    with Progress(*columns, console=stderr, transient=True, disable=quiet) as progress:
        task = progress.add_task("export", total=max(total, 1))

        def advance(count: int) -> None:
            progress.advance(task, count)

        yield advance

"""`runstream runs` and `runstream show`: what is in PostgreSQL, as tables or as `--json`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from runstream._settings import Settings
from runstream.cli import _reads
from runstream.cli._connect import reader
from runstream.cli._console import column_limit, output_console
from runstream.cli._exits import reports_errors
from runstream.cli._format import (
    between,
    dumps,
    duration,
    first_line,
    number,
    shown,
    status_markup,
)

stdout = output_console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class RunStatus(StrEnum):
    """The states `--status` accepts."""

    running = "running"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"
    stalled = "stalled"
    lost = "lost"


@reports_errors
def runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    status: Annotated[
        RunStatus | None, typer.Option("--status", "-s", help="Only runs in this state.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    state = status.value if status else None
    rows = asyncio.run(_list(experiment, state, limit))
    if as_json:
        typer.echo(dumps(rows))
    elif rows:
        stdout.print(runs_table(rows))
    else:
        typer.echo("no runs" + (f" in experiment {experiment!r}" if experiment else ""), err=True)


async def _list(experiment: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
    async with reader(Settings().database(read_only=True)) as conn:
        return await _reads.list_runs(conn, experiment, status, limit)


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """The `runstream runs` table."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    table.add_column("run id", no_wrap=True, overflow="ellipsis")
    short = stdout.width < 120  # every command takes an id's first characters
    limit = column_limit(stdout, 20)
    table.add_column("experiment", no_wrap=True, overflow="ellipsis", max_width=limit)
    table.add_column("name", no_wrap=True, overflow="ellipsis", max_width=limit)
    for column in ("status", "started", "took"):
        table.add_column(column, no_wrap=True)
    for column in ("step", "ranks", "exit"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        end = row["ended_at"] or (
            None if row["status"] != "running" else datetime.now().astimezone()
        )
        table.add_row(
            row["run_id"][:12] if short else row["run_id"],
            shown(row["experiment"]),
            shown(row["name"] or ""),
            status_markup(row["status"]),
            _when(row["started_at"], short=True),
            duration(between(row["started_at"], end)),
            _int(row["last_step"]),
            str(row["world_size"]),
            _int(row["exit_code"]),
        )
    return table


@reports_errors
def show(
    run_id: Annotated[str, typer.Argument(help="A run id, or its first characters.")],
    as_json: JsonOption = False,
) -> None:
    """One run: status, params, tags, and per metric its last, min and max value and count."""
    details = asyncio.run(_details(run_id))
    if as_json:
        typer.echo(dumps(details))
    else:
        stdout.print(details_view(details))


async def _details(run_id: str) -> dict[str, Any]:
    async with reader(Settings().database(read_only=True)) as conn:
        run = await _reads.get_run(conn, run_id)
        found = run["run_id"]
        details = {
            "run": run,
            "ranks": await _reads.ranks(conn, found),
            "metrics": await _reads.metric_summaries(conn, found),
        }
        return details | await _reads.extras(conn, found)


def details_view(details: dict[str, Any]) -> Group:
    """The `runstream show` page."""
    run = details["run"]
    parts: list[Any] = [_facts(run)]
    for kind, mapping in (("param", run["params"]), ("tag", run["tags"])):
        if mapping:
            parts.append(_pairs(kind, mapping))
    if details["metrics"]:
        parts.append(metrics_table(details["metrics"]))
    return Group(*parts, *_extras(details))


def _extras(details: dict[str, Any]) -> list[Table]:
    """Text metrics (last value), tables (row counts) and files, where the run has any."""
    tables = []
    if details["text"]:
        text = Table("text", "step", "value", title="text metrics", title_justify="left")
        for row in details["text"]:
            text.add_row(shown(row["name"]), str(row["step"]), shown(first_line(row["value"])))
        tables.append(text)
    for kind, columns in (("tables", ("name", "rows")), ("files", ("name", "media_type", "size"))):
        if details[kind]:
            table = Table(*columns, title=kind, title_justify="left")
            for row in details[kind]:
                table.add_row(*(shown(str(row[c])) for c in columns))
            tables.append(table)
    return tables


def _facts(run: dict[str, Any]) -> Table:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    end = run["ended_at"]
    rows = [
        ("run", shown(run["run_id"])),
        ("experiment", shown(run["experiment"])),
        ("name", shown(run["name"] or "-")),
        ("status", status_markup(run["status"]) + _exit_text(run["exit_code"])),
        ("started", _when(run["started_at"])),
        ("ended", _when(end)),
        ("took", duration(between(run["started_at"], end))),
        ("ranks", str(run["world_size"])),
        ("host", shown(f"{run['host'] or '-'} (pid {run['pid'] or '-'})")),
        ("command", shown(run["command"] or "-")),
    ]
    reason = run["error"] or run["status_reason"]
    if reason:
        rows.append(("reason", shown(first_line(reason, 200))))
    for key, value in rows:
        facts.add_row(key, value)
    return facts


def metrics_table(metrics: list[dict[str, Any]]) -> Table:
    """Per metric: last value and its step, min, max, count."""
    table = Table("metric", title="metrics", title_justify="left")
    for column in ("last", "step", "min", "max", "count"):
        table.add_column(column, justify="right")
    for row in metrics:
        table.add_row(
            shown(row["name"]),
            number(row["last"]),
            str(row["step"]),
            number(row["min"]),
            number(row["max"]),
            str(row["count"]),
        )
    return table


def _pairs(kind: str, mapping: dict[str, str]) -> Table:
    table = Table(kind, "value", title=f"{kind}s", title_justify="left")
    for key, value in sorted(mapping.items()):
        table.add_row(shown(key), shown(value))
    return table


def _when(moment: datetime | None, *, short: bool = False) -> str:
    shape = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
    return moment.astimezone().strftime(shape) if moment else "-"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _exit_text(code: int | None) -> str:
    return "" if code is None else f" (exit code {code})"

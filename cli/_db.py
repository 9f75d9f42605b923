"""`runstream db` commands: migrations, compaction of metric chunks, retention."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import typer

from runstream._settings import Settings
from runstream.cli._connect import query_failed, writer
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.consumers import MigrationError, upgrade
from runstream.consumers._maintenance import (
    ExpiredMonth,
    compact_all,
    drop_months,
    expired_months,
)

app = typer.Typer(
    help="The PostgreSQL schema: migrations, compaction, retention.", no_args_is_help=True
)


@app.command("upgrade")
@reports_errors
def upgrade_command() -> None:
    """Apply the migrations not applied yet (safe to run twice, and from two processes at once)."""
    config = Settings().database()
    try:
        applied = asyncio.run(upgrade(config))
    except MigrationError as exc:
        raise CommandError(str(exc), None, ExitCode.DATABASE) from exc
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise query_failed(config.url, exc, "RUNSTREAM_DATABASE_URL") from exc
    if applied:
        for name in applied:
            typer.echo(f"applied {name}")
    else:
        typer.echo("database schema is up to date")


@app.command("compact")
@reports_errors
def compact_command() -> None:
    """Merge the small metric chunks of every run (persist does it for the runs it writes)."""
    asyncio.run(_compact())


async def _compact() -> None:
    async with writer(Settings().database()) as conn:
        done = await compact_all(conn)
    merged = sum(run.merged for run in done)
    written = sum(run.written for run in done)
    values = sum(run.values for run in done)
    typer.echo(
        f"compacted {len(done)} runs: {merged:,} chunks into {written:,} ({values:,} values)"
    )


@app.command("retention")
@reports_errors
def retention_command(
    keep_days: Annotated[
        float | None,
        typer.Option(
            "--keep-days",
            help="Keep metric values this many days (default: RUNSTREAM_RETENTION_DAYS).",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Drop without asking (needed off a terminal).")
    ] = False,
) -> None:
    """Drop the months of metric values older than the retention, whole (counted, confirmed)."""
    days = keep_days if keep_days is not None else Settings().retention_days
    if days is None or days <= 0:
        raise CommandError(
            "no retention given",
            "Give --keep-days N or set RUNSTREAM_RETENTION_DAYS.",
            ExitCode.USAGE,
        )
    asyncio.run(_retain(timedelta(days=days), yes))


async def _retain(keep: timedelta, yes: bool) -> None:
    async with writer(Settings().database()) as conn:
        expired = await expired_months(conn, keep, datetime.now(UTC))
        if not expired:
            typer.echo("nothing to drop: no month of metric values is past the retention")
            return
        for month in expired:
            typer.echo(f"to drop: {_describe(month)}", err=True)
        if not (yes or _confirmed(len(expired))):
            raise CommandError("nothing dropped", "Confirm, or give --yes.")
        dropped = await drop_months(conn, expired)
    values = sum(month.values for month in dropped)
    typer.echo(f"dropped {len(dropped)} months, {values:,} metric values")


def _describe(month: ExpiredMonth) -> str:
    counts = f"{month.values:,} values in {month.chunks:,} chunks"
    return f"{month.month:%Y-%m} ({month.partition}): {counts}"


def _confirmed(months: int) -> bool:
    if not sys.stdin.isatty():
        raise CommandError("refusing to drop without confirmation off a terminal", "Give --yes.")
    return typer.confirm(f"Drop these {months} months of metric values?", default=False)

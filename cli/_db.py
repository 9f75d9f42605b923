"""`runstream db` commands."""

from __future__ import annotations

import asyncio

import asyncpg
import typer

from runstream._settings import Settings
from runstream.cli._connect import query_failed
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.consumers import MigrationError, upgrade

app = typer.Typer(help="The PostgreSQL schema: versioned migrations.", no_args_is_help=True)


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

"""`runstream db` commands."""

from __future__ import annotations

import asyncio

import typer

from runstream._settings import Settings
from runstream.consumers import upgrade

app = typer.Typer(help="The PostgreSQL schema: versioned migrations.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command() -> None:
    """Apply the migrations not applied yet (safe to run twice, and from two processes at once)."""
    applied = asyncio.run(upgrade(Settings().database()))
    if applied:
        for name in applied:
            typer.echo(f"applied {name}")
    else:
        typer.echo("database schema is up to date")

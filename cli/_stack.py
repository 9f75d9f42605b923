"""`runstream stack`: the local Kafka, PostgreSQL, Prometheus, Alertmanager and services."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from runstream._errors import ConfigError
from runstream._settings import Settings
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.deploy import local

app = typer.Typer(
    help="The local stack: Kafka, PostgreSQL, Prometheus, Alertmanager and the runstream services.",
    no_args_is_help=True,
)
_console = Console(stderr=True)
_T = TypeVar("_T")
_MARKS = {"working": "", "done": "[green]✓[/]", "skipped": "[yellow]-[/]", "failed": "[red]✗[/]"}
_HEALTH_STYLE = {"healthy": "green", "starting": "yellow", "skipped": "yellow"}


@app.command()
@reports_errors
def install() -> None:
    """Install what the stack needs (Debian packages, Kafka jars), start nothing."""
    config = _config()
    _drive(lambda progress: local.install(config, progress))


@app.command()
@reports_errors
def up(
    brokers: Annotated[
        int | None,
        typer.Option(
            "--brokers",
            help="Kafka nodes: 1, or 3 for a cluster (default: what the stack was made with).",
        ),
    ] = None,
) -> None:
    """Start what is not running and wait until every service answers (idempotent)."""
    config = _config()
    if brokers is not None:
        config = _with_brokers(config, brokers)
    began = time.monotonic()
    started = _drive(lambda progress: local.up(config, progress))
    took = time.monotonic() - began
    summary = f"started {', '.join(started)}" if started else "everything was running already"
    _console.print(f"[green]stack up[/] in {took:.1f}s: {summary}")
    _console.print('Point clients at it with: eval "$(runstream stack env)"')


@app.command()
@reports_errors
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the state folder.")] = False,
) -> None:
    """Stop every process the stack started (by the pids in its pid files)."""
    config = _config()
    if purge:
        _drive(lambda progress: local.purge(config, progress))
    else:
        _drive(lambda progress: local.down(config, progress))


@app.command()
@reports_errors
def restart(
    services: Annotated[
        list[str] | None, typer.Argument(help="Services to restart (default: every one).")
    ] = None,
) -> None:
    """Stop the named services (e.g. `persist export` after a code change), then `up`."""
    config = _config()
    names = tuple(services or ())
    started = _drive(lambda progress: local.restart(config, names, progress))
    _console.print(f"[green]restarted[/] {', '.join(started) or 'nothing'}")


@app.command()
@reports_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Each service, its address and health; exit 7 unless every service is healthy."""
    statuses = asyncio.run(local.status(_config()))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
    else:
        Console().print(_status_table(statuses))
    unhealthy = [s.name for s in statuses if s.health not in ("healthy", "skipped")]
    if unhealthy:
        raise CommandError(
            f"not healthy: {', '.join(unhealthy)}",
            "`runstream stack up` starts what is down; each log is under the state folder.",
            ExitCode.STACK,
        )


@app.command()
@reports_errors
def env(
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="Also the PostgreSQL admin's URL (for tests and benchmarks that make databases).",
        ),
    ] = False,
) -> None:
    """Print `export RUNSTREAM_…=…` lines; use as: eval "$(runstream stack env)"."""
    for name, value in _config().env(admin=admin).items():
        typer.echo(f"export {name}={shlex.quote(value)}")


def _config() -> local.StackConfig:
    return local.StackConfig.from_settings(Settings())


def _with_brokers(config: local.StackConfig, brokers: int) -> local.StackConfig:
    try:
        return dataclasses.replace(config, brokers=brokers)
    except ConfigError as exc:
        raise CommandError(f"--brokers {brokers}: expected 1 or 3", code=ExitCode.USAGE) from exc


def _drive(action: Callable[[local.Progress], Coroutine[Any, Any, _T]]) -> _T:
    """Run `action(progress)` under a live progress display; a `StackError` becomes a
    `CommandError` (exit code `STACK`) after the end of the failing service's log.
    """
    with _ProgressView() as progress:
        try:
            return asyncio.run(action(progress))
        except local.StackError as exc:
            failure = exc
    if failure.log_tail:
        _console.rule(f"end of the {failure.service} log")
        _console.print(escape(failure.log_tail), highlight=False)
        _console.rule()
    raise CommandError(str(failure), None, ExitCode.STACK)


def _status_table(statuses: list[local.ServiceStatus]) -> Table:
    table = Table("service", "health")
    table.add_column("address", no_wrap=True)
    table.add_column("pid", justify="right")
    table.add_column("restarts", justify="right")
    table.add_column("detail")
    for s in statuses:
        style = _HEALTH_STYLE.get(s.health, "red")
        pid = str(s.pid) if s.pid else "-"
        restarts = str(s.restarts) if s.restarts else "-"
        health = f"[{style}]{s.health}[/]"
        table.add_row(s.name, health, s.address, pid, restarts, escape(s.detail))
    return table


class _ProgressView:
    """A rich progress display with one line per service; a `local.Progress` callback."""

    def __init__(self) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=_console,
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, service: str, message: str, step: local.Step) -> None:
        """Show `message` on the service's line; finish the line on its last step."""
        if service not in self._tasks:
            self._tasks[service] = self._progress.add_task(service, total=1)
        text = f"{_MARKS[step]} [bold]{service:<13}[/] {escape(message)}".strip()
        done = step != "working"
        self._progress.update(self._tasks[service], description=text, completed=int(done))

    def __enter__(self) -> _ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

"""`runstream run`: run a command as a run (Azure's "submit a script as a run").

The launcher is rank 0 of world size 1 of the run: it announces it (params, tags) and sends
`Status(running, source="launcher")`, which marks the run as supervised. It then starts the
command with the run's context in its environment (`RUNSTREAM_RUN_ID`, `RUNSTREAM_EXPERIMENT`,
`RUNSTREAM_RUN_NAME`), so that `get_run()` in it, and in every rank `torchrun` spawns from it,
joins the same run (those ranks bring their own world size); it ships each line of the command's
output as a log record. When the command ends it sends the run's final `Status` with source
`launcher`: completed, failed with the exit code, or canceled (see `runstream.cli._outcome`).

That status is authoritative for the whole run. The ranks' own `RankFinished` may end the run a
moment earlier (a `get_run()` run completes at exit, before its exit code is known; under
torchrun the run completes once every rank has), and the launcher's word replaces it: a command
that exits 3 is `failed`, whatever its ranks said. `runstream watch` waits for that word.
Then the launcher exits with the command's exit code.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from runstream import RunstreamError, ValidationError
from runstream._config import ProducerConfig
from runstream._settings import Settings
from runstream.cli._capture import OutputCapture
from runstream.cli._child import ChildProcess
from runstream.cli._options import parse_pairs
from runstream.cli._outcome import LAUNCHER_FAILED, Outcome, not_started, outcome_of
from runstream.producer import Run, RunContext
from runstream.producer._context import new_run_id
from runstream.producer._sync import sync_spool

console = Console(stderr=True, highlight=False, soft_wrap=True)
ANNOUNCE_TIMEOUT = 10.0
LEFTOVER_TIMEOUT = 10.0
OUTPUT_GRACE = 2.0


def run(
    command: Annotated[
        list[str],
        typer.Argument(metavar="COMMAND", help="The command and its arguments (after --)."),
    ],
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Default: RUNSTREAM_EXPERIMENT.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Display name of the run.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE hyperparameter; repeat.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="KEY=VALUE tag; repeat.")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Use this run id instead of a new one.")
    ] = None,
    show_output: Annotated[
        bool, typer.Option("--show-output", help="Also print the command's output as it comes.")
    ] = False,
) -> None:
    """Run COMMAND as a run: its output becomes log records, its exit code the run's status.

    Without --show-output the output is only captured (see it with `runstream watch`); when the
    command fails, its last lines are printed. Exits with COMMAND's exit code (128+N when a
    signal N killed it; 127 not found, 126 not executable, 125 when runstream itself failed).
    """
    settings = Settings()
    params, tags = parse_pairs("--param", param), parse_pairs("--tag", tag)
    context = _context(settings, experiment, name, run_id)
    config = settings.producer()
    launcher = _announce(context, config, params, tags)
    outcome = _supervise(launcher, config, command, show_output)
    _finish(launcher, config, outcome)
    raise typer.Exit(outcome.exit_code)


def _context(
    settings: Settings, experiment: str | None, name: str | None, run_id: str | None
) -> RunContext:
    try:
        return RunContext(
            run_id=run_id or new_run_id(),
            experiment=experiment or settings.experiment,
            name=name or settings.run_name,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None


def _announce(
    context: RunContext, config: ProducerConfig, params: dict[str, str], tags: dict[str, str]
) -> Run:
    """Start the launcher's handle (rank 0 sends RunStarted and the launcher's `running`) and
    wait until Kafka has them, so that they precede everything the command sends (bounded: with
    Kafka away the command starts anyway and its events may overtake the launcher's).
    """
    try:
        launcher = Run(context, config, params=params, tags=tags)
    except (RunstreamError, OSError) as exc:
        console.print(f"[red]error:[/] cannot start the run: {escape(str(exc))}")
        raise typer.Exit(LAUNCHER_FAILED) from None
    launcher.set_status("running", "started by runstream run", source="launcher")
    console.print(
        f"runstream: run [bold]{context.run_id}[/] in experiment {escape(context.experiment)}; "
        f"follow it with `runstream watch {context.run_id}`"
    )
    if not launcher.flush(ANNOUNCE_TIMEOUT):
        console.print(
            f"[yellow]warning:[/] Kafka at {config.kafka.bootstrap_servers} has not answered "
            f"within {ANNOUNCE_TIMEOUT:g}s; events wait in {config.spool_dir} until it does "
            "(or `runstream sync`). Starting the command anyway."
        )
    return launcher


def child_env(context: RunContext, base: dict[str, str]) -> dict[str, str]:
    """The command's environment: ours plus the run's context (and unbuffered Python output)."""
    env = dict(base)
    env["RUNSTREAM_RUN_ID"] = context.run_id
    env["RUNSTREAM_EXPERIMENT"] = context.experiment
    if context.name:
        env["RUNSTREAM_RUN_NAME"] = context.name
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _supervise(launcher: Run, config: ProducerConfig, argv: list[str], echo: bool) -> Outcome:
    """Start the command, pump its output into the run, wait for it; what its end means."""
    child = ChildProcess(argv, child_env(launcher.context, dict(os.environ)))
    try:
        process = child.start()
    except OSError as exc:
        return not_started(exc, argv[0])
    capture = OutputCapture(launcher, echo=echo)
    assert process.stdout is not None and process.stderr is not None  # noqa: PT018 - piped
    capture.start(process.stdout, process.stderr, sys.stdout.buffer, sys.stderr.buffer)
    with _StatusLine(launcher.run_id, capture, enabled=not echo):
        returncode = child.wait()
    capture.join(OUTPUT_GRACE)
    if returncode < 0:
        _deliver_leftovers(config)
    outcome = outcome_of(returncode, child.requested).with_output(list(capture.tail))
    if not echo and outcome.state != "completed":
        _print_tail(list(capture.tail))
    return outcome


def _deliver_leftovers(config: ProducerConfig) -> None:
    """A command killed by a signal could not flush its spool: deliver it before the status."""
    try:
        asyncio.run(asyncio.wait_for(sync_spool(config), LEFTOVER_TIMEOUT))
    except (TimeoutError, RunstreamError, OSError) as exc:
        console.print(f"[yellow]warning:[/] the command's last events wait in its spool ({exc!r})")


def _print_tail(tail: list[str]) -> None:
    if tail:
        console.rule("last lines of output")
        console.print(escape("\n".join(tail)))
        console.rule()


def _finish(launcher: Run, config: ProducerConfig, outcome: Outcome) -> None:
    """Send the authoritative status, deliver everything, say how it went."""
    launcher.set_status(outcome.state, outcome.reason, outcome.exit_code, source="launcher")
    report = launcher.close()
    style = {"completed": "green", "canceled": "yellow"}.get(outcome.state, "red")
    detail = f": {escape(outcome.reason.splitlines()[0])}" if outcome.reason else ""
    console.print(f"runstream: run {launcher.run_id} [{style}]{outcome.state}[/]{detail}")
    if not report.delivered:
        console.print(
            f"[yellow]warning:[/] Kafka at {config.kafka.bootstrap_servers} did not acknowledge "
            f"{report.remaining} events; they wait in {report.spool_path}. "
            "Run `runstream sync` once Kafka is reachable."
        )


class _StatusLine:
    """While the command runs quietly: one live line on a terminal (run, lines, elapsed)."""

    def __init__(self, run_id: str, capture: OutputCapture, *, enabled: bool) -> None:
        self._run_id = run_id
        self._capture = capture
        self._began = time.monotonic()
        enabled = enabled and console.is_terminal
        self._live = Live(self, console=console, transient=True, refresh_per_second=2)
        self._enabled = enabled

    def __rich__(self) -> Text:
        elapsed = int(time.monotonic() - self._began)
        return Text.assemble(
            ("running ", "cyan"),
            f"{self._run_id} · {self._capture.lines} lines of output · ",
            f"{elapsed // 60:02d}:{elapsed % 60:02d}",
        )

    def __enter__(self) -> _StatusLine:
        if self._enabled:
            self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._enabled:
            self._live.stop()

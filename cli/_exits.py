"""The CLI's exit codes, and the one way its commands report an error.

A command raises `CommandError` (what is wrong, what to do, which exit code); `reports_errors`
turns it into two lines on stderr and the exit code. A reader that closes the pipe early
(`runstream metrics RUN | head`) ends the command quietly with `OUTPUT_CLOSED`, as a Unix tool
killed by SIGPIPE ends. `runstream run` exits with its command's own code instead (see
`runstream.cli._outcome`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

_P = ParamSpec("_P")
_T = TypeVar("_T")
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(IntEnum):
    """What the process's exit status means (documented in the README)."""

    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    DATABASE = 4
    RUN_CANCELED = 5
    KAFKA = 6
    STACK = 7
    GRAFANA = 8
    STALE = 9
    INTERRUPTED = 130
    OUTPUT_CLOSED = 141


class CommandError(Exception):
    """A failure the user can act on: `message` says what is wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


def reports_errors(command: Callable[_P, _T]) -> Callable[_P, _T]:
    """Wrap a typer command: `CommandError` and Ctrl-C become a message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return command(*args, **kwargs)
        except CommandError as exc:
            stderr.print(f"[red]error:[/] {escape(exc.message)}")
            if exc.hint:
                stderr.print(escape(exc.hint))
            raise typer.Exit(exc.code) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(ExitCode.OUTPUT_CLOSED) from None

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush finds no closed pipe to report."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
    finally:
        os.close(devnull)

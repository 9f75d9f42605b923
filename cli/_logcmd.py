"""`runstream log`: lines from another source (a container, a service) added to a live run.

    docker logs -f trainer | runstream log RUN_ID --source container
    runstream log RUN_ID --source journal --follow /var/log/trainer.log

Each line becomes a log record of the run with the source as its logger name, at `--level`
(INFO by default; `runstream run` captures stdout at INFO and stderr at ERROR) and `--rank` (0 by
default, as `runstream run`'s captured output). A carriage return redraws a line, as `runstream
run` reads output. The lines are shipped by a `LogSource`: the run's status, params and ranks
stay what the training processes say. Standard input ends the command when it closes (the writer
exited); `--follow FILE` reads FILE from its start and then what is appended (a file truncated or
replaced, as log rotation does, is read again from its start) until Ctrl-C or SIGTERM. Either way
every line read is flushed to Kafka before it exits 0; lines Kafka did not take within 10 s stay
in the spool for `runstream sync` (exit code 6).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, BinaryIO

import typer
from rich.console import Console

from runstream import RunstreamError
from runstream._settings import Settings
from runstream.cli._capture import LineSplitter
from runstream.cli._exits import CommandError, ExitCode, reports_errors
from runstream.producer import RunContext
from runstream.producer._source import LogSource

console = Console(stderr=True, highlight=False, soft_wrap=True)
CHUNK = 64 * 1024
FOLLOW_POLL = 0.2
CLOSE_TIMEOUT = 10.0


class Level(StrEnum):
    """The levels `--level` accepts."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class _Stopped(Exception):
    """SIGTERM or SIGINT while reading: stop, flush, exit cleanly."""


@reports_errors
def log(
    run_id: Annotated[str, typer.Argument(help="The run's full id.")],
    source: Annotated[
        str, typer.Option("--source", "-s", help="Where the lines come from (the logger name).")
    ] = "stdin",
    level: Annotated[Level, typer.Option("--level", "-l", help="Level of every line.")] = (
        Level.INFO
    ),
    rank: Annotated[int, typer.Option("--rank", "-r", min=0, help="Rank of the records.")] = 0,
    follow: Annotated[
        Path | None, typer.Option("--follow", "-f", help="Read and follow FILE, not stdin.")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Default: RUNSTREAM_EXPERIMENT.")
    ] = None,
) -> None:
    """Add lines read from stdin (or followed in a file) to a run as log records of SOURCE."""
    settings = Settings()
    try:
        context = RunContext(
            run_id, experiment or settings.experiment, rank=rank, world_size=rank + 1
        )
        shipper = LogSource(context, settings.producer(), source)
    except RunstreamError as exc:
        raise CommandError(str(exc)) from None
    chunks = _followed(follow) if follow is not None else _stdin_chunks()
    with _stop_on_signals():
        _pump(chunks, lambda line: shipper.log(line, level.value))
    report = shipper.close(CLOSE_TIMEOUT)
    console.print(f"added {shipper.lines} lines from {source} to run {run_id}")
    if not report.delivered:
        raise CommandError(
            f"Kafka did not take {report.remaining} lines within {CLOSE_TIMEOUT:g}s; they wait "
            f"in {report.spool_path}",
            "Run `runstream sync` once Kafka is reachable.",
            ExitCode.KAFKA,
        )


def _pump(chunks: Iterator[bytes], ship: Callable[[str], None]) -> None:
    splitter = LineSplitter()
    try:
        for chunk in chunks:
            for line in splitter.feed(chunk):
                ship(line)
    except _Stopped:
        pass
    for line in splitter.finish():
        ship(line)


def _stdin_chunks() -> Iterator[bytes]:
    fd = sys.stdin.fileno()
    while chunk := os.read(fd, CHUNK):
        yield chunk


def _followed(path: Path) -> Iterator[bytes]:
    """FILE's bytes from its start, then as they are appended; reopened when rotated."""
    if not path.is_file():
        raise CommandError(
            f"--follow {path}: no such file", "Give a log file that exists.", ExitCode.NOT_FOUND
        )
    file = path.open("rb")
    try:
        while True:
            chunk = file.read(CHUNK)
            if chunk:
                yield chunk
                continue
            if _rotated(path, file):
                file.close()
                file = path.open("rb")
                continue
            time.sleep(FOLLOW_POLL)
    finally:
        file.close()


def _rotated(path: Path, file: BinaryIO) -> bool:
    """Whether FILE was replaced (another inode) or truncated below what was read."""
    try:
        now = path.stat()
    except FileNotFoundError:
        return False  # between a rotation's rename and the new file: wait for it
    opened = os.fstat(file.fileno())
    return now.st_ino != opened.st_ino or now.st_size < file.tell()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

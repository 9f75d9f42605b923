"""The console commands print their results on: a terminal's width, or no limit in a pipe.

Rich sizes output to 80 columns when stdout is not a terminal, which cuts run ids, statuses and
times in `runstream runs | cat`. A program reading the output wants every value whole, so a
piped console is as wide as the longest line needs.
"""

from __future__ import annotations

from rich.console import Console

PIPE_WIDTH = 100_000
"""Columns of a piped console: wider than any line the commands print."""


def output_console() -> Console:
    """stdout: sized to the terminal; piped (`| cat`, `| grep`, a file), no value is cut."""
    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, width=PIPE_WIDTH)


def column_limit(console: Console, width: int) -> int | None:
    """`width` as a column's maximum on a terminal; no maximum in a pipe."""
    return width if console.is_terminal else None

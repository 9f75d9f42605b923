"""Capturing a launched command's output: every line becomes a log record of its run.

Each of stdout and stderr is read by its own thread as bytes arrive (no waiting for a full
buffer), optionally echoed at once to the launcher's own stdout or stderr (`--show-output`), and
cut into lines that are shipped as `log_record("INFO", "stdout", line)` or
`log_record("ERROR", "stderr", line)`. A carriage return redraws a line, as on a terminal:
a progress bar is shipped once, as last drawn, when its line ends.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from collections import deque
from typing import IO

from runstream import ClosedError
from runstream.producer import Run
from runstream.schemas import MESSAGE_MAX

STREAMS = {"stdout": "INFO", "stderr": "ERROR"}
_CHUNK = 64 * 1024
_COMPACT_AT = 8 * 1024


def visible(text: str) -> str:
    """What a terminal shows of a line with carriage returns: its last non-empty part."""
    parts = [p for p in text.split("\r") if p]
    return parts[-1] if parts else ""


class LineSplitter:
    """Text in, finished lines out; lines longer than `limit` characters are cut."""

    def __init__(self, limit: int = MESSAGE_MAX) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._limit = limit

    def feed(self, data: bytes) -> list[str]:
        """The lines that `data` finishes."""
        self._buffer += self._decoder.decode(data)
        *lines, self._buffer = self._buffer.split("\n")
        while len(self._buffer) > self._limit:
            lines.append(self._buffer[: self._limit])
            self._buffer = self._buffer[self._limit :]
        if len(self._buffer) > _COMPACT_AT and "\r" in self._buffer:
            ending = "\r" if self._buffer.endswith("\r") else ""
            self._buffer = visible(self._buffer) + ending
        return [visible(line) for line in lines]

    def finish(self) -> list[str]:
        """The unfinished last line, if any, at the end of the stream."""
        rest = visible(self._buffer + self._decoder.decode(b"", final=True))
        self._buffer = ""
        return [rest] if rest else []


class OutputCapture:
    """Pumps a child's stdout and stderr into its run (and, with `echo`, to our own)."""

    def __init__(self, run: Run, *, echo: bool, tail: int = 20) -> None:
        self.run = run
        self.echo = echo
        self.lines = 0
        self.tail: deque[str] = deque(maxlen=tail)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, stdout: IO[bytes], stderr: IO[bytes], out: IO[bytes], err: IO[bytes]) -> None:
        """Start one reader thread per stream (`out`, `err`: where to echo)."""
        for name, pipe, echo_to in (("stdout", stdout, out), ("stderr", stderr, err)):
            thread = threading.Thread(
                target=self._pump,
                args=(name, pipe, echo_to if self.echo else None),
                name=f"runstream-capture-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float) -> bool:
        """Wait until both streams ended (a daemon the command left behind may hold them open);
        False when `timeout` passed first.
        """
        for thread in self._threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def _pump(self, name: str, pipe: IO[bytes], echo_to: IO[bytes] | None) -> None:
        splitter = LineSplitter()
        fd = pipe.fileno()
        while chunk := os.read(fd, _CHUNK):
            if echo_to is not None:
                echo_to = _echo(echo_to, chunk)
            self._ship(name, splitter.feed(chunk))
        self._ship(name, splitter.finish())
        with contextlib.suppress(OSError):
            pipe.close()

    def _ship(self, stream: str, lines: list[str]) -> None:
        for line in lines:
            with contextlib.suppress(ClosedError):
                self.run.log_record(STREAMS[stream], stream, line)
            with self._lock:
                self.lines += 1
                self.tail.append(line)


def _echo(target: IO[bytes], chunk: bytes) -> IO[bytes] | None:
    """Write `chunk` through; stop echoing (but keep capturing) once our output is closed."""
    try:
        target.write(chunk)
        target.flush()
    except OSError:
        return None
    return target

"""The command `runstream run` launches, and the stop signals the launcher passes on to it.

The command stays in the launcher's process group, so a terminal treats the two as one job (Ctrl-Z,
reading stdin and `fg` work as usual). While it runs, the launcher catches SIGINT, SIGTERM and
SIGHUP, remembers the first one (the run will be `canceled`) and passes each one on to the
command, except a SIGINT while the launcher is the terminal's foreground job: the terminal's
Ctrl-C has already reached the command, and passing it on would interrupt it twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType

from runstream.cli._outcome import CANCEL_SIGNALS


def in_terminal_foreground() -> bool:
    """Whether this process's group is the foreground job of its controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class ChildProcess:
    """One launched command with piped stdout and stderr; `wait` passes stop signals on."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.requested: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running command (after `start`)."""
        if self._process is None:
            raise RuntimeError("the command was not started")
        return self._process

    def start(self) -> subprocess.Popen[bytes]:
        """Start the command; raises `OSError` when it cannot be started."""
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        return self._process

    def wait(self) -> int:
        """Wait for the command to end, passing stop signals on; its `returncode`."""
        with self._forwarding():
            return self.process.wait()

    @contextlib.contextmanager
    def _forwarding(self) -> Iterator[None]:
        previous = {number: signal.signal(number, self._on_signal) for number in CANCEL_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = number
        if number == signal.SIGINT and in_terminal_foreground():
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(number)

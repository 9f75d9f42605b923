"""The two kinds of courier the `CourierSupervisor` runs: a child process (the default, so Kafka's
client never competes with training for the interpreter lock) or a task of the shipper's loop.

Both are woken when the spool grew (`wake`), say how far Kafka acknowledged it (`on_acked`), tell
whether they `ended` by themselves, and `stop` within `STOP_GRACE` seconds. The process speaks
`producer/_protocol.py` over its pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer import _protocol as protocol
from runstream.producer._courier import Courier
from runstream.producer._problems import ProblemReporter
from runstream.producer._spool import SegmentCursor, SpoolFolder

STOP_GRACE = 3.0  # seconds a courier has to stop before it is killed


class CourierTask:
    """The courier as a task of the shipper's own loop."""

    def __init__(self, courier: Courier) -> None:
        self.courier = courier
        self.task = asyncio.get_running_loop().create_task(courier.run())

    @property
    def ended(self) -> bool:
        return self.task.done()

    def wake(self) -> None:
        self.courier.written.set()

    def discard(self) -> None:
        """The task ended by itself (it logged why): nothing to release."""

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), STOP_GRACE)


class CourierProcess:
    """The courier as a child process of this interpreter (`runstream.producer._courier.main`)."""

    def __init__(
        self,
        config: ProducerConfig,
        folder: SpoolFolder,
        on_acked: Callable[[SegmentCursor], None],
        problems: ProblemReporter,
    ) -> None:
        self.on_acked = on_acked
        self.problems = problems
        self.ended = False
        self.ready = False
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self.following = False  # every line wakes the loop (someone waits for acknowledgements)
        self._process = _spawn()
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        try:
            self._stdin.write(protocol.orders(config, folder.path))
            self._stdin.flush()
        except OSError:  # it died at once: reap it, and let the caller fall back
            self.discard()
            raise
        os.set_blocking(self._stdin.fileno(), False)
        os.set_blocking(self._stdout.fileno(), False)

    def follow(self, *, eager: bool) -> None:
        """Take in what the courier said. When `eager`, its every line wakes the loop from now on
        (someone waits for acknowledgements); otherwise it is read once per flush interval.
        """
        if self.ended:
            return
        if eager and not self.following:
            self._loop.add_reader(self._stdout.fileno(), self._on_output)
            self.following = True
        elif not eager and self.following:
            self._loop.remove_reader(self._stdout.fileno())
            self.following = False
        self._on_output()  # one read: what more arrives meanwhile waits for the next round

    def wake(self) -> None:
        self._send(protocol.WAKE)

    def _send(self, signal: bytes) -> None:
        # A full pipe already holds a wake-up; a closed one means the courier ended.
        with contextlib.suppress(OSError, ValueError):
            os.write(self._stdin.fileno(), signal)

    def _on_output(self) -> None:
        try:
            data = os.read(self._stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except (OSError, ValueError):
            data = b""
        if not data:
            self._ended()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._line(line.decode(errors="replace"))

    def _line(self, line: str) -> None:
        try:
            message = protocol.parse(line)
        except ValueError as exc:
            self.problems.report("courier", exc, "the courier said something unexpected")
            return
        if message is None:
            self.ready = True
        elif isinstance(message, SegmentCursor):
            self.on_acked(message)
        else:
            error = TransportError(message.error, retriable=True)
            self.problems.report(message.kind, error, message.message)

    def _ended(self) -> None:
        if not self.ended:
            self.ended = True
            if self.following:
                self._loop.remove_reader(self._stdout.fileno())
                self.following = False

    def discard(self) -> None:
        """The courier ended by itself (killed, crashed): reap it and close its pipes."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):  # a write left in the buffer of a dead pipe
                pipe.close()

    async def stop(self) -> None:
        """Tell the courier to stop; wait for it (bounded), then make sure it is gone."""
        self._send(protocol.CLOSE)
        # Polled, not waited for in a thread: at interpreter exit no new thread may start.
        deadline = time.monotonic() + STOP_GRACE
        while self._process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._on_output_rest()
        self._ended()
        self._close_pipes()

    def _on_output_rest(self) -> None:
        """Read acknowledgements the courier wrote just before it exited."""
        with contextlib.suppress(BlockingIOError, OSError, ValueError):
            while data := os.read(self._stdout.fileno(), 65536):
                self._take(data)

    def forget(self) -> None:
        """In a forked child: close our copies of the pipes (the parent still owns the courier)."""
        self._close_pipes()


def _spawn() -> subprocess.Popen[bytes]:
    """A courier process (`runstream.producer._courier.main`), its pipes not yet read."""
    return subprocess.Popen(
        [sys.executable, "-c", "from runstream.producer._courier import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        # It imports runstream from where this process did (a script may have put it there).
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )

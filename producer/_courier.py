"""The courier: sends a session's spool to Kafka, from a process of its own.

The training process only appends to its spool; everything Kafka costs (the client, compression,
requests, acknowledgements) happens in the courier, so it never competes with training for the
interpreter lock. The courier tails the session folder, sends frames in order, reports every
acknowledged position back to the trainer, and delivers dead sessions' folders found in the same
spool directory.

It speaks with the training process (its `Shipper`) as `producer/_protocol.py` says.

The courier stops when told, when its stdin ends, or when the trainer is gone (its parent changed).
It ignores SIGINT and SIGTERM, which reach a whole process group: the trainer reacts to them by
flushing, which needs its courier. It runs at a lower CPU priority (nice 10): on busy cores the
training loop goes first and the spool absorbs the difference. A courier that stops leaves
undelivered frames on disk, where the next session or `runstream sync` finds them once the
trainer's lock is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer import _protocol as protocol
from runstream.producer._deadletter import DeadLetterFile
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender, Shipment
from runstream.producer._spool import (
    Destination,
    Frame,
    SegmentCursor,
    SpoolFolder,
    SpoolReader,
    orphaned_folders,
)

Acked = Callable[[SegmentCursor], None]
_NICENESS = 10


class Courier:
    """Tails one session folder and sends its frames to Kafka in order."""

    def __init__(
        self,
        folder: SpoolFolder,
        config: ProducerConfig,
        problems: ProblemReporter,
        on_acked: Acked,
    ) -> None:
        self.folder = folder
        self.config = config
        self.problems = problems
        self.on_acked = on_acked
        self.written = asyncio.Event()
        self.dead_letters = DeadLetterFile(config.spool_dir)

    async def run(self) -> None:
        """Send until cancelled; dead sessions' folders bound for the same place go alongside.

        The spool is synced to disk by a thread of its own, every flush interval, whatever the
        connection to Kafka is doing (a broker that never answers blocks a send for
        `send_timeout`).
        """
        loop = asyncio.get_running_loop()

        def sync_failed(error: OSError) -> None:  # called from the syncer's thread
            message = "cannot sync the spool to disk"
            loop.call_soon_threadsafe(self.problems.report, "spool_sync", error, message)

        syncer = SpoolSyncer(self.folder, self.config.flush_interval, sync_failed)
        sender = KafkaSender(self.config, self.problems)
        orphans = asyncio.create_task(self._deliver_orphans(sender))
        reader = SpoolReader(self.folder)
        shipment: Shipment | None = None  # frames read, not all acknowledged yet
        try:
            while True:
                shipment = shipment or await self._next_shipment(reader, sender)
                if shipment is None:
                    continue
                if not await shipment.send():  # its frames are never read again meanwhile
                    await asyncio.sleep(self.config.flush_interval)
                    continue
                shipment = None
                self.on_acked(reader.commit())
        finally:
            syncer.stop()
            orphans.cancel()
            await asyncio.gather(orphans, return_exceptions=True)
            await sender.stop()

    async def _next_shipment(self, reader: SpoolReader, sender: KafkaSender) -> Shipment | None:
        """The next frames of the folder as a shipment; None after waiting a while for them."""
        if not await sender.ready():  # don't read the disk for a broker that is away
            await asyncio.sleep(self.config.flush_interval)
            return None
        frames = reader.next_batch()
        if not frames:
            self.written.clear()
            with contextlib.suppress(TimeoutError):  # a missed wake costs one interval
                await asyncio.wait_for(self.written.wait(), self.config.flush_interval)
            return None
        return sender.shipment(self._sendable(self.folder, frames))

    def _sendable(self, folder: SpoolFolder, frames: list[Frame]) -> list[Frame]:
        sendable, reasons = self.dead_letters.sieve(folder.path.name, frames)
        for reason in reasons:
            error = TransportError(reason, retriable=False)
            self.problems.report("oversize", error, f"moved aside to {self.dead_letters.path}")
        return sendable

    async def _deliver_orphans(self, sender: KafkaSender) -> None:
        here = Destination(self.config.kafka.bootstrap_servers, self.config.kafka.topic)
        own = self.folder.path
        for folder in orphaned_folders(self.config.spool_dir, own=own, bound_for=here):
            try:
                await deliver_folder(folder, sender, self.dead_letters)
            finally:
                folder.unlock()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What delivering one folder did: events sent, moved aside, and left in it."""

    sent: int
    skipped: int
    left: int


async def deliver_folder(
    folder: SpoolFolder,
    sender: KafkaSender,
    dead_letters: DeadLetterFile,
    give_up_at: float | None = None,
) -> Delivery:
    """Send every frame of a dead session's folder, then delete it; events over their size limit
    go to `dead_letters` instead. While Kafka refuses, retry until `give_up_at` (monotonic; None
    waits on): then the rest stays in the folder.
    """
    reader = SpoolReader(folder)
    sent = skipped = 0
    while frames := reader.next_batch():
        sendable, reasons = dead_letters.sieve(folder.path.name, frames)
        shipment = sender.shipment(sendable)
        while not await shipment.send():
            if give_up_at is not None and time.monotonic() >= give_up_at:
                return Delivery(sent, skipped + len(reasons), folder.count_frames(reader.cursor))
            await asyncio.sleep(0.5)
        reader.commit()
        sent += len(sendable)
        skipped += len(reasons)
    folder.remove()
    return Delivery(sent, skipped, 0)


class SpoolSyncer:
    """A thread that forces a folder's segments to disk every `interval` seconds (the trainer's
    writes only reach the kernel's cache), and once more when stopped.
    """

    def __init__(
        self, folder: SpoolFolder, interval: float, on_error: Callable[[OSError], None]
    ) -> None:
        self.folder = folder
        self.interval = interval
        self.on_error = on_error
        self._first = 1  # segments before this one are sealed and on disk
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runstream-spool-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self._first = self.folder.sync(self._first)
                failing = False
            except OSError as exc:
                if not failing:  # said once per spell of failures
                    with contextlib.suppress(RuntimeError):  # the loop is gone
                        self.on_error(exc)
                failing = True
            if stopping:
                return

    def stop(self) -> None:
        """Sync once more and end the thread."""
        self._stop.set()
        self._thread.join()


# -- the courier process ---------------------------------------------------------------------


class RepeatFilter(logging.Filter):
    """Lets the same message of the same logger through at most once per `every` seconds; the
    next one says how many were held back. The Kafka client repeats itself many times a second
    about a missing topic, and on every reconnection to a broker that is away.
    """

    def __init__(self, every: float = 30.0, remember: int = 1000) -> None:
        super().__init__()
        self.every = every
        self.remember = remember
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # when shown, held back since

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to show `record` (it says how many like it were held back)."""
        key = (record.name, record.msg)  # the template: the same message with other arguments
        now = time.monotonic()
        shown, held = self._seen.get(key, (-self.every, 0))
        if now - shown < self.every:
            self._seen[key] = (shown, held + 1)
            return False
        if len(self._seen) >= self.remember:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} ({held} more like it in the last {now - shown:.0f} s)"
            )
            record.args = None
        return True


class _ForwardedProblems(ProblemReporter):
    """Problems go to the trainer, which counts them and calls the user's callback."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def report(self, kind: str, error: BaseException, message: str) -> None:
        """Send one problem to the trainer."""
        self._write(protocol.problem(kind, message, error))


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.buffer
    config, path = protocol.read_orders(stdin.readline())
    parent = os.getppid()
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line)
        out.flush()

    def acked(cursor: SegmentCursor) -> None:
        write(protocol.acknowledged(cursor))

    courier = Courier(SpoolFolder(path), config, _ForwardedProblems(write), acked)
    write(protocol.READY)  # ready: it runs, imported what it needs and read its orders
    done = asyncio.Event()

    def on_input() -> None:
        data = os.read(stdin.fileno(), 4096)
        if not data or protocol.CLOSE in data:
            done.set()
        elif protocol.WAKE in data:
            courier.written.set()

    loop.add_reader(stdin.fileno(), on_input)
    sending = asyncio.create_task(courier.run())
    while not done.is_set() and not sending.done() and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.1)
    loop.remove_reader(stdin.fileno())
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.gather(sending, return_exceptions=True), 3.0)


def main() -> None:
    """The courier process's entry point (the Shipper starts `python -c` calling it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)  # when the cores are busy, training goes first
    # Our own problems go to the trainer; what the Kafka client says (why a login failed, say)
    # goes to the trainer's stderr, which the courier shares.
    logging.basicConfig(level=logging.WARNING, format="runstream courier: %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
    with contextlib.suppress(BrokenPipeError, TimeoutError):
        asyncio.run(_serve())

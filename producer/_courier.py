"""The courier: sends a session's spool to Kafka, from a process of its own.

The training process only appends to its spool; everything Kafka costs (the client, compression,
requests, acknowledgements) happens in the courier, so it never competes with training for the
interpreter lock. The courier tails the session folder, sends frames in order, reports every
acknowledged position back to the trainer, and delivers dead sessions' folders found in the same
spool directory.

Protocol with the training process (its `Shipper`):
- stdin: one line with the pickled, base64-encoded `(ProducerConfig, folder path)`, then single
  bytes: `w` (more was written and synced), `c` (close now). End of file also means close.
- stdout: `r` once ready, then lines `a SEGMENT OFFSET` (everything before that position is
  acknowledged by Kafka) and `e KIND<TAB>MESSAGE<TAB>ERROR` (a problem, which the trainer counts
  and reports).

The courier stops when told, when its stdin ends, or when the trainer is gone (its parent changed).
It ignores SIGINT and SIGTERM, which reach a whole process group: the trainer reacts to them by
flushing, which needs its courier. It runs at a lower CPU priority (nice 10): on busy cores the
training loop goes first and the spool absorbs the difference. A courier that stops leaves
undelivered frames on disk, where the next session or `runstream sync` finds them once the
trainer's lock is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runstream._config import ProducerConfig
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender
from runstream.producer._spool import SegmentCursor, SpoolFolder, SpoolReader, orphaned_folders

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
        self._synced = 1  # segments before this one are sealed and on disk
        self._sync_due = 0.0

    def sync(self) -> None:
        """Force what the trainer wrote to disk (its writes only reach the kernel's cache)."""
        try:
            self._synced = self.folder.sync(self._synced)
        except OSError as exc:
            self.problems.report("spool_sync", exc, "cannot sync the spool to disk")

    async def run(self) -> None:
        """Send until cancelled; dead sessions' folders are delivered alongside."""
        sender = KafkaSender(self.config, self.problems)
        orphans = asyncio.create_task(self._deliver_orphans(sender))
        reader = SpoolReader(self.folder)
        try:
            while True:
                # Once per wake-up, not again when the loop goes on reading after a send (what
                # Kafka acknowledged needs no sync); a backlog is synced every half interval.
                if time.monotonic() >= self._sync_due:
                    self._sync_due = time.monotonic() + self.config.flush_interval / 2
                    self.sync()
                if not await sender.ready():  # don't read the disk for a broker that is away
                    await asyncio.sleep(self.config.flush_interval)
                    continue
                frames = reader.next_batch()
                if not frames:
                    self.written.clear()
                    with contextlib.suppress(TimeoutError):  # a missed wake costs one interval
                        await asyncio.wait_for(self.written.wait(), self.config.flush_interval)
                    continue
                if not await sender.send(frames):
                    await asyncio.sleep(self.config.flush_interval)
                    continue
                self.on_acked(reader.commit())
        finally:
            self.sync()
            orphans.cancel()
            await asyncio.gather(orphans, return_exceptions=True)
            await sender.stop()

    async def _deliver_orphans(self, sender: KafkaSender) -> None:
        for folder in orphaned_folders(self.config.spool_dir, own=self.folder.path):
            try:
                await deliver_folder(folder, sender)
            finally:
                folder.unlock()


async def deliver_folder(folder: SpoolFolder, sender: KafkaSender) -> int:
    """Send every frame of a dead session's folder, then delete it. Returns frames sent."""
    reader = SpoolReader(folder)
    sent = 0
    while frames := reader.next_batch():
        delivered = await sender.send(frames)
        while not delivered:
            await asyncio.sleep(0.5)
            delivered = await sender.send(frames)
        reader.commit()
        sent += len(frames)
    folder.remove()
    return sent


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


def _clean(text: object) -> str:
    return str(text).replace("\t", " ").replace("\n", " ")


class _ForwardedProblems(ProblemReporter):
    """Problems go to the trainer, which counts them and calls the user's callback."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def report(self, kind: str, error: BaseException, message: str) -> None:
        """Send one problem to the trainer."""
        self._write(f"e {_clean(kind)}\t{_clean(message)}\t{_clean(error)}\n")


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.buffer
    config, path = pickle.loads(base64.b64decode(stdin.readline()))  # noqa: S301 - our parent
    parent = os.getppid()
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line)
        out.flush()

    def acked(cursor: SegmentCursor) -> None:
        write(f"a {cursor.segment} {cursor.offset}\n")

    courier = Courier(SpoolFolder(Path(path)), config, _ForwardedProblems(write), acked)
    write("r\n")  # ready: it runs, imported what it needs and read its orders
    done = asyncio.Event()

    def on_input() -> None:
        data = os.read(stdin.fileno(), 4096)
        if not data or b"c" in data:
            done.set()
        elif b"w" in data:
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

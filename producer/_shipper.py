"""The background half of the producer: one daemon thread with its own asyncio loop.

Callers hand it encoded frames (`submit`, microseconds, no I/O). Once per flush interval the loop
moves them to the write-ahead spool on disk (append + fsync), then sends the spool to Kafka in order
and deletes what Kafka acknowledged. When the broker is away the spool grows on disk (up to
`spool_max_bytes`; beyond that new events are dropped, counted and logged) and drains in order when
it returns. Spools of dead sessions found in the same directory are delivered too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from runstream._config import ProducerConfig
from runstream._errors import ClosedError, TransportError
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender
from runstream.producer._spool import (
    Frame,
    SegmentWriter,
    SpoolFolder,
    SpoolReader,
    orphaned_folders,
)


@dataclass(frozen=True, slots=True)
class CloseReport:
    """What `close()` achieved: everything delivered, or how much waits on disk and where."""

    delivered: bool
    remaining: int
    spool_path: str


class Shipper:
    """Moves frames from the caller to the spool and from the spool to Kafka."""

    def __init__(
        self,
        config: ProducerConfig,
        problems: ProblemReporter,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.problems = problems
        self.producer_id = str(uuid.uuid4())
        self.folder = SpoolFolder.create(config.spool_dir / self.producer_id)
        self._writer = SegmentWriter(self.folder, config.segment_bytes)
        self._reader = SpoolReader(self.folder)
        self._pending: deque[Frame] = deque()
        self._disk_lock = threading.Lock()
        self._counter = itertools.count(1)
        self.submitted = 0
        self.written = 0
        self.acked = 0
        self.dropped = 0
        self._settled = threading.Condition()
        self._on_tick = on_tick
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._written_more = asyncio.Event()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="runstream-shipper", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def submit(self, key: bytes, value: bytes) -> None:
        """Hand over one encoded event. Never blocks on the network."""
        if self._closing:
            raise ClosedError("this run's producer is closed")
        self._pending.append((key, value))
        self.submitted = next(self._counter)
        if len(self._pending) > self.config.memory_events:
            self._spill()

    def flush(self, timeout: float) -> bool:
        """Wait until every event submitted so far is acknowledged by Kafka (or dropped)."""
        self._refuse_on_loop_thread("flush")
        target = self.submitted
        self._poke()
        deadline = time.monotonic() + timeout
        with self._settled:
            while self.acked + self.dropped < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._done.done():
                    return False
                self._settled.wait(min(left, 0.1))
        return True

    def close(self, timeout: float) -> CloseReport:
        """Deliver what can be delivered within `timeout`, stop the thread, report what is left."""
        self._refuse_on_loop_thread("close")
        if not self._closing:
            self._closing = True
            self._spill()  # whatever happens next, every submitted event is on disk
            self.flush(timeout)
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._finish)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._done.result(timeout=max(timeout, 1.0))
        remaining = self.written - self.acked
        return CloseReport(remaining == 0, remaining, str(self.folder.path))

    def _refuse_on_loop_thread(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{what}() would deadlock on runstream's own loop thread")

    def _poke(self) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    def _spill(self) -> None:
        """Memory is full: move pending frames to disk now (the only disk write a caller does)."""
        with self._disk_lock:
            self._drain_to_disk()

    # -- loop side ---------------------------------------------------------------------------

    def _drain_to_disk(self) -> None:
        frames = []
        while self._pending:
            frames.append(self._pending.popleft())
        if not frames:
            return
        room = self.config.spool_max_bytes - self._disk_bytes()
        if room <= 0:
            self.dropped += len(frames)
            error = TransportError("spool is full", retriable=True)
            self.problems.report("spool_full", error, f"dropped {len(frames)} events")
            return
        try:
            self._writer.append(frames)
            self._writer.sync()
        except OSError as exc:
            self.dropped += len(frames)
            self.problems.report("spool_write", exc, f"dropped {len(frames)} events")
            return
        self.written += len(frames)

    def _disk_bytes(self) -> int:
        return self.folder.size()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self.problems.report("shipper_crashed", exc, "runstream shipper stopped")
        finally:
            self._loop.close()
            self._done.set_result(None)
            with self._settled:
                self._settled.notify_all()

    async def _main(self) -> None:
        """Every flush interval: caller's frames to disk, then what is due (heartbeats). Sending
        runs as its own task, so a slow or absent broker never delays the write to disk.
        """
        sender = KafkaSender(self.config, self.problems)
        tasks = [
            asyncio.create_task(self._send_own(sender)),
            asyncio.create_task(self._deliver_orphans(sender)),
        ]
        try:
            while not self._finishing:
                self._write_pending()
                self._tick()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.flush_interval)
            self._write_pending()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sender.stop()
            self._writer.close()
            if self.written == self.acked:
                self.folder.remove()
            else:
                self.folder.unlock()  # what is left is `runstream sync`'s (or the next run's)

    _finishing = False

    def _write_pending(self) -> None:
        with self._disk_lock:
            self._drain_to_disk()
        if self.written > self.acked:
            self._written_more.set()

    def _tick(self) -> None:
        if self._on_tick is None or self._closing:
            return
        try:
            self._on_tick()
        except Exception as exc:
            self.problems.report("heartbeat", exc, "heartbeat failed")

    def _finish(self) -> None:
        self._finishing = True
        self._wake.set()

    async def _send_own(self, sender: KafkaSender) -> None:
        """Send what reached the disk, in order, until cancelled."""
        while True:
            if self.acked >= self.written:
                self._written_more.clear()
                await self._written_more.wait()
                continue
            if not await sender.ready():  # don't read the disk for a broker that is away
                await asyncio.sleep(self.config.flush_interval)
                continue
            frames = self._reader.next_batch(self._writer.segment)
            if not frames:
                await asyncio.sleep(self.config.flush_interval)
                continue
            if not await sender.send(frames):
                await asyncio.sleep(self.config.flush_interval)
                continue
            self._reader.commit()
            with self._settled:
                self.acked += len(frames)
                self._settled.notify_all()

    async def _deliver_orphans(self, sender: KafkaSender) -> None:
        for folder in orphaned_folders(self.config.spool_dir, own=self.folder.path):
            await deliver_folder(folder, sender)


async def deliver_folder(folder: SpoolFolder, sender: KafkaSender) -> int:
    """Send every frame of a dead session's folder, then delete it. Returns frames sent."""
    reader = SpoolReader(folder)
    sent = 0
    while frames := reader.next_batch(None):
        delivered = await sender.send(frames)
        while not delivered:
            await asyncio.sleep(0.5)
            delivered = await sender.send(frames)
        reader.commit()
        sent += len(frames)
    folder.remove()
    return sent

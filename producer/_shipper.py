"""The background half of the producer: one daemon thread with its own asyncio loop, and a courier.

Callers hand it encoded events (`submit`, a list append, no I/O). Once per flush interval the loop
moves them to the write-ahead spool on disk (one write call of one block) and wakes the
courier, which sends the spool to Kafka in order and says how far Kafka acknowledged it. The
courier is a process of its own by default (`ProducerConfig.courier`), so Kafka's client never
competes with training for the interpreter lock; a thread of this loop when asked to, or when no
process can be started. When the broker is away the spool grows on disk (up to `spool_max_bytes`;
beyond that new events are dropped, counted and logged) and drains in order when it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runstream._config import ProducerConfig
from runstream._errors import ClosedError, TransportError
from runstream.producer import _protocol as protocol
from runstream.producer._courier import Courier
from runstream.producer._problems import ProblemReporter
from runstream.producer._signals import critical
from runstream.producer._spool import Destination, SegmentCursor, SegmentWriter, SpoolFolder

_RESPAWN_AFTER = 1.0
_FOLLOW_EVERY = 1.0  # seconds between reads of the courier's acknowledgements when no one waits
_DOZE = 1.0  # seconds between rounds while nothing is logged
_STOP_GRACE = 3.0
_FAILED_STARTS = 3


@dataclass(frozen=True, slots=True)
class CloseReport:
    """What `close()` achieved: everything delivered (nothing dropped, nothing left), or how much
    waits on disk and where, and how much was dropped.
    """

    delivered: bool
    remaining: int
    spool_path: str
    dropped: int = 0  # events that never reached the spool (a full disk): lost


class Shipper:
    """Moves events from the caller to the spool, and has a courier send the spool to Kafka."""

    def __init__(
        self,
        config: ProducerConfig,
        problems: ProblemReporter,
        key: bytes,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.problems = problems
        self.key = key
        self.producer_id = str(uuid.uuid4())
        destination = Destination(config.kafka.bootstrap_servers, config.kafka.topic)
        self.folder = SpoolFolder.create(config.spool_dir / self.producer_id, destination)
        self._writer = SegmentWriter(self.folder, config.segment_bytes)
        self._pending: list[bytes] = []
        self._disk_lock = threading.Lock()
        self._counter = itertools.count(1)
        # (segment, end offset, events written up to there), for each write not yet acknowledged
        self._marks: deque[tuple[int, int, int]] = deque()
        self._measured = self._unmeasured = self._free = 0
        self._measure_at = 0.0
        self._follow_at = 0.0  # when the courier's acknowledgements are read next
        self.submitted = 0
        self.written = 0
        self.acked = 0
        self.dropped = 0
        self._settled = threading.Condition()
        self._on_tick = on_tick
        self._closing = False
        self._finishing = False
        self._courier: _CourierProcess | _CourierTask | None = None
        self._respawn_at = 0.0
        self._failed_starts = 0
        self._loop = asyncio.new_event_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Future[None] = self._loop.create_future()  # set by `_finish`
        self._waiters = 0  # callers waiting in flush() or close(): acknowledgements are awaited
        # Nothing was logged for a round: rounds come every `_doze` seconds until an event is.
        self._dozing = False
        self._doze = max(
            config.flush_interval,
            min(_DOZE, config.heartbeat_interval, config.system_metrics_interval or _DOZE),
        )
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="runstream-shipper", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def submit(self, value: bytes, *, final: bool = False) -> None:
        """Hand over one encoded event of this session's run. Never blocks on the network.

        A `final` event (how the run ended) is still taken while `close` runs (SIGTERM arrived
        during it), until the thread has ended.
        `producer/_hotpath.c` does the same for `log()`: a change here is made there too.
        """
        if self._closing and (not final or self._done.done()):
            raise ClosedError("this run's producer is closed")
        self._pending.append(value)
        self.submitted = next(self._counter)
        if self._dozing:  # read after the append: see `_round`
            self._wake_up()
        if len(self._pending) > self.config.memory_events:
            self._spill()

    def fast_parts(self) -> tuple[list[bytes], Iterator[int]]:
        """What the C hot path of `log()` appends to and counts with, as `submit` does."""
        return self._pending, self._counter

    def flush(self, timeout: float) -> bool:
        """Wait until every event submitted so far is acknowledged by Kafka (or dropped)."""
        self._refuse_on_loop_thread("flush")
        target = self.submitted
        deadline = time.monotonic() + timeout
        with critical, self._settled:
            self._waiters += 1
        try:
            self._poke()
            with critical, self._settled:
                while self.acked + self.dropped < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._done.done():
                        return False
                    critical.wait(self._settled, min(left, 0.1))
            return True
        finally:
            with critical, self._settled:
                self._waiters -= 1

    def close(self, timeout: float) -> CloseReport:
        """Deliver what can be delivered within `timeout`, stop the thread, report what is left."""
        self._refuse_on_loop_thread("close")
        # Each step is idempotent: a close interrupted by SIGTERM is done again by the handler,
        # with the final event it added.
        self._closing = True
        self._spill()  # whatever happens next, every submitted event is on disk
        self.flush(timeout)
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._finish)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._done.result(timeout=max(timeout, 1.0) + _STOP_GRACE)
        remaining = self.written - self.acked
        delivered = remaining == 0 and self.dropped == 0
        return CloseReport(delivered, remaining, str(self.folder.path), self.dropped)

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's courier without disturbing it."""
        if isinstance(self._courier, _CourierProcess):
            self._courier.forget()

    def _refuse_on_loop_thread(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{what}() would deadlock on runstream's own loop thread")

    def _wake_up(self) -> None:
        """The first event after a quiet spell: the next round comes one flush interval from now,
        not at the end of the doze.
        """
        self._dozing = False
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._time_round, self.config.flush_interval)

    def _poke(self) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._round)

    def _spill(self) -> None:
        """Memory is full: move pending events to disk now (the only disk write a caller does)."""
        with critical, self._disk_lock:
            self._drain_to_disk()

    # -- loop side ---------------------------------------------------------------------------

    def _drain_to_disk(self) -> None:
        count = len(self._pending)
        if not count:
            return
        values = self._pending[:count]
        del self._pending[:count]  # appends made meanwhile sit after `count` and stay
        full = self._spool_full()
        if full:
            self._drop(count, "spool_full", TransportError(full, retriable=True))
            return
        try:
            before = self._writer.offset
            segment, offset = self._writer.append(self.key, values)
            self._unmeasured += offset - before
        except OSError as exc:  # nothing of the block stays in the spool (`SegmentWriter`)
            self._drop(count, "spool_write", exc)
            return
        if self._writer.roll_error is not None:
            error = self._writer.roll_error
            self.problems.report("spool_roll", error, "cannot start a new spool segment")
        self.written += count
        self._marks.append((segment, offset, self.written))

    def _drop(self, count: int, kind: str, error: BaseException) -> None:
        with self._settled:
            self.dropped += count
            self._settled.notify_all()
        self.problems.report(kind, error, f"dropped {count} events ({self.dropped} so far)")

    def _spool_full(self) -> str | None:
        """Why the spool takes no more now (it holds `spool_max_bytes`, or the disk has less than
        `spool_min_free_bytes` free), or None. The folder and the disk are measured (a listing, a
        stat per segment, a statvfs) once a second, or sooner when what was written since the
        last measure reaches a limit; between measures the courier only ever frees space.
        """
        config = self.config
        now = time.monotonic()
        used = self._measured + self._unmeasured
        free = self._free - self._unmeasured
        within = used < config.spool_max_bytes and free >= config.spool_min_free_bytes
        if now < self._measure_at and within:
            return None
        try:
            self._measured, self._free = self.folder.size(), self.folder.free_bytes()
        except OSError:  # cannot look (no file descriptor left): the write will tell
            return None
        self._unmeasured, self._measure_at = 0, now + 1.0
        if self._measured >= config.spool_max_bytes:
            return f"spool is full ({self._measured} bytes in {self.folder.path})"
        if self._free < config.spool_min_free_bytes:
            return f"disk is nearly full ({self._free} bytes free under {self.folder.path})"
        return None

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
        """Rounds (`_round`) every flush interval or when poked, until `_finish`; then the last
        events to disk, the courier stopped, the spool folder left tidy.
        """
        try:
            self._round()
            await self._stopped
            self._write_pending()
        finally:
            if self._courier is not None:
                await self._courier.stop()
            self._writer.close()
            if self.written == self.acked:
                self.folder.remove()
            else:
                self.folder.unlock()  # what is left is `runstream sync`'s (or the next run's)

    def _write_pending(self, *, wake: bool = True) -> bool:
        """Pending events to disk; a courier running, woken when this wrote something or `wake`.
        Returns whether it wrote something.
        """
        written = self.written
        with self._disk_lock:
            self._drain_to_disk()
        wrote = self.written > written
        if self.written > self.acked:
            self._courier_check(wake=wake or wrote)
        return wrote

    def _courier_check(self, *, wake: bool) -> None:
        """Make sure a courier runs (replacing one that ended), and `wake` it to send at once (it
        looks at the spool by itself every flush interval, too).
        """
        if self._courier is not None and self._courier.ended:
            self._courier_ended(self._courier)
            self._courier = None
            self._respawn_at = time.monotonic() + _RESPAWN_AFTER
        if self._courier is None and not self._finishing and time.monotonic() >= self._respawn_at:
            self._courier = self._start_courier()
        if self._courier is not None and wake:
            self._courier.wake()

    def _courier_ended(self, courier: _CourierProcess | _CourierTask) -> None:
        """A courier ended by itself. Processes that die before they are ready, again and again
        (cannot import runstream, say), give way to a thread.
        """
        courier.discard()
        if not isinstance(courier, _CourierProcess):
            return
        self._failed_starts = 0 if courier.ready else self._failed_starts + 1
        if self._failed_starts == _FAILED_STARTS:
            error = TransportError(f"courier process ended {_FAILED_STARTS} times", retriable=True)
            self.problems.report("courier", error, "sending from a thread of this process instead")

    def _start_courier(self) -> _CourierProcess | _CourierTask:
        if self.config.courier == "process" and self._failed_starts < _FAILED_STARTS:
            try:
                return _CourierProcess(self.config, self.folder, self._on_acked, self.problems)
            except OSError as exc:
                self.problems.report("courier", exc, "cannot start the courier; using a thread")
        courier = Courier(self.folder, self.config, self.problems, self._on_acked)
        return _CourierTask(courier)

    def _on_acked(self, cursor: SegmentCursor) -> None:
        """Kafka acknowledged everything before `cursor`: count the writes that ended there."""
        acked = self.acked
        position = (cursor.segment, cursor.offset)
        while self._marks and self._marks[0][:2] <= position:
            acked = self._marks.popleft()[2]
        if acked > self.acked:
            with self._settled:
                self.acked = acked
                self._settled.notify_all()

    def _tick(self) -> None:
        if self._on_tick is None or self._closing:
            return
        try:
            self._on_tick()
        except Exception as exc:
            self.problems.report("heartbeat", exc, "heartbeat failed")

    def _round(self) -> None:
        """The caller's events to disk, a courier running, what is due (heartbeats), and now and
        then the courier's acknowledgements read; then the next round is timed.

        Each round takes the interpreter lock from training, so a round is one plain timer
        callback (no task, one turn of the loop) with as few system calls as can be: the courier
        is woken only when the round wrote something, and its acknowledgements are read once a
        second, or at once while someone waits for them in `flush` or `close`.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stopped.done():
            return
        if self._finishing:
            self._stopped.set_result(None)
            return
        try:
            now = time.monotonic()
            waiting = self._waiters > 0
            wrote = self._write_pending(wake=waiting)
            self._tick()
            courier = self._courier
            if isinstance(courier, _CourierProcess) and (
                waiting or courier.following or now >= self._follow_at
            ):
                courier.follow(eager=waiting)
                self._follow_at = now + _FOLLOW_EVERY
        except BaseException as exc:  # ends the thread: reported as shipper_crashed
            self._stopped.set_exception(exc)
            return
        delay = self.config.flush_interval
        if not waiting and not wrote:
            # Nothing to write: doze. A caller appends, then reads `_dozing`; this sets it, then
            # reads the list: whichever comes second sees the other's doing, so no event waits
            # out a doze.
            self._dozing = True
            if self._pending:
                self._dozing = False
            else:
                delay = self._doze
        self._time_round(delay)

    def _time_round(self, delay: float) -> None:
        """The next round comes in `delay` seconds (instead of when it was due)."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._stopped.done():
            self._timer = self._loop.call_later(delay, self._round)

    def _finish(self) -> None:
        self._finishing = True
        self._round()


class _CourierTask:
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
            await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), _STOP_GRACE)


class _CourierProcess:
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
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from runstream.producer._courier import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # It imports runstream from where this process did (a script may have put it there).
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._stdin, self._stdout = self._process.stdin, self._process.stdout
        hello = protocol.orders(config, folder.path)
        try:
            self._stdin.write(hello)
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
        deadline = time.monotonic() + _STOP_GRACE
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

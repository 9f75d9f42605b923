"""The background half of the producer: one daemon thread with its own asyncio loop, and a courier.

Callers hand it encoded events (`submit`: a list append, no I/O). Once per flush interval the loop
runs a round: the events go to the write-ahead spool on disk (one write call of one block) and
the courier is woken, which sends the spool to Kafka in order and says how far Kafka
acknowledged it. The courier is a process of its own by default (`ProducerConfig.courier`), so
Kafka's client never competes with training for the interpreter lock; a thread of this loop when
asked to, or when no process can be started. When the broker is away the spool grows on disk (up
to `spool_max_bytes`; beyond that new events are dropped, counted and logged) and drains in order
when it returns.

`Shipper` puts together objects with one job each:
- `Intake`: the hand-over from callers (and the C hot path of `log()`);
- `SpoolWriter`: from the intake to the spool, counting writes and drops;
- `AckLedger`: written, acknowledged and dropped counts, and the wait of `flush`;
- `CourierSupervisor`: one courier running, woken, read, replaced, stopped;
- `RoundScheduler`: when the loop runs a round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from runstream._config import ProducerConfig
from runstream.producer._couriers import STOP_GRACE
from runstream.producer._intake import Intake
from runstream.producer._ledger import AckLedger
from runstream.producer._problems import ProblemReporter
from runstream.producer._rounds import RoundScheduler
from runstream.producer._spool import Destination, SpoolFolder
from runstream.producer._spool_writer import SpoolWriter
from runstream.producer._supervisor import CourierSupervisor

_DOZE = 1.0  # seconds between rounds while nothing is logged


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
        self.problems = problems
        self.producer_id = str(uuid.uuid4())
        destination = Destination(config.kafka.bootstrap_servers, config.kafka.topic)
        self.folder = SpoolFolder.create(config.spool_dir / self.producer_id, destination)
        self.ledger = AckLedger()
        self.intake = Intake(config.memory_events)
        self._writer = SpoolWriter(config, self.folder, key, self.intake, self.ledger, problems)
        self._couriers = CourierSupervisor(config, self.folder, problems, self.ledger.on_acked)
        self._loop = asyncio.new_event_loop()
        self._rounds = RoundScheduler(
            self._loop, self.intake, self._round, interval=config.flush_interval, doze=_doze(config)
        )
        self.intake.wake_up, self.intake.spill = self._rounds.wake_up, self._writer.spill
        self._on_tick = on_tick
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="runstream-shipper", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def submit(self, value: bytes, *, final: bool = False) -> None:
        """Hand over one encoded event of this session's run (`Intake.submit`)."""
        self.intake.submit(value, final=final)

    @property
    def submitted(self) -> int:
        """Events handed over so far."""
        return self.intake.submitted

    def flush(self, timeout: float) -> bool:
        """Wait until every event submitted so far is acknowledged by Kafka (or dropped)."""
        self._refuse_on_loop_thread("flush")
        target = self.intake.submitted
        deadline = time.monotonic() + timeout
        with self.ledger.waiting():
            self._rounds.poke()
            return self.ledger.wait_for(target, deadline, self._done.done)

    def close(self, timeout: float) -> CloseReport:
        """Deliver what can be delivered within `timeout`, stop the thread, report what is left."""
        self._refuse_on_loop_thread("close")
        # Each step is idempotent: a close interrupted by SIGTERM is done again by the handler,
        # with the final event it added.
        self.intake.closing = True
        self._writer.spill()  # whatever happens next, every submitted event is on disk
        self.flush(timeout)
        self._rounds.finish()
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._done.result(timeout=max(timeout, 1.0) + STOP_GRACE)
        ledger = self.ledger
        delivered = ledger.unacked == 0 and ledger.dropped == 0
        return CloseReport(delivered, ledger.unacked, str(self.folder.path), ledger.dropped)

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's courier without disturbing it."""
        self._couriers.forget_after_fork()

    def _refuse_on_loop_thread(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{what}() would deadlock on runstream's own loop thread")

    # -- loop side ---------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self.problems.report("shipper_crashed", exc, "runstream shipper stopped")
        finally:
            self._loop.close()
            self.intake.ended = True
            self._done.set_result(None)
            self.ledger.wake_waiters()

    async def _main(self) -> None:
        """Rounds until `close`; then the last events to disk, the courier stopped, the spool
        folder left tidy.
        """
        try:
            self._rounds.round()
            await self._rounds.stopped
            self._write_pending(wake=True, start=False)
        finally:
            await self._couriers.stop()
            self._writer.close()
            if self.ledger.unacked == 0:
                self.folder.remove()
            else:
                self.folder.unlock()  # what is left is `runstream sync`'s (or the next run's)

    def _round(self) -> bool:
        """The caller's events to disk, a courier running, what is due (heartbeats), and now and
        then the courier's acknowledgements read. With as few system calls as can be: the
        courier is woken only when the round wrote something (or someone waits).
        """
        waiting = self.ledger.waiters > 0
        wrote = self._write_pending(wake=waiting, start=True)
        self._tick()
        self._couriers.follow(waiting=waiting)
        return waiting or wrote

    def _write_pending(self, *, wake: bool, start: bool) -> bool:
        """Pending events to disk; a courier running (when `start`), woken when this wrote
        something or `wake`. Returns whether it wrote something.
        """
        wrote = self._writer.write_pending()
        if self.ledger.unacked:
            self._couriers.ensure(wake=wake or wrote, start=start)
        return wrote

    def _tick(self) -> None:
        if self._on_tick is None or self.intake.closing:
            return
        try:
            self._on_tick()
        except Exception as exc:
            self.problems.report("heartbeat", exc, "heartbeat failed")


def _doze(config: ProducerConfig) -> float:
    """Seconds between rounds while nothing is logged: a second, or less when something is due
    (a heartbeat, a system metrics sample) more often; never less than a flush interval.
    """
    due = min(_DOZE, config.heartbeat_interval, config.system_metrics_interval or _DOZE)
    return max(config.flush_interval, due)

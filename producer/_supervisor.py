"""`CourierSupervisor`: keeps one courier sending the spool to Kafka, and reads what it says.

It starts the courier the config asks for (a process by default), replaces one that ended by
itself a second later, and after a process died before it was ready three times in a row
(cannot import runstream, say) sends from a thread of this process instead. The courier's
acknowledgements are read once a second, or at once while someone waits for them (`follow`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer._courier import Courier
from runstream.producer._couriers import CourierProcess, CourierTask
from runstream.producer._problems import ProblemReporter
from runstream.producer._spool import SegmentCursor, SpoolFolder

_RESPAWN_AFTER = 1.0
_FOLLOW_EVERY = 1.0  # seconds between reads of the courier's acknowledgements when no one waits
_FAILED_STARTS = 3


class CourierSupervisor:
    """Starts, wakes, reads, replaces and stops the courier of one spool folder."""

    def __init__(
        self,
        config: ProducerConfig,
        folder: SpoolFolder,
        problems: ProblemReporter,
        on_acked: Callable[[SegmentCursor], None],
    ) -> None:
        self._config = config
        self._folder = folder
        self._problems = problems
        self._on_acked = on_acked
        self._courier: CourierProcess | CourierTask | None = None
        self._respawn_at = 0.0
        self._failed_starts = 0
        self._follow_at = 0.0  # when the courier's acknowledgements are read next

    def ensure(self, *, wake: bool, start: bool) -> None:
        """Replace a courier that ended; `start` one when none runs (and a second has passed
        since the last ended); `wake` it to send at once (it also looks every flush interval).
        """
        if self._courier is not None and self._courier.ended:
            self._courier_ended(self._courier)
            self._courier = None
            self._respawn_at = time.monotonic() + _RESPAWN_AFTER
        if self._courier is None and start and time.monotonic() >= self._respawn_at:
            self._courier = self._start()
        if self._courier is not None and wake:
            self._courier.wake()

    def follow(self, *, waiting: bool) -> None:
        """Read what a courier process said: once a second, or in every round while `waiting`."""
        courier = self._courier
        if not isinstance(courier, CourierProcess):
            return  # a task calls `on_acked` itself
        now = time.monotonic()
        if waiting or courier.following or now >= self._follow_at:
            courier.follow(eager=waiting)
            self._follow_at = now + _FOLLOW_EVERY

    async def stop(self) -> None:
        if self._courier is not None:
            await self._courier.stop()

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's courier without disturbing it."""
        if isinstance(self._courier, CourierProcess):
            self._courier.forget()

    def _courier_ended(self, courier: CourierProcess | CourierTask) -> None:
        """A courier ended by itself. Processes that die before they are ready, again and again,
        give way to a thread.
        """
        courier.discard()
        if not isinstance(courier, CourierProcess):
            return
        self._failed_starts = 0 if courier.ready else self._failed_starts + 1
        if self._failed_starts == _FAILED_STARTS:
            error = TransportError(f"courier process ended {_FAILED_STARTS} times", retriable=True)
            self._problems.report("courier", error, "sending from a thread of this process instead")

    def _start(self) -> CourierProcess | CourierTask:
        config, folder, problems = self._config, self._folder, self._problems
        if config.courier == "process" and self._failed_starts < _FAILED_STARTS:
            try:
                return CourierProcess(config, folder, self._on_acked, problems)
            except OSError as exc:
                problems.report("courier", exc, "cannot start the courier; using a thread")
        return CourierTask(Courier(folder, config, problems, self._on_acked))

"""`RoundScheduler`: when the shipper's loop runs a round (the body the shipper gives it).

A round comes every flush interval while events come or someone waits for acknowledgements;
while nothing is logged, rounds doze (one every `doze` seconds). The first event after a quiet
spell brings the next round to one flush interval from now (`wake_up`, called by the intake);
`flush` asks for one at once (`poke`); `finish` ends the rounds and resolves `stopped`.

Each round takes the interpreter lock from training, so a round is one plain timer callback (no
task, one turn of the loop). Every method but `round` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from runstream.producer._intake import Intake

RoundBody = Callable[[], bool]  # one round's work; True when busy (it wrote, or someone waits)


class RoundScheduler:
    """Times the rounds of one loop; an exception from a round ends them (`stopped` raises it)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        intake: Intake,
        body: RoundBody,
        *,
        interval: float,
        doze: float,
    ) -> None:
        self._loop = loop
        self._intake = intake
        self._body = body
        self._interval = interval
        self._doze = doze
        self._timer: asyncio.TimerHandle | None = None
        self._finishing = False
        self.stopped: asyncio.Future[None] = loop.create_future()  # resolved by `finish`

    def poke(self) -> None:
        """A round now."""
        self._call_soon(self.round)

    def wake_up(self) -> None:
        """An event after a quiet spell: the next round one flush interval from now, not at the
        end of the doze.
        """
        self._intake.dozing = False
        self._call_soon(self._time_round, self._interval)

    def finish(self) -> None:
        """No more rounds: `stopped` resolves at once."""
        self._call_soon(self._finish)

    def round(self) -> None:
        """Run the body, then time the next round."""
        self._cancel_timer()
        if self.stopped.done():
            return
        if self._finishing:
            self.stopped.set_result(None)
            return
        try:
            busy = self._body()
        except BaseException as exc:  # ends the rounds: the shipper reports it
            self.stopped.set_exception(exc)
            return
        self._time_round(self._interval if busy else self._doze_unless_pending())

    def _doze_unless_pending(self) -> float:
        """The delay after a quiet round. A caller appends, then reads `dozing`; this sets it,
        then reads the list: whichever comes second sees the other's doing, so no event waits
        out a doze.
        """
        self._intake.dozing = True
        if self._intake.pending:
            self._intake.dozing = False
            return self._interval
        return self._doze

    def _time_round(self, delay: float) -> None:
        """The next round comes in `delay` seconds (instead of when it was due)."""
        self._cancel_timer()
        if not self.stopped.done():
            self._timer = self._loop.call_later(delay, self.round)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self) -> None:
        self._finishing = True
        self.round()

    def _call_soon(self, callback: Callable[..., None], *args: float) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(callback, *args)

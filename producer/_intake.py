"""`Intake`: where callers hand encoded events to the background half of the producer.

It is also one of the two objects the C hot path of `log()` (`producer/_hotpath.c`) works with
(the other is the run's `LogState`, `_hotstate.py`), so its layout is public and fixed; C reads
these names, and a change here is made there too:

- `pending`: the events handed over and not yet taken to disk. Callers only append to it.
- `closing`: events that are not final are refused; `ended`: every event is (the thread ended).
- `dozing`: rounds have slowed down while nothing was logged; the next event calls `wake_up()`.
- `memory_events`: with more events than this pending, the caller calls `spill()` itself.
- `taken`: how many events `take` moved out of `pending` so far.

Nothing is counted when an event is appended (that costs the training loop, and a count kept by
two threads can go back in time); `submitted` is worked out under `lock`, the lock `take` runs
under, so it counts every event whose hand-over finished before it was read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from runstream._errors import ClosedError
from runstream.producer._signals import critical

Action = Callable[[], None]


class Intake:
    """The hand-over between callers (any thread) and the spool writer (see the module doc)."""

    __slots__ = (
        "closing",
        "dozing",
        "ended",
        "lock",
        "memory_events",
        "pending",
        "spill",
        "taken",
        "wake_up",
    )

    def __init__(self, memory_events: int) -> None:
        self.pending: list[bytes] = []
        self.memory_events = memory_events
        self.closing = False
        self.ended = False
        self.dozing = False
        self.taken = 0
        self.lock = threading.Lock()
        # Set by the shipper that owns it: the round scheduler's, the spool writer's.
        self.wake_up: Action = _nothing
        self.spill: Action = _nothing

    def submit(self, value: bytes, *, final: bool = False) -> None:
        """Hand over one encoded event. Never blocks on the network.

        A `final` event (how the run ended) is still taken while closing (SIGTERM arrived
        during `close`), until the thread has ended. `producer/_hotpath.c` does the same.
        """
        if self.closing and (not final or self.ended):
            raise ClosedError("this run's producer is closed")
        self.pending.append(value)
        if self.dozing:  # read after the append: see `RoundScheduler.doze_unless_pending`
            self.wake_up()
        if len(self.pending) > self.memory_events:
            self.spill()

    def take(self) -> list[bytes]:
        """Every pending event, moved out (the caller holds `lock`)."""
        count = len(self.pending)
        values = self.pending[:count]
        del self.pending[:count]  # appends made meanwhile sit after `count` and stay
        self.taken += count
        return values

    @property
    def submitted(self) -> int:
        """Events handed over so far, from every thread (those refused as closed excluded)."""
        with critical, self.lock:
            return self.taken + len(self.pending)


def _nothing() -> None:
    """What `wake_up` and `spill` do until the shipper sets them."""

"""`AckLedger`: how many events reached the spool, how many Kafka acknowledged, how many were
dropped; and the wait of `flush` and `close` for them.

The spool writer counts what it wrote (`record_write`, with where each write ended) and what it
dropped; the courier says how far Kafka acknowledged the spool (`on_acked`, a cursor), which
counts every write that ended there. Callers wait until acknowledged and dropped events reach
their target (`wait_for`), and say they wait (`waiting`), so rounds read acknowledgements at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from runstream.producer._signals import critical
from runstream.producer._spool import SegmentCursor


class AckLedger:
    """Counts of written, acknowledged and dropped events; callers wait on them."""

    def __init__(self) -> None:
        self.written = 0
        self.acked = 0
        self.dropped = 0
        self.waiters = 0  # callers in `wait_for`: acknowledgements are read at once
        # (segment, end offset, events written up to there), for each write not yet acknowledged
        self._marks: deque[tuple[int, int, int]] = deque()
        self._settled = threading.Condition()

    @property
    def unacked(self) -> int:
        """Events in the spool Kafka has not acknowledged yet."""
        return self.written - self.acked

    def record_write(self, segment: int, offset: int, count: int) -> None:
        """`count` events were written to the spool, ending at (`segment`, `offset`)."""
        self.written += count
        self._marks.append((segment, offset, self.written))

    def record_drop(self, count: int) -> int:
        """`count` events never reached the spool; returns how many were dropped so far."""
        with self._settled:
            self.dropped += count
            self._settled.notify_all()
        return self.dropped

    def on_acked(self, cursor: SegmentCursor) -> None:
        """Kafka acknowledged everything before `cursor`: count the writes that ended there."""
        acked = self.acked
        position = (cursor.segment, cursor.offset)
        while self._marks and self._marks[0][:2] <= position:
            acked = self._marks.popleft()[2]
        if acked > self.acked:
            with self._settled:
                self.acked = acked
                self._settled.notify_all()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Counts the caller among the waiters meanwhile."""
        with critical, self._settled:
            self.waiters += 1
        try:
            yield
        finally:
            with critical, self._settled:
                self.waiters -= 1

    def wait_for(self, target: int, deadline: float, given_up: Callable[[], bool]) -> bool:
        """Wait until `target` events are acknowledged or dropped; False at `deadline`, or as
        soon as `given_up()` says nothing more will come.
        """
        with critical, self._settled:
            while self.acked + self.dropped < target:
                left = deadline - time.monotonic()
                if left <= 0 or given_up():
                    return False
                critical.wait(self._settled, min(left, 0.1))
        return True

    def wake_waiters(self) -> None:
        """Let every waiter look again (the thread ended)."""
        with self._settled:
            self._settled.notify_all()

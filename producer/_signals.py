"""Signal handlers that never wait on a lock the code they interrupted holds.

Python runs a signal handler in the main thread, between two bytecodes of whatever it was doing.
A SIGTERM handler that ends the run takes the producer's locks (the spool writer's, the
acknowledgement ledger's, the problem counter's); had the main thread been interrupted while it
held one of them, the handler would wait on itself forever. So the main thread marks the places
where it holds such a lock (`with critical:`), and a handler that arrives inside one is deferred
to the moment the outermost of them ends, with every lock released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

Deferred = Callable[[], None]


class CriticalSections:
    """Where the main thread holds a lock a signal handler needs; handlers wait for their end."""

    def __init__(self) -> None:
        self._main = threading.main_thread()
        self._depth = 0
        self._deferred: list[Deferred] = []

    def __enter__(self) -> None:
        if threading.current_thread() is self._main:
            self._depth += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if threading.current_thread() is not self._main:
            return
        self._depth -= 1
        if self._depth == 0 and self._deferred:
            deferred, self._deferred = self._deferred, []
            for action in deferred:
                action()

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        """`condition.wait(timeout)` inside a critical section: the lock is let go meanwhile, so
        a handler may run at once.
        """
        main = threading.current_thread() is self._main
        depth = self._depth
        if main:
            self._depth = 0
        try:
            condition.wait(timeout)
        finally:
            if main:
                self._depth = depth

    def run_or_defer(self, action: Deferred) -> None:
        """From a signal handler: run `action` now, or when the critical section it interrupted
        ends (the interrupted code then finishes first and lets go of its lock).
        """
        if self._depth > 0 and threading.current_thread() is self._main:
            self._deferred.append(action)
        else:
            action()


critical = CriticalSections()

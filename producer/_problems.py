"""Background failures never vanish: they reach a callback, a counter and a rate-limited log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from runstream.producer._signals import critical

logger = logging.getLogger("runstream.producer")

ErrorCallback = Callable[[BaseException], None]


class ProblemReporter:
    """Counts background problems by kind, calls the user's callback, warns at a limited rate."""

    def __init__(self, callback: ErrorCallback | None = None, every: float = 30.0) -> None:
        self.callback = callback
        self.every = every
        self.counts: Counter[str] = Counter()
        self._last_warning: dict[str, float] = {}
        self._lock = threading.Lock()

    def report(self, kind: str, error: BaseException, message: str) -> None:
        """Record one problem of `kind`; warn unless the same kind was warned about recently."""
        with critical, self._lock:
            self.counts[kind] += 1
            now = time.monotonic()
            due = now - self._last_warning.get(kind, -self.every) >= self.every
            if due:
                self._last_warning[kind] = now
            count = self.counts[kind]
        if due:
            logger.warning("%s (%s, %d so far): %s", message, kind, count, error)
        if self.callback is not None:
            try:
                self.callback(error)
            except Exception:  # the user's callback must not kill the shipper
                logger.exception("runstream error callback raised")

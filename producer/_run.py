"""`Run`: one process's (one rank's) handle on a run, with blocking lifecycle calls.

Logging calls never block (see `RunBase`). `flush`, `close`, `complete`, `fail` and `cancel` block,
each bounded by its timeout.
"""

from __future__ import annotations

from types import TracebackType

from runstream.producer._base import RunBase
from runstream.producer._shipper import CloseReport
from runstream.producer._values import describe_error


class Run(RunBase):
    """One process's handle on a run. Build it with `start_run` or `get_run`."""

    def complete(self, timeout: float | None = None) -> CloseReport:
        """Mark this rank completed (the run completes when every rank has), flush and close."""
        return self.end("completed", None, None, timeout)

    def fail(
        self,
        error: BaseException | str | None = None,
        exit_code: int | None = None,
        timeout: float | None = None,
    ) -> CloseReport:
        """Mark the run failed (with the error's traceback when given), flush and close."""
        return self.end("failed", describe_error(error), exit_code, timeout)

    def cancel(self, reason: str | None = None, timeout: float | None = None) -> CloseReport:
        """Mark the run canceled, flush and close."""
        return self.end("canceled", reason, None, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged so far is acknowledged by Kafka; False on timeout."""
        return self.flush_blocking(timeout)

    def close(self, timeout: float | None = None) -> CloseReport:
        """Deliver what can be delivered within `timeout`, then stop; the rest waits on disk."""
        return self.close_blocking(timeout)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is None:
            self.complete()
        elif isinstance(error, KeyboardInterrupt):
            self.cancel("interrupted")
        else:
            self.fail(error)

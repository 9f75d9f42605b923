"""`AsyncRun`: the same run handle for asyncio code.

Logging calls are the same non-blocking calls as `Run`'s (safe inside a coroutine: no I/O). The
calls that wait — `flush`, `close`, `complete`, `fail`, `cancel` — are coroutines that wait in a
worker thread, so the caller's event loop keeps running.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from runstream.producer._base import RunBase
from runstream.producer._shipper import CloseReport
from runstream.producer._values import describe_error


class AsyncRun(RunBase):
    """A run handle whose waiting calls are awaitable. Build it with `start_async_run`."""

    async def complete(self, timeout: float | None = None) -> CloseReport:
        """Mark this rank completed, flush and close."""
        return await asyncio.to_thread(self.end, "completed", None, None, timeout)

    async def fail(
        self,
        error: BaseException | str | None = None,
        exit_code: int | None = None,
        timeout: float | None = None,
    ) -> CloseReport:
        """Mark the run failed, flush and close."""
        reason = describe_error(error)
        return await asyncio.to_thread(self.end, "failed", reason, exit_code, timeout)

    async def cancel(self, reason: str | None = None, timeout: float | None = None) -> CloseReport:
        """Mark the run canceled, flush and close."""
        return await asyncio.to_thread(self.end, "canceled", reason, None, timeout)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged by Kafka; False on timeout."""
        return await asyncio.to_thread(self.flush_blocking, timeout)

    async def close(self, timeout: float | None = None) -> CloseReport:
        """Deliver what can be delivered within `timeout`, then stop; the rest waits on disk."""
        return await asyncio.to_thread(self.close_blocking, timeout)

    async def __aenter__(self) -> AsyncRun:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is None:
            await self.complete()
        elif isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
            await self.cancel("interrupted")
        else:
            await self.fail(error)

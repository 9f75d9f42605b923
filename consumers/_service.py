"""Running a service until SIGTERM or SIGINT, within a shutdown deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("runstream.consumers")
Service = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def run_until_signalled(service: Service, shutdown_timeout: float) -> None:
    """Run `service(stop)` until SIGTERM or SIGINT, then stop it within `shutdown_timeout`.

    The service gets the deadline to finish its batch, commit and leave; past it, it is cancelled
    (its cleanup still runs).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_until_stopped(service, stop, shutdown_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def run_until_stopped(service: Service, stop: asyncio.Event, shutdown_timeout: float) -> None:
    """Run `service(stop)` until it returns, or until `stop` is set plus `shutdown_timeout`."""
    task = asyncio.create_task(service(stop))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        log.info("stopping: finishing the current batch (at most %.0fs)", shutdown_timeout)
        done, _ = await asyncio.wait({task}, timeout=shutdown_timeout)
        if not done:
            log.warning("shutdown deadline passed: abandoning the current batch")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
    task.result()

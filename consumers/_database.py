"""`Database`: an asyncpg pool that tells database trouble (retry later) from rejected data.

Connection refused, PostgreSQL restarting or shutting down, lost connections, deadlocks, full disks,
timeouts and a driver that lost track of a dying connection all become `DatabaseUnavailable`
(retriable: the services pause and retry, never dead-letter). Only data PostgreSQL refuses (SQLSTATE
classes 22 and 23, or values the driver cannot encode) becomes `RejectedByDatabase`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from runstream._config import DatabaseConfig
from runstream._errors import RunstreamError, TransportError

ConnectionInit: TypeAlias = (
    "Callable[[asyncpg.Connection[asyncpg.Record]], Coroutine[Any, Any, None]]"
)
_DATA_CLASSES = ("22", "23")
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


class DatabaseUnavailable(TransportError):
    """PostgreSQL cannot be used right now; retry later (`retriable` is always true)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class RejectedByDatabase(RunstreamError, ValueError):
    """PostgreSQL refused the data itself; retrying the same rows cannot succeed."""


def is_rejected_data(exc: BaseException) -> bool:
    """Whether `exc` is about the data written, not about the database being reachable."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "").startswith(_DATA_CLASSES)
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


class Database:
    """A lazily (re)connected pool; `connection()` translates driver errors at the boundary."""

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        init: ConnectionInit | None = None,
        command_timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self._init = init
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.config.url,
                min_size=min(self.config.min_connections, self.config.max_connections),
                max_size=self.config.max_connections,
                init=self._init,
                command_timeout=self._command_timeout,
                timeout=self._connect_timeout,
            )
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; raises `DatabaseUnavailable` or `RejectedByDatabase`."""
        try:
            pool = await self._ensure_pool()
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                try:
                    yield conn
                except asyncpg.InternalClientError:
                    # The driver lost track of the protocol (seen when the server shuts down
                    # under a query): this connection must not go back to the pool.
                    conn.terminate()
                    raise
        except (RejectedByDatabase, DatabaseUnavailable):
            raise
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
        ) as exc:
            if is_rejected_data(exc):
                raise RejectedByDatabase(f"PostgreSQL refused the data: {exc}") from exc
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {exc!r}") from exc

    async def close(self, grace: float = 10.0) -> None:
        """Close the pool, giving connections `grace` seconds to finish."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(grace):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

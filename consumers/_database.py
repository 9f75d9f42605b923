"""`Database`: an asyncpg pool that tells database trouble (retry later) from rejected data.

A refused login (SQLSTATE class 28: wrong password, no `pg_hba.conf` entry) and a database that
does not exist (3D000) are `ServiceMisconfigured`: retrying cannot fix them, so the services exit.
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
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from runstream._config import DatabaseConfig
from runstream._errors import RunstreamError, TransportError
from runstream.consumers._failfast import ServiceMisconfigured

ConnectionInit: TypeAlias = (
    "Callable[[asyncpg.Connection[asyncpg.Record]], Coroutine[Any, Any, None]]"
)
_DATA_CLASSES = ("22", "23")
_LOGIN_REFUSED = ("28",)
_NO_DATABASE = "3D000"
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
        except (RejectedByDatabase, DatabaseUnavailable, ServiceMisconfigured):
            raise
        except asyncpg.PostgresError as exc:
            raise _classified(exc, self.config.url) from exc
        except (
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


def _classified(exc: asyncpg.PostgresError, url: str) -> RunstreamError:
    """`exc` as what it means to a service: a misconfiguration, refused data or unavailability."""
    sqlstate = str(exc.sqlstate or "")
    if sqlstate.startswith(_LOGIN_REFUSED) or sqlstate == _NO_DATABASE:
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port or 5432}{parts.path}"
        return ServiceMisconfigured(
            f"PostgreSQL at {where} refused user {parts.username!r}: {exc} "
            "(check the service's database URL: RUNSTREAM_DATABASE_URL or _READ_URL)"
        )
    if is_rejected_data(exc):
        return RejectedByDatabase(f"PostgreSQL refused the data: {exc}")
    return DatabaseUnavailable(f"PostgreSQL unavailable: {exc!r}")

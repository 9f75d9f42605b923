"""The CLI's connection to PostgreSQL: the read-only role (the writer's for deletions), errors
that say where and what to do.

Every driver failure becomes a `CommandError` with exit code `DATABASE` naming the address tried
(host, port, database and user, never the password) and the likely fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeAlias
from urllib.parse import urlsplit

import asyncpg

from runstream._config import DatabaseConfig
from runstream.cli._exits import CommandError, ExitCode

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
CONNECT_TIMEOUT = 10.0
_SETTING = "RUNSTREAM_DATABASE_READ_URL"


def describe_address(url: str) -> str:
    """`user@host:port/database` of a PostgreSQL URL, without its password."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{host}{port}{parts.path or '/'}"


def _unreachable(url: str, exc: BaseException, setting: str = _SETTING) -> CommandError:
    where = describe_address(url)
    if isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        return CommandError(
            f"PostgreSQL at {where} refused the login: {exc}",
            f"Check the user and password in {setting}.",
            ExitCode.DATABASE,
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return CommandError(
            f"PostgreSQL at {where}: {exc}",
            f"Point {setting} at runstream's database, or create it with `runstream db upgrade`.",
            ExitCode.DATABASE,
        )
    reason = str(exc) or type(exc).__name__
    return CommandError(
        f"cannot reach PostgreSQL at {where}: {reason}",
        f"Is it running? `runstream stack status` checks the local stack; elsewhere set {setting}.",
        ExitCode.DATABASE,
    )


def query_failed(url: str, exc: BaseException, setting: str = _SETTING) -> CommandError:
    """A `CommandError` for a query that failed on a connection that worked."""
    where = describe_address(url)
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return CommandError(
            f"the database at {where} lacks runstream's tables ({exc})",
            "Apply the migrations with `runstream db upgrade`.",
            ExitCode.DATABASE,
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return CommandError(
            f"PostgreSQL at {where} refused a read: {exc}",
            "The reader role needs SELECT on runstream's tables: `runstream db upgrade` grants it.",
            ExitCode.DATABASE,
        )
    if isinstance(exc, asyncpg.PostgresError):
        return CommandError(f"PostgreSQL at {where}: {exc}", None, ExitCode.DATABASE)
    return _unreachable(url, exc, setting)


def reader(config: DatabaseConfig) -> contextlib.AbstractAsyncContextManager[Connection]:
    """A connection as the read-only role; failures become `CommandError`s."""
    return _connected(config, _SETTING)


def writer(config: DatabaseConfig) -> contextlib.AbstractAsyncContextManager[Connection]:
    """A connection as the writer role (deletions), failures named after its setting."""
    return _connected(config, "RUNSTREAM_DATABASE_URL")


@contextlib.asynccontextmanager
async def _connected(config: DatabaseConfig, setting: str) -> AsyncIterator[Connection]:
    try:
        conn: Connection = await asyncpg.connect(
            config.url, timeout=CONNECT_TIMEOUT, command_timeout=None
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _unreachable(config.url, exc, setting) from exc
    try:
        yield conn
    except BrokenPipeError:
        raise  # our own stdout closed by its reader, not the database (see `reports_errors`)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise query_failed(config.url, exc, setting) from exc
    finally:
        with contextlib.suppress(OSError, asyncpg.InterfaceError, TimeoutError):
            await conn.close(timeout=2)

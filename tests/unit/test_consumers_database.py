"""`Database.connection` sorts driver errors: retry later, or data PostgreSQL refuses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from runstream._config import DatabaseConfig
from runstream.consumers import DatabaseUnavailable, RejectedByDatabase
from runstream.consumers._database import Database


class _Connection:
    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class _Pool:
    """Hands out one connection, as `asyncpg.Pool.acquire` does."""

    def __init__(self) -> None:
        self.connection = _Connection()
        self.released = 0

    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float) -> AsyncIterator[_Connection]:  # noqa: ASYNC109
        try:
            yield self.connection
        finally:
            self.released += 1


def _database() -> tuple[Database, _Pool]:
    database = Database(DatabaseConfig(url="postgresql://nobody@127.0.0.1:1/none"))
    pool = _Pool()
    database._pool = pool  # type: ignore[assignment]
    return database, pool


async def _raise_inside(database: Database, error: BaseException) -> Any:
    async with database.connection():
        raise error


async def test_a_driver_that_lost_the_protocol_is_unavailable_and_its_connection_dropped() -> None:
    database, pool = _database()
    lost = asyncpg.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    )
    with pytest.raises(DatabaseUnavailable, match="another operation") as caught:
        await _raise_inside(database, lost)
    assert caught.value.retriable
    assert pool.connection.terminated  # never handed out again
    assert pool.released == 1


async def test_a_server_shutting_down_is_unavailable_and_the_connection_kept_for_the_pool() -> None:
    database, pool = _database()
    with pytest.raises(DatabaseUnavailable, match="shutting down"):
        await _raise_inside(database, asyncpg.CannotConnectNowError("the system is shutting down"))
    assert not pool.connection.terminated  # the pool's own reset decides


async def test_data_the_server_refuses_is_rejected_not_retried() -> None:
    database, _ = _database()
    refused = asyncpg.NumericValueOutOfRangeError("value out of range")
    with pytest.raises(RejectedByDatabase, match="out of range"):
        await _raise_inside(database, refused)

"""Helpers shared by the integration tests (not fixtures: those live in conftest.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg


class Rows:
    """Reads as the reader role, one connection per call, so that tests stay plain functions
    that drive the CLI with blocking subprocess calls, as a user's shell does."""

    def __init__(self, url: str) -> None:
        self.url = url

    def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return list(asyncio.run(self._call("fetch", query, *args)))

    def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        row: asyncpg.Record | None = asyncio.run(self._call("fetchrow", query, *args))
        return row

    def fetchval(self, query: str, *args: object) -> Any:
        return asyncio.run(self._call("fetchval", query, *args))

    async def _call(self, method: str, query: str, *args: object) -> Any:
        connection = await asyncpg.connect(self.url)
        try:
            return await getattr(connection, method)(query, *args)
        finally:
            await connection.close()


def wait_for_run(
    rows: Rows, run_id: str, *, status: str = "completed", metrics: int = 0, within: float = 120
) -> None:
    """Block until PostgreSQL holds the run in `status` with at least `metrics` scalar values."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = rows.fetchrow(
            "SELECT status, (SELECT count(*) FROM metrics WHERE run_id = $1) AS values "
            "FROM runs WHERE run_id = $1",
            run_id,
        )
        if found is not None and found["status"] == status and found["values"] >= metrics:
            return
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} not stored as {status} with {metrics} values: {found}")

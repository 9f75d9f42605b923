"""`AsyncClient` and `Client`: a run's history read back from PostgreSQL, from Python.

Both read as the read-only role (`RUNSTREAM_DATABASE_READ_URL` unless a config is given). Run ids
may be given by their first characters, as on the command line. `Client` is the blocking facade
for scripts and notebooks: one named daemon thread runs its own event loop and the async client,
so it works where a loop already runs (Jupyter) and never blocks someone else's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from runstream._config import DatabaseConfig
from runstream._errors import ConfigError, NotFoundError
from runstream.consumers._database import Database
from runstream.consumers.read import _history, _runs, _shapes
from runstream.consumers.read._downsample import DOWNSAMPLED_COLUMNS, downsampled_history
from runstream.consumers.read._frames import (
    FrameKind,
    check_kind,
    convert,
    dicts_table,
    records_table,
)

_T = TypeVar("_T")
Names = str | Sequence[str] | None


def _names(names: Names) -> list[str] | None:
    return [names] if isinstance(names, str) else (list(names) if names else None)


def _default_config() -> DatabaseConfig:
    from runstream._settings import Settings  # noqa: PLC0415 - entry point reads the environment

    return Settings().database(read_only=True)


class AsyncClient:
    """Reads runs, curves, tables and files; every method is a coroutine.

    async with AsyncClient() as client:
        frame = await client.metrics("1f3c2a", "loss")
    """

    def __init__(self, config: DatabaseConfig | None = None) -> None:
        self._database = Database(config or _default_config(), command_timeout=300.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections."""
        await self._database.close()

    async def runs(
        self,
        experiment: str | None = None,
        status: str | Sequence[str] | None = None,
        *,
        tags: Mapping[str, object] | None = None,
        params: Mapping[str, object] | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Runs newest first, at most `limit`, those every given filter selects.

        One experiment; one state or any of several; these tags and params (each key with that
        value, compared as the strings they are stored as); started in a time range.
        """
        where = _runs.RunFilter(
            experiment, status, tags, params, started_after, started_before, limit
        )
        async with self._database.connection() as conn:
            return await _runs.list_runs(conn, where)

    async def run(self, run_id: str) -> dict[str, Any]:
        """One run: its columns (status, params, tags, times, error…) and `ranks`, one row each."""
        async with self._database.connection() as conn:
            run = await _runs.get_run(conn, run_id)
            run["ranks"] = await _runs.ranks(conn, run["run_id"])
            return run

    async def metrics(
        self,
        run_ids: str | Sequence[str],
        names: Names = None,
        *,
        rank: int | None = None,
        aggregate: bool = False,
        points: int | None = None,
        frame: FrameKind = "pandas",
    ) -> Any:
        """The metric history of one or many runs and names, as a frame.

        Per value: run_id, name, step, rank, time, value, in run, name, step order. With
        `aggregate`, one row per run, name and step across ranks: min, mean, max and `ranks`.
        With `points`, at most that many points of each (run, name, rank) curve, read by
        PostgreSQL: each of `points // 2` step buckets keeps its lowest and its highest point
        (run_id, name, step, rank, value; no time), so every spike of a long curve survives.
        """
        kind = check_kind(frame)
        if aggregate and points is not None:
            raise ConfigError("aggregate=True with points: choose one (points reads per rank)")
        async with self._database.connection() as conn:
            found = [await self._full_id(conn, r) for r in _listed(run_ids)]
            if aggregate:
                records = await _history.metric_aggregate(conn, found, _names(names), rank)
                return convert(records_table(records, _history.AGGREGATE_COLUMNS), kind)
            if points is not None:
                records = await downsampled_history(conn, found, _names(names), rank, points)
                return convert(records_table(records, DOWNSAMPLED_COLUMNS), kind)
            records = await _history.metric_history(conn, found, _names(names), rank)
        return convert(records_table(records, _history.METRIC_COLUMNS), kind)

    async def table(
        self, run_id: str, name: str, *, rank: int | None = None, frame: FrameKind = "pandas"
    ) -> Any:
        """A logged table as a frame: `rank`, `time`, then its columns, in logged order."""
        kind = check_kind(frame)
        async with self._database.connection() as conn:
            found = await self._full_id(conn, run_id)
            rows = await _history.table_rows(conn, found, name, rank)
            if not rows:
                known = await _history.table_names(conn, found)
                raise NotFoundError(f"run {found} logged no table {name!r}", known)
        flat = [{"rank": r["rank"], "time": r["time"], **r["row_data"]} for r in rows]
        return convert(dicts_table(flat), kind)

    async def file(self, run_id: str, name: str, *, step: int | None = None) -> bytes:
        """The bytes of a logged file or image (the newest of that name, or the one at `step`)."""
        async with self._database.connection() as conn:
            found = await self._full_id(conn, run_id)
            row = await _history.file_data(conn, found, name, step)
            if row is None:
                known = sorted({f["name"] for f in await _history.file_list(conn, found)})
                raise NotFoundError(f"run {found} has no file {name!r}", known)
        data: bytes = row["data"]
        return data

    async def files(self, run_id: str) -> list[dict[str, Any]]:
        """A run's files and images: name, rank, step, time, media_type, size."""
        async with self._database.connection() as conn:
            return await _history.file_list(conn, await self._full_id(conn, run_id))

    async def get_metrics(
        self, run_id: str, name: str | None = None, *, rank: int = 0
    ) -> dict[str, Any]:
        """Azure ML v1's `run.get_metrics()` of one rank (0: a single-process run's only one).

        name -> value (logged once), list of values (several times), column -> values (tables),
        or a reference string (files and images).
        """
        async with self._database.connection() as conn:
            found = await self._full_id(conn, run_id)
            result = await _azure_metrics(conn, found, rank)
        if name is None:
            return result
        return {name: result[name]} if name in result else {}

    async def _full_id(self, conn: Any, run_id: str) -> str:
        run = await _runs.get_run(conn, run_id)
        found: str = run["run_id"]
        return found


def _listed(run_ids: str | Sequence[str]) -> list[str]:
    return [run_ids] if isinstance(run_ids, str) else list(run_ids)


async def _azure_metrics(conn: Any, run_id: str, rank: int) -> dict[str, Any]:
    records = await _history.metric_history(conn, [run_id], None, rank)
    texts = await _history.text_history(conn, run_id, rank)
    pairs = [(r["name"], r["value"]) for r in records] + [(r["name"], r["value"]) for r in texts]
    result = _shapes.scalar_metrics(pairs)
    for table in await _history.table_names(conn, run_id):
        rows = await _history.table_rows(conn, run_id, table, rank)
        if rows:
            result[table] = _shapes.table_metric(rows)
    for item in await _history.file_list(conn, run_id):
        if item["rank"] == rank:
            result[item["name"]] = _shapes.file_reference(run_id, item["name"])
    return result


class Client:
    """The blocking read API (MLflow's `MlflowClient`, W&B's `Api`, Azure's `get_metrics`).

    with Client() as client:
        runs = client.runs(experiment="mnist", status="completed", params={"lr": 0.01})
        loss = client.metrics(runs[0]["run_id"], "loss")           # pandas
        band = client.metrics(run_id, "loss", aggregate=True)      # min/mean/max across ranks
        long = client.metrics(run_id, "loss", points=2000)         # each bucket's min and max

    Each method is `AsyncClient`'s, run on the client's own loop thread.
    """

    def __init__(self, config: DatabaseConfig | None = None) -> None:
        self._async = AsyncClient(config)  # a bad config fails here, before a thread starts
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="runstream-read", daemon=True
        )
        self._thread.start()

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("Client methods cannot be called from the client's own loop")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the loop thread."""
        if not self._loop.is_running():
            return
        self._call(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def runs(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """See `AsyncClient.runs`."""
        return self._call(self._async.runs(*args, **kwargs))

    def run(self, run_id: str) -> dict[str, Any]:
        """See `AsyncClient.run`."""
        return self._call(self._async.run(run_id))

    def metrics(self, run_ids: str | Sequence[str], names: Names = None, **kwargs: Any) -> Any:
        """See `AsyncClient.metrics`."""
        return self._call(self._async.metrics(run_ids, names, **kwargs))

    def table(self, run_id: str, name: str, **kwargs: Any) -> Any:
        """See `AsyncClient.table`."""
        return self._call(self._async.table(run_id, name, **kwargs))

    def file(self, run_id: str, name: str, *, step: int | None = None) -> bytes:
        """See `AsyncClient.file`."""
        return self._call(self._async.file(run_id, name, step=step))

    def image(self, run_id: str, name: str, *, step: int | None = None) -> bytes:
        """A logged image's PNG bytes (`file` by another name, as images are files)."""
        return self.file(run_id, name, step=step)

    def files(self, run_id: str) -> list[dict[str, Any]]:
        """See `AsyncClient.files`."""
        return self._call(self._async.files(run_id))

    def get_metrics(self, run_id: str, name: str | None = None, *, rank: int = 0) -> dict[str, Any]:
        """See `AsyncClient.get_metrics`."""
        return self._call(self._async.get_metrics(run_id, name, rank=rank))

"""Deleting runs and experiments: every row of a run, in every table, in one transaction.

Which tables hold a run's rows is read from the catalog — every table of the schema with a
`run_id` column (a partitioned table once, not each partition; views never) — so a table that a
later migration adds is covered without a change here. Metric values are counted as rows of
`metric_chunks` (a chunk holds many) and as values.
A deletion names whole run ids (never prefixes), refuses unknown ids and, unless forced, runs
that are not finished: nothing is removed when any of them is refused. It removes what
PostgreSQL holds; events of a deleted run that are still in Kafka come back only if a consumer
group is reset to before them, or a spool holding them is synced later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from runstream._errors import RunstreamError

if TYPE_CHECKING:
    import asyncpg

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]

LIVE_STATES = ("running", "stalled", "lost")
"""States of a run that has not finished: deleting one needs `force`."""

_RUN_TABLES = """
SELECT c.relname AS table_name
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition AND a.attname = 'run_id' AND NOT a.attisdropped
ORDER BY c.relname
"""


class DeletionRefused(RunstreamError, ValueError):
    """Some named runs or experiments cannot be deleted; nothing was."""

    def __init__(self, message: str, names: Sequence[str]) -> None:
        super().__init__(f"{message}: {', '.join(names)}")
        self.names = tuple(names)


@dataclass(frozen=True, slots=True)
class Removal:
    """What a deletion removes: the runs (and experiments) and how many rows of each table."""

    runs: tuple[str, ...]
    rows: Mapping[str, int]
    experiments: tuple[str, ...] = ()
    values: int = 0
    """Metric values in the removed chunks."""

    @property
    def total(self) -> int:
        """Rows in all tables."""
        return sum(self.rows.values())


async def run_tables(conn: Connection) -> list[str]:
    """The tables that hold rows of runs (a `run_id` column)."""
    return [row["table_name"] for row in await conn.fetch(_RUN_TABLES)]


async def plan_run_deletion(conn: Connection, run_ids: Sequence[str], *, force: bool) -> Removal:
    """What deleting `run_ids` would remove; `DeletionRefused` for unknown or live runs."""
    ids = tuple(dict.fromkeys(run_ids))
    found = await conn.fetch("SELECT run_id, status FROM runs WHERE run_id = ANY($1)", list(ids))
    states = {row["run_id"]: row["status"] for row in found}
    unknown = [run_id for run_id in ids if run_id not in states]
    if unknown:
        raise DeletionRefused("no such run", unknown)
    live = [run_id for run_id in ids if states[run_id] in LIVE_STATES]
    if live and not force:
        raise DeletionRefused("not finished (give force to delete anyway)", live)
    values = await conn.fetchval(_VALUES, list(ids))
    return Removal(runs=ids, rows=await _count(conn, ids), values=values)


async def plan_experiment_deletion(
    conn: Connection, names: Sequence[str], *, force: bool
) -> Removal:
    """What deleting the experiments `names` and all their runs would remove."""
    wanted = list(dict.fromkeys(names))
    known = {r["name"] for r in await conn.fetch(_EXPERIMENTS, wanted)}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise DeletionRefused("no such experiment", unknown)
    runs = await conn.fetch("SELECT run_id FROM runs WHERE experiment = ANY($1)", wanted)
    removal = await plan_run_deletion(conn, [r["run_id"] for r in runs], force=force)
    rows = dict(removal.rows) | {"experiments": len(wanted)}
    return Removal(runs=removal.runs, rows=rows, experiments=tuple(wanted), values=removal.values)


async def delete(conn: Connection, plan: Removal) -> Removal:
    """Carry out `plan` in one transaction; return what was removed, counted by PostgreSQL."""
    removed: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute(_LOCK_RUNS, list(plan.runs))
        values = await conn.fetchval(_VALUES, list(plan.runs))
        for table in await run_tables(conn):
            status = await conn.execute(
                f"DELETE FROM {_quoted(table)} WHERE run_id = ANY($1)", list(plan.runs)
            )
            removed[table] = _affected(status)
        if plan.experiments:
            status = await conn.execute(
                "DELETE FROM experiments WHERE name = ANY($1)", list(plan.experiments)
            )
            removed["experiments"] = _affected(status)
    return Removal(runs=plan.runs, rows=removed, experiments=plan.experiments, values=values)


_LOCK_RUNS = "SELECT 1 FROM runs WHERE run_id = ANY($1) ORDER BY run_id FOR UPDATE"
"""Taken first: no persist batch or compaction of these runs is under way meanwhile (both lock
the run first), and none starts until the deletion ends."""
_VALUES = "SELECT coalesce(sum(n), 0)::bigint FROM metric_chunks WHERE run_id = ANY($1)"
_EXPERIMENTS = (
    "SELECT name FROM experiments WHERE name = ANY($1) "
    "UNION SELECT experiment FROM runs WHERE experiment = ANY($1)"
)


async def _count(conn: Connection, run_ids: Sequence[str]) -> dict[str, int]:
    counts = {}
    for table in await run_tables(conn):
        query = f"SELECT count(*) FROM {_quoted(table)} WHERE run_id = ANY($1)"
        counts[table] = int(await conn.fetchval(query, list(run_ids)))
    return counts


def _quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


def _affected(status: str) -> int:
    """The row count of a `DELETE n` command status."""
    return int(status.rsplit(" ", 1)[-1])

"""`runs` and `run_ranks` as `RunState`s.

Read for a batch, an exporter rebuild or a watchdog tick; written back by persist through staging
tables (one COPY and one upsert per table).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from runstream.consumers._database import Connection
from runstream.consumers._rows import json_storable, storable
from runstream.consumers._runstate import RankState, RunState

RUN_COLUMNS = (
    "run_id", "experiment", "name", "status", "status_reason", "status_source", "started_at",
    "ended_at",
    "world_size", "params", "tags", "host", "pid", "command", "git_commit", "last_heartbeat_at",
    "last_progress_at", "last_step", "expect_next_in", "error", "exit_code",
)  # fmt: skip
RANK_COLUMNS = (
    "run_id", "rank", "status", "host", "pid", "last_heartbeat_at", "last_progress_at",
    "last_step", "expect_next_in", "straggling", "finished_at", "exit_code", "reason",
)  # fmt: skip
_RUN_FIELDS = [c for c in RUN_COLUMNS if c not in ("params", "tags")]
_DERIVED = ("last_heartbeat_at", "last_progress_at", "last_step")

_SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_SELECT_RANKS = f"SELECT {', '.join(RANK_COLUMNS)} FROM run_ranks WHERE run_id = ANY($1::text[])"
_LOCK_RUNS = _SELECT_RUNS + " WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR UPDATE"
_LIVE_RUNS = _SELECT_RUNS + " WHERE status IN ('running', 'stalled', 'lost') ORDER BY run_id"
_RECENT_RUNS = _SELECT_RUNS + (
    " WHERE status IN ('running', 'stalled', 'lost')"
    " OR ended_at > now() - make_interval(secs => $1)"
)


def _updates(columns: Iterable[str], key: Iterable[str]) -> str:
    keys = set(key)
    return ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)


UPSERT_RUNS = (
    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) SELECT {', '.join(RUN_COLUMNS)} FROM stage_runs "
    f"ON CONFLICT (run_id) DO UPDATE SET {_updates(RUN_COLUMNS, ['run_id'])}, updated_at = now()"
)
UPSERT_RANKS = (
    f"INSERT INTO run_ranks ({', '.join(RANK_COLUMNS)}) "
    f"SELECT {', '.join(RANK_COLUMNS)} FROM stage_run_ranks "
    f"ON CONFLICT (run_id, rank) DO UPDATE SET {_updates(RANK_COLUMNS, ['run_id', 'rank'])}"
)
INSERT_EXPERIMENTS = (
    "INSERT INTO experiments (name) SELECT DISTINCT experiment FROM stage_runs "
    "ON CONFLICT DO NOTHING"
)
_WRITE_BACK = ";\n".join((UPSERT_RUNS, UPSERT_RANKS, INSERT_EXPERIMENTS))  # one round trip


def run_row(run: RunState) -> tuple[Any, ...]:
    """The `runs` row of a run, in `RUN_COLUMNS` order."""
    values: dict[str, Any] = {c: getattr(run, c) for c in _RUN_FIELDS}
    values["params"] = json_storable(run.params)
    values["tags"] = json_storable(run.tags)
    for text in ("name", "status_reason", "host", "command", "git_commit", "error"):
        values[text] = storable(values[text])
    return tuple(values[c] for c in RUN_COLUMNS)


def rank_row(rank: RankState) -> tuple[Any, ...]:
    """The `run_ranks` row of a rank, in `RANK_COLUMNS` order."""
    values = {c: getattr(rank, c) for c in RANK_COLUMNS}
    values["reason"] = storable(values["reason"])
    values["host"] = storable(values["host"])
    return tuple(values[c] for c in RANK_COLUMNS)


def states_from_rows(
    runs: Sequence[asyncpg.Record], ranks: Sequence[asyncpg.Record]
) -> dict[str, RunState]:
    """Rebuild `RunState`s from `runs` and `run_ranks` rows."""
    states: dict[str, RunState] = {}
    for row in runs:
        fields = {c: row[c] for c in _RUN_FIELDS if c not in _DERIVED}
        state = RunState(**fields)
        state.params, state.tags = _json(row["params"]), _json(row["tags"])
        states[row["run_id"]] = state
    for row in ranks:
        run = states.get(row["run_id"])
        if run is not None:
            run.ranks[row["rank"]] = RankState(**{c: row[c] for c in RANK_COLUMNS})
    return states


def _json(value: Any) -> dict[str, str]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return dict(decoded or {})


async def lock_runs(conn: Connection, run_ids: Sequence[str]) -> dict[str, RunState]:
    """Lock (in a stable order, so two writers never deadlock) and read the given runs."""
    runs = await conn.fetch(_LOCK_RUNS, list(run_ids))
    ranks = await conn.fetch(_SELECT_RANKS, list(run_ids)) if runs else []
    return states_from_rows(runs, ranks)


async def live_runs(conn: Connection) -> dict[str, RunState]:
    """Runs that are running, stalled or lost (bounded by the partial index `runs_live`)."""
    runs = await conn.fetch(_LIVE_RUNS)
    ranks = await conn.fetch(_SELECT_RANKS, [r["run_id"] for r in runs]) if runs else []
    return states_from_rows(runs, ranks)


async def recent_runs(conn: Connection, ended_within: float) -> dict[str, RunState]:
    """Live runs and those that ended less than `ended_within` seconds ago."""
    runs = await conn.fetch(_RECENT_RUNS, ended_within)
    ranks = await conn.fetch(_SELECT_RANKS, [r["run_id"] for r in runs]) if runs else []
    return states_from_rows(runs, ranks)


async def write_runs(conn: Connection, runs: Iterable[RunState]) -> None:
    """Upsert runs, their ranks and their experiments (inside the caller's transaction)."""
    runs = list(runs)
    if not runs:
        return
    await conn.copy_records_to_table(
        "stage_runs", records=[run_row(r) for r in runs], columns=RUN_COLUMNS
    )
    ranks = [rank_row(rank) for run in runs for rank in run.ranks.values()]
    await conn.copy_records_to_table("stage_run_ranks", records=ranks, columns=RANK_COLUMNS)
    await conn.execute(_WRITE_BACK)

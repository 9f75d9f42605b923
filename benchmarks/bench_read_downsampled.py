"""A long curve read at a point budget (each step bucket's min and max), against PostgreSQL.

    eval "$(runstream stack env --admin)"
    python benchmarks/bench_read_downsampled.py [--values 10000000] [--points 2000]

Builds a fresh, migrated database of its own whose `metrics` table holds one run's curve of
`--values` values at steps 0, 1, 2… (rank 0; loaded, then its key rebuilt and the table vacuumed,
as a bulk restore would), and times `downsampled_history` (what `Client.metrics(points=…)`,
`runstream plot` and the Grafana curve panels run) reading it at `--points` points: the first
read and the median of the warm ones. The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from runstream._config import DatabaseConfig
from runstream._settings import Settings
from runstream.consumers import upgrade
from runstream.consumers.read import queries

# The consumers' test harness lives with the tests, at the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import create_database, database_url, drop_database

_LOAD = """
INSERT INTO metrics (run_id, name, step, rank, time, value, producer_id, seq, idx)
SELECT 'long', 'loss', g, 0, timestamptz '2026-01-01' + g * interval '1 millisecond',
       random() + CASE WHEN g % 100003 = 0 THEN 1000 ELSE 0 END, $2::uuid, g, 0
FROM generate_series(0, $1::bigint - 1) g
"""
_LATEST = (
    "INSERT INTO metric_latest (run_id, name, rank, step, time, value, count) "
    "VALUES ('long', 'loss', 0, $1 - 1, now(), 0, $1)"
)
_PK = "ALTER TABLE metrics ADD PRIMARY KEY (run_id, name, step, producer_id, seq, idx)"


async def load(conn: asyncpg.Connection, values: int) -> None:
    """One curve of `values` values, its key rebuilt after the load."""
    await conn.execute("ALTER TABLE metrics DROP CONSTRAINT metrics_pkey")
    began = time.perf_counter()
    await conn.execute(_LOAD, values, str(uuid.uuid4()), timeout=None)
    await conn.execute(_LATEST, values)
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute(_PK, timeout=None)
    await conn.execute("VACUUM ANALYZE metrics", timeout=None)
    print(f"loaded {values:,} values in {time.perf_counter() - began:.0f}s", flush=True)


async def read(conn: asyncpg.Connection, points: int) -> tuple[float, int]:
    """Seconds to read the curve at `points` points, and how many came back."""
    began = time.perf_counter()
    rows = await queries.downsampled_history(conn, ["long"], ["loss"], None, points)
    return time.perf_counter() - began, len(rows)


async def measure(conn: asyncpg.Connection, args: argparse.Namespace) -> None:
    size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('metrics'))")
    first, count = await read(conn, args.points)
    warm = [(await read(conn, args.points))[0] for _ in range(args.reads)]
    print(
        f"downsampled read of {args.values:,} values ({size}) at {args.points} points -> "
        f"{count} points: first {first * 1000:.0f} ms, warm median "
        f"{statistics.median(warm) * 1000:.0f} ms, min {min(warm) * 1000:.0f} ms "
        f"over {args.reads} reads"
    )


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    if settings.database_admin_url is None:
        raise SystemExit('no RUNSTREAM_DATABASE_ADMIN_URL: eval "$(runstream stack env --admin)"')
    admin = settings.database_admin_url.get_secret_value()
    name = f"runstream_downsample_{uuid.uuid4().hex[:8]}"
    await create_database(admin, name, owner="runstream_writer")
    url = database_url(settings.database_url.get_secret_value(), name)
    try:
        await upgrade(DatabaseConfig(url))
        conn = await asyncpg.connect(url, command_timeout=None)
        try:
            await load(conn, args.values)
            await measure(conn, args)
        finally:
            await conn.close()
    finally:
        await drop_database(admin, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=5)
    asyncio.run(main(parser.parse_args()))

"""Reading one run's curve (one metric, every step) from a large `metrics` table.

    eval "$(runstream stack env --admin)"
    python benchmarks/bench_consumers_curve.py [--rows 100000000] [--keep]

Builds a fresh, migrated database whose `metrics` table holds `--rows` rows: 1,000 runs x 20
metrics, steps interleaved the way live ingestion writes them (every run's step n before any run's
step n+1, so one curve's rows are spread over the whole heap). The primary key is dropped for the
load and rebuilt after (as a bulk restore would), then the table is vacuumed. Prints load time,
table and index size, the plan, and the latency of reading one curve (first read and warm median).
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

# The consumers' test harness lives with the tests, at the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import create_database, database_url, drop_database

RUNS, METRICS = 1000, 20
CHUNK = 10_000_000
_LOAD = """
INSERT INTO metrics (run_id, name, step, rank, time, value, producer_id, seq, idx)
SELECT 'run-' || (g % $3), 'metric_' || ((g / $3) % $4), g / ($3 * $4), 0,
       timestamptz '2026-01-01' + g * interval '1 millisecond', random(), $5::uuid, g, 0
FROM generate_series($1::bigint, $2::bigint - 1) g
"""
_CURVE = "SELECT step, value FROM metrics WHERE run_id = $1 AND name = $2 ORDER BY step"
_PK = "ALTER TABLE metrics ADD PRIMARY KEY (run_id, name, step, producer_id, seq, idx)"


async def load(conn: asyncpg.Connection, rows: int) -> None:
    """Fill `metrics` with `rows` generated rows, in chunks, then rebuild its key."""
    await conn.execute("ALTER TABLE metrics DROP CONSTRAINT metrics_pkey")
    producer = str(uuid.uuid4())
    for start in range(0, rows, CHUNK):
        end = min(start + CHUNK, rows)
        began = time.perf_counter()
        await conn.execute(_LOAD, start, end, RUNS, METRICS, producer, timeout=None)
        print(f"  rows {start:,}..{end:,} in {time.perf_counter() - began:.0f}s", flush=True)
    await conn.execute("SET maintenance_work_mem = '1GB'")
    began = time.perf_counter()
    await conn.execute(_PK, timeout=None)
    print(f"  primary key built in {time.perf_counter() - began:.0f}s", flush=True)
    await conn.execute("VACUUM ANALYZE metrics", timeout=None)


async def read_curve(conn: asyncpg.Connection, run_id: str, name: str) -> tuple[float, int]:
    """Seconds to read one curve, and its number of points."""
    began = time.perf_counter()
    points = await conn.fetch(_CURVE, run_id, name)
    return time.perf_counter() - began, len(points)


async def measure(conn: asyncpg.Connection, rows: int) -> None:
    """Print sizes, the plan and curve read latencies."""
    size = await conn.fetchval(
        "SELECT pg_size_pretty(pg_table_size('metrics')) || ' table, ' || "
        "pg_size_pretty(pg_indexes_size('metrics')) || ' index'"
    )
    print(f"metrics: {rows:,} rows, {size}")
    plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + _CURVE, "run-500", "metric_7")
    print("\n".join("  " + r[0] for r in plan))
    first, points = await read_curve(conn, "run-123", "metric_3")
    warm = [(await read_curve(conn, "run-123", "metric_3"))[0] for _ in range(20)]
    others = [(await read_curve(conn, f"run-{n * 37}", f"metric_{n % 20}"))[0] for n in range(20)]
    print(
        f"one curve ({points} points): first read {first * 1000:.1f} ms, warm median "
        f"{statistics.median(warm) * 1000:.1f} ms; 20 other curves, first reads: median "
        f"{statistics.median(others) * 1000:.1f} ms, max {max(others) * 1000:.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    if settings.database_admin_url is None:
        raise SystemExit('no RUNSTREAM_DATABASE_ADMIN_URL: eval "$(runstream stack env --admin)"')
    admin = settings.database_admin_url.get_secret_value()
    name = f"runstream_curve_{uuid.uuid4().hex[:8]}"
    writer = settings.database_url.get_secret_value()
    await create_database(admin, name, owner="runstream_writer")
    url = database_url(writer, name)
    try:
        await upgrade(DatabaseConfig(url))
        conn = await asyncpg.connect(url, command_timeout=None)
        try:
            began = time.perf_counter()
            await load(conn, args.rows)
            print(f"loaded in {time.perf_counter() - began:.0f}s")
            await measure(conn, args.rows)
        finally:
            await conn.close()
    finally:
        if not args.keep:
            await drop_database(admin, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    asyncio.run(main(parser.parse_args()))

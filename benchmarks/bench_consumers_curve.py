"""Reading one run's curve (one metric, every step) from a large store of metric values.

    eval "$(runstream stack env --admin)"
    python benchmarks/bench_consumers_curve.py [--rows 100000000] [--keep]

Builds a fresh, migrated database that holds `--rows` values: 1,000 runs x 20 metrics, as chunks
of 1,000 values (`metric_chunks`, what compaction leaves), written the way live ingestion writes
them (chunk k of every curve before chunk k + 1 of any, so one curve's chunks are spread over the
whole heap), then vacuumed. Prints load time, table and index size, the plan, and the latency of
reading one curve through the `metrics` view (first read and warm median). For reads with the
caches dropped, see bench_storage.py.
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
CHUNK = 1000
_LOAD = f"""
INSERT INTO metric_chunks
SELECT 'run-' || r, 'metric_' || m, 0, $3::uuid, c.times[1], c.steps[1], c.steps[{CHUNK}],
       c.seqs[1], c.seqs[{CHUNK}], {CHUNK}, c.lo[1], c.lo[2], c.hi[1], c.hi[2], c.steps, c.times,
       c.vals, c.seqs, array_fill(0, ARRAY[{CHUNK}])
FROM generate_series(0, $1 - 1) m, generate_series(0, $2 - 1) r,
LATERAL (
    SELECT array_agg(g ORDER BY g) AS steps, array_agg(t ORDER BY g) AS times,
           array_agg(v ORDER BY g) AS vals, array_agg(s ORDER BY g) AS seqs,
           min(ARRAY[v, g::float8]) AS lo, max(ARRAY[v, g::float8]) AS hi
    FROM (SELECT g, timestamptz '2026-01-01' + s * interval '1 millisecond' AS t,
                 random() AS v, s
          FROM generate_series($4::bigint * {CHUNK}, ($4::bigint + 1) * {CHUNK} - 1) g,
               LATERAL (SELECT (g * $1 + m) * $2 + r AS s) seq) points
) c
"""
_PARTITIONS = """
SELECT metric_chunks_partition(m)
FROM generate_series(timestamptz '2026-01-01', timestamptz '2026-01-01' + $1 * interval '1 ms',
                     interval '1 month') m
"""
_CURVE = "SELECT step, value FROM metrics WHERE run_id = $1 AND name = $2 ORDER BY step"


async def load(conn: asyncpg.Connection, rows: int) -> None:
    """Fill `metric_chunks` with `rows` generated values (whole chunks), chunk k of every curve at
    a time.
    """
    producer = str(uuid.uuid4())
    chunks = rows // (RUNS * METRICS * CHUNK)
    await conn.execute(_PARTITIONS, rows)
    for part in range(chunks):
        began = time.perf_counter()
        await conn.execute(_LOAD, METRICS, RUNS, producer, part, timeout=None)
        print(f"  chunk {part + 1}/{chunks} of every curve in {time.perf_counter() - began:.0f}s")
    await conn.execute("VACUUM ANALYZE metric_chunks", timeout=None)


async def read_curve(conn: asyncpg.Connection, run_id: str, name: str) -> tuple[float, int]:
    """Seconds to read one curve, and its number of points."""
    began = time.perf_counter()
    points = await conn.fetch(_CURVE, run_id, name)
    return time.perf_counter() - began, len(points)


async def measure(conn: asyncpg.Connection, rows: int) -> None:
    """Print sizes, the plan and curve read latencies."""
    size = await conn.fetchval(
        "SELECT pg_size_pretty(sum(pg_table_size(inhrelid))) || ' table, ' || "
        "pg_size_pretty(sum(pg_indexes_size(inhrelid))) || ' index' FROM pg_inherits "
        "WHERE inhparent = 'metric_chunks'::regclass"
    )
    print(f"metric_chunks: {rows:,} values, {size}")
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

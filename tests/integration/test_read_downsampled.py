"""Downsampled curve reads keep each step bucket's min and max exactly (real PostgreSQL).

Random curves (uneven step gaps, repeated steps, spikes, NaN, two ranks) are written straight into
a database of the test's own, as chunks of random sizes (1 to 400 values: some lie inside one step
bucket and are read by their stored extremes, others straddle buckets and are opened);
`Client.metrics(points=…)` and `curve_points` (what `plot` reads) must return, per (run, metric,
rank) curve, exactly SQL's min and max of every step bucket, as points that were stored, and no
more than the budget.
"""

from __future__ import annotations

import math
import random
import struct
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from runstream._config import DatabaseConfig
from runstream.consumers._chunks import CHUNK_COLUMNS, Series, chunk_row
from runstream.consumers.read import AsyncClient
from runstream.consumers.read.queries import curve_points
from tests.harness import Harness

POINTS = 200
CURVES = {"loss": 20_001, "grad_norm": 5_000, "lr": 150}  # values per rank
_BUCKETS_SQL = """
WITH span AS MATERIALIZED (
    SELECT min(step) AS lo, max(step) AS hi FROM metrics WHERE run_id = $1 AND name = $2
)
SELECT rank, (step - lo) * $3 / (hi - lo + 1) AS bucket, min(value), max(value)
FROM metrics, span WHERE run_id = $1 AND name = $2 GROUP BY rank, bucket
"""


def bits(number: float) -> bytes:
    return b"nan" if math.isnan(number) else struct.pack("<d", number)


def curve(rng: random.Random, count: int) -> list[tuple[int, float]]:
    """`count` (step, value) points: steps rising by 0-3 (0: a repeated step), rare spikes."""
    step, points = rng.randrange(0, 1000), []
    for _ in range(count):
        step += rng.choice((0, 1, 1, 1, 2, 3))
        value = rng.gauss(0, 1) + (rng.choice((-1e6, 1e6)) if rng.random() < 0.001 else 0)
        points.append((step, math.nan if rng.random() < 0.0002 else value))
    return points


async def store(conn: asyncpg.Connection, run_id: str, rng: random.Random) -> None:
    producer, t0 = uuid.uuid4(), datetime(2026, 1, 1, tzinfo=UTC)
    chunks, latest = [], []
    for name, count in CURVES.items():
        for rank in (0, 1):
            points, rows = curve(rng, count), []
            for seq, (step, value) in enumerate(points):
                at = t0 + timedelta(milliseconds=seq)
                rows.append((run_id, name, step, rank, at, value, producer, seq + rank * 10**6, 0))
            while rows:
                size = rng.randint(1, 400)
                part = Series()
                for row in rows[:size]:
                    part.append(row[2], row[4], row[5], row[7], row[8])
                chunks.append(chunk_row((run_id, name, rank, str(producer)), part))
                rows = rows[size:]
            latest.append((run_id, name, rank, points[-1][0], t0, points[-1][1]))
    await conn.execute("INSERT INTO experiments (name) VALUES ('long')")
    await conn.execute("INSERT INTO runs (run_id, experiment) VALUES ($1, 'long')", run_id)
    await conn.execute("SELECT metric_chunks_partition($1)", t0)
    await conn.copy_records_to_table("metric_chunks", records=chunks, columns=CHUNK_COLUMNS)
    columns = ["run_id", "name", "rank", "step", "time", "value"]
    await conn.copy_records_to_table("metric_latest", records=latest, columns=columns)


Buckets = dict[tuple[int, int], set[bytes]]
Point = tuple[int, int, bytes]


async def expected(conn: asyncpg.Connection, run_id: str, name: str) -> Buckets:
    """SQL's (rank, bucket) -> {min, max} of one metric."""
    rows = await conn.fetch(_BUCKETS_SQL, run_id, name, POINTS // 2)
    return {(r["rank"], r["bucket"]): {bits(r["min"]), bits(r["max"])} for r in rows}


async def test_downsampled_reads_keep_every_buckets_min_and_max(harness: Harness) -> None:
    run_id = f"long-{harness.suffix}"
    conn = await asyncpg.connect(harness.database_url)
    try:
        await store(conn, run_id, random.Random(2000))
        async with AsyncClient(DatabaseConfig(url=harness.read_url)) as client:
            frame = await client.metrics(run_id, points=POINTS, frame="polars")
        for name in CURVES:
            want = await expected(conn, run_id, name)
            stored = await _stored(conn, run_id, name)
            got = frame.filter(frame["name"] == name).rows(named=True)
            assert _by_bucket(got, await _span(conn, run_id, name)) == want
            assert {(p["rank"], p["step"], bits(p["value"])) for p in got} <= stored
            for rank in (0, 1):
                assert len([p for p in got if p["rank"] == rank]) <= POINTS
            plotted = await curve_points(conn, run_id, name, None, POINTS)
            assert {(p["rank"], p["step"], bits(p["value"])) for p in plotted} <= stored
    finally:
        await conn.close()


async def _span(conn: asyncpg.Connection, run_id: str, name: str) -> tuple[int, int]:
    query = "SELECT min(step), max(step) FROM metrics WHERE run_id = $1 AND name = $2"
    span = await conn.fetchrow(query, run_id, name)
    assert span is not None
    return span[0], span[1]


async def _stored(conn: asyncpg.Connection, run_id: str, name: str) -> set[Point]:
    query = "SELECT rank, step, value FROM metrics WHERE run_id = $1 AND name = $2"
    return {(r["rank"], r["step"], bits(r["value"])) for r in await conn.fetch(query, run_id, name)}


def _by_bucket(points: list[dict[str, Any]], span: tuple[int, int]) -> Buckets:
    low, high = span
    found: Buckets = defaultdict(set)
    for p in points:
        found[p["rank"], (p["step"] - low) * (POINTS // 2) // (high - low + 1)].add(
            bits(p["value"])
        )
    return dict(found)

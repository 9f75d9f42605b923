"""Downsampled curve reads keep each step bucket's min and max exactly (real PostgreSQL).

Random curves (uneven step gaps, repeated steps, spikes, NaN, two ranks) are written straight into
a database of the test's own, as chunks of random sizes (1 to 400 values: those no wider than a
bucket are read by their stored extremes, wider ones are opened); `Client.metrics(points=…)` must
return, per (run, metric, rank) curve, exactly each bucket's lowest and highest point as computed
here from every stored value one by one, and no more than the budget; `curve_points` (what `plot`
reads) only stored points.
"""

from __future__ import annotations

import math
import random
import struct
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg

from runstream._config import DatabaseConfig
from runstream.consumers._chunks import Series, chunk_row, copy_chunks
from runstream.consumers.read import AsyncClient
from runstream.consumers.read.queries import curve_points
from runstream.schemas import micros
from tests.harness import Harness

POINTS = 200
CURVES = {"loss": 20_001, "grad_norm": 5_000, "lr": 150}  # values per rank
BUCKETS = POINTS // 2
_VALUES_SQL = """
SELECT c.rank, c.step_lo, c.step_hi, v.step, v.value
FROM metric_chunks c, unnest(c.steps, c.vals) AS v(step, value)
WHERE c.run_id = $1 AND c.name = $2
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
                    part.append(row[2], micros(row[4]), row[5], row[7], row[8])
                chunks.append(chunk_row((run_id, name, rank, str(producer)), part))
                rows = rows[size:]
            latest.append((run_id, name, rank, points[-1][0], t0, points[-1][1]))
    await conn.execute("INSERT INTO experiments (name) VALUES ('long')")
    await conn.execute("INSERT INTO runs (run_id, experiment) VALUES ($1, 'long')", run_id)
    await conn.execute("SELECT metric_chunks_partition($1)", t0)
    await copy_chunks(conn, chunks)
    columns = ["run_id", "name", "rank", "step", "time", "value"]
    await conn.copy_records_to_table("metric_latest", records=latest, columns=columns)


Point = tuple[int, int, bytes]


def _order(point: tuple[float, int]) -> tuple[int, float, int]:
    """`ARRAY[value, step]` in PostgreSQL's order: NaN above every number."""
    value, step = point
    return (1, 0.0, step) if math.isnan(value) else (0, value, step)


async def expected(conn: asyncpg.Connection, run_id: str, name: str) -> set[Point]:
    """Every bucket's lowest and highest point, from every stored value one by one: a chunk no
    wider than a bucket is in the bucket of its first step, a wider one's values each in the
    bucket of their own step (buckets: equal step spans over the curve's first to last step)."""
    rows = await conn.fetch(_VALUES_SQL, run_id, name)
    low, high = min(r["step"] for r in rows), max(r["step"] for r in rows)
    span = high - low + 1
    buckets: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
    for rank, first, last, step, value in rows:
        narrow = (last - first + 1) * BUCKETS <= span
        bucket = ((first if narrow else step) - low) * BUCKETS // span
        buckets[rank, bucket].append((value, step))
    points = set()
    for (rank, _), members in buckets.items():
        for value, step in (min(members, key=_order), max(members, key=_order)):
            points.add((rank, step, bits(value)))
    return points


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
            assert {(p["rank"], p["step"], bits(p["value"])) for p in got} == want
            assert want <= stored
            for rank in (0, 1):
                assert len([p for p in got if p["rank"] == rank]) <= POINTS
            plotted = await curve_points(conn, run_id, name, None, POINTS)
            assert {(p["rank"], p["step"], bits(p["value"])) for p in plotted} <= stored
    finally:
        await conn.close()


async def _stored(conn: asyncpg.Connection, run_id: str, name: str) -> set[Point]:
    query = "SELECT rank, step, value FROM metrics WHERE run_id = $1 AND name = $2"
    return {(r["rank"], r["step"], bits(r["value"])) for r in await conn.fetch(query, run_id, name)}

"""Chunk rows written by our own binary COPY (`_pgcopy`) read back from real PostgreSQL exactly as
given: every column, edge numbers (NaN, infinities, -0.0, the smallest subnormal, the int64
limits), names outside ASCII, times before 2000 and far ahead, chunks of one value and of
`CHUNK_VALUES`.
"""

from __future__ import annotations

import math
import random
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from runstream.consumers._chunks import (
    CHUNK_COLUMNS,
    CHUNK_VALUES,
    Series,
    chunk_row,
    copy_chunks,
    month,
)
from runstream.schemas import micros, moment
from tests.harness import Harness

EDGES = [
    math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -1.7976931348623157e308, 1 / 3,
]  # fmt: skip
INT8_MIN, INT8_MAX = -(2**63), 2**63 - 1


def exact(value: Any) -> Any:
    """`value` comparable bit for bit (a float by its bytes, so NaN equals NaN and -0.0 ≠ 0.0)."""
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, list):
        return [exact(v) for v in value]
    return value


def series(rng: random.Random, size: int, t0: int) -> Series:
    values = Series()
    for i in range(size):
        value = EDGES[i] if i < len(EDGES) else rng.uniform(-1e9, 1e9)
        step = [INT8_MIN, INT8_MAX, -5][i] if i < 3 else rng.randrange(-(10**12), 10**12)
        values.append(step, t0 + rng.randrange(0, 10**9), value, rng.randrange(0, 2**62), i)
    return values


async def test_chunks_copied_in_binary_read_back_exactly(harness: Harness) -> None:
    rng = random.Random(5)
    producer = str(uuid.uuid4())
    run_id = f"copy-{harness.suffix}"
    starts = {
        "loss": micros(datetime(2026, 3, 1, tzinfo=UTC)),
        "naïve/λ 测试": micros(datetime(1999, 12, 31, 23, 59, tzinfo=UTC)),
        "x" * 300: micros(datetime(2200, 1, 1, tzinfo=UTC)),
    }
    rows = [
        chunk_row((run_id, name, rank, producer), series(rng, size, t0))
        for rank, (name, t0) in enumerate(starts.items())
        for size in (1, len(EDGES), CHUNK_VALUES)
    ]
    conn = await asyncpg.connect(harness.database_url)
    try:
        for chunk in rows:
            await conn.execute("SELECT metric_chunks_partition($1)", month(chunk[4]))
        await copy_chunks(conn, rows)
        stored = await conn.fetch(
            f"SELECT {', '.join(CHUNK_COLUMNS)} FROM metric_chunks WHERE run_id = $1 "
            "ORDER BY rank, n",
            run_id,
        )
    finally:
        await conn.close()
    assert len(stored) == len(rows)
    for want, got in zip(sorted(rows, key=lambda r: (r[2], r[9])), stored, strict=True):
        given = dict(zip(CHUNK_COLUMNS, want, strict=True))
        given["time_lo"] = moment(given["time_lo"])
        given["times"] = [moment(t) for t in given["times"]]
        read = dict(got)
        read["producer_id"] = str(read["producer_id"])
        assert {k: exact(v) for k, v in read.items()} == {k: exact(v) for k, v in given.items()}

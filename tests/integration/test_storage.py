"""Metric storage upkeep against real PostgreSQL: compaction, retention, and exactly-once across
both (issue 16).

Events are written by persist's own `EventStore` (as the service does, without Kafka) into a
database of the test's own: many small batches leave many small chunks. Compaction must merge them
without changing one stored value, and a replay of every event afterwards must store nothing
twice. Retention must drop whole monthly partitions — counted before they go — and nothing of the
months it keeps; `runstream db retention` does the same from the command line.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from runstream._config import DatabaseConfig, StorageConfig
from runstream._local import WRITER_ROLE
from runstream.consumers import _maintenance, upgrade
from runstream.consumers._chunks import CHUNK_VALUES
from runstream.consumers._database import Database
from runstream.consumers._deletion import delete, plan_run_deletion
from runstream.consumers._maintenance import (
    _COMPACT,
    _COMPACTION_LOCKS,
    _LOCK_RUN,
    MERGED_SPAN,
    SERIES_PER_STEP,
    SMALL_CHUNK,
    Compacted,
    Maintenance,
    compact_run,
    expired_months,
)
from runstream.consumers._store import EventStore, create_staging_tables
from runstream.consumers.read.queries import recent_values
from runstream.deploy.local import StackEndpoints
from runstream.schemas import EventRecord, Metrics, default_codec, kinds
from tests.harness import EventFactory, create_database, database_url, drop_database

VALUES = "SELECT run_id, name, step, rank, time, value, producer_id, seq, idx FROM metrics"
LATEST = (
    "SELECT run_id, name, rank, step, value, count, min, max FROM metric_latest ORDER BY 1, 2, 3"
)


@pytest.fixture
async def database(stack: StackEndpoints) -> AsyncIterator[str]:
    """A database of this test's own at the current schema, owned by the writer role."""
    name = f"storage_{uuid.uuid4().hex[:10]}"
    await create_database(stack.admin_url, name, owner=WRITER_ROLE)
    url = database_url(stack.writer_url, name)
    await upgrade(DatabaseConfig(url))
    try:
        yield url
    finally:
        await drop_database(stack.admin_url, name)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    await create_staging_tables(connection)
    try:
        yield connection
    finally:
        await connection.close()


def small_batches(run_id: str, rng: random.Random, at: datetime) -> list[list[EventRecord]]:
    """Two ranks logging three metrics (some NaN) a few events at a time: 80 batches."""
    codec = default_codec()
    sessions = [EventFactory(run_id, "storage", rank=rank, world_size=2) for rank in (0, 1)]
    batches, step = [], 0
    for _ in range(80):
        batch = []
        for _ in range(rng.randint(1, 4)):
            step += rng.choice((0, 1, 1, 2))
            for session in sessions:
                values = {"loss": rng.gauss(1, 0.5), "acc": rng.random()}
                if rng.random() < 0.5:
                    values["lr"] = math.nan if rng.random() < 0.1 else 0.1
                time_us = int((at + timedelta(milliseconds=step)).timestamp() * 1e6)
                data = session.event(kinds.METRICS, _body(step, values), time_us=time_us)
                batch.append(codec.decode(data))
        batches.append(batch)
    return batches


def _body(step: int, values: dict[str, float]) -> dict[str, Any]:
    return {"step": step, "values": [{"name": n, "value": v} for n, v in values.items()]}


async def write(conn: asyncpg.Connection, batches: Sequence[Sequence[EventRecord]]) -> None:
    store = EventStore()
    for batch in batches:
        await store.write(conn, batch)


def spelled(row: Iterable[Any]) -> tuple[Any, ...]:
    """`row` with NaN spelled out, so equal rows compare equal."""
    return tuple("NaN" if v != v else v for v in row)  # noqa: PLR0124


async def stored(conn: asyncpg.Connection) -> Counter[tuple[Any, ...]]:
    """Every stored value."""
    return Counter(spelled(row) for row in await conn.fetch(VALUES))


async def latest_rows(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    return [spelled(row) for row in await conn.fetch(LATEST)]


async def chunk_sizes(conn: asyncpg.Connection, run_id: str) -> dict[tuple[str, int], list[int]]:
    query = "SELECT name, rank, n FROM metric_chunks WHERE run_id = $1 ORDER BY seq_lo"
    sizes: dict[tuple[str, int], list[int]] = {}
    for row in await conn.fetch(query, run_id):
        sizes.setdefault((row["name"], row["rank"]), []).append(row["n"])
    return sizes


async def test_compaction_merges_small_chunks_and_changes_no_value(
    conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_maintenance, "SERIES_PER_STEP", 2)  # six series: four steps
    run_id = f"compact-{uuid.uuid4().hex[:8]}"
    batches = small_batches(run_id, random.Random(16), datetime.now(UTC))
    await write(conn, batches)
    before, latest = await stored(conn), await latest_rows(conn)
    small = await chunk_sizes(conn, run_id)
    assert all(len(sizes) > 10 for sizes in small.values()), small

    done = await compact_run(conn, run_id)

    merged = await chunk_sizes(conn, run_id)
    assert done.merged == sum(len(sizes) for sizes in small.values())
    assert merged == {series: [sum(sizes)] for series, sizes in small.items()}
    assert done.values == sum(map(sum, small.values()))
    assert await stored(conn) == before
    extremes = """
        SELECT bool_and(lo IS NOT DISTINCT FROM (SELECT min(ARRAY[v, s::float8])
                                                 FROM unnest(vals, steps) AS u(v, s))[1]
                    AND hi IS NOT DISTINCT FROM (SELECT max(ARRAY[v, s::float8])
                                                 FROM unnest(vals, steps) AS u(v, s))[1])
        FROM metric_chunks WHERE run_id = $1
    """
    assert await conn.fetchval(extremes, run_id)

    await write(conn, batches)  # every event again: all at or below their marks
    assert await stored(conn) == before
    assert await latest_rows(conn) == latest
    assert await compact_run(conn, run_id) == type(done)(run_id, 0, 0, 0)


async def test_compaction_of_a_long_series_makes_full_chunks_in_log_order(
    conn: asyncpg.Connection,
) -> None:
    """3,000 values of one series in 300 small chunks, with many equal values (extremes' steps
    break ties): merged chunks hold at most `CHUNK_VALUES`, keep every value, log order and each
    chunk's extremes as PostgreSQL orders them."""
    run_id = f"compact-{uuid.uuid4().hex[:8]}"
    rng, codec = random.Random(21), default_codec()
    session = EventFactory(run_id, "storage")
    at, batches, step = datetime.now(UTC), [], 0
    while step < 3000:
        batch = []
        for _ in range(rng.randint(1, 19)):
            value = rng.choice((0.0, 1.0, 2.0, -1.0, math.nan, math.inf))
            time_us = int((at + timedelta(milliseconds=step)).timestamp() * 1e6)
            data = session.event(kinds.METRICS, _body(step, {"loss": value}), time_us=time_us)
            batch.append(codec.decode(data))
            step += 1
        batches.append(batch)
    await write(conn, batches)
    before = await stored(conn)

    done = await compact_run(conn, run_id)

    sizes = (await chunk_sizes(conn, run_id))[("loss", 0)]
    assert done.merged == len(batches)
    assert done.values == step
    assert max(sizes) <= CHUNK_VALUES
    assert sum(sizes) == step
    assert len(sizes) <= step // MERGED_SPAN + 1, sizes
    assert await stored(conn) == before
    checks = """
        SELECT bool_and(seqs = ARRAY(SELECT unnest(seqs) ORDER BY 1))
           AND bool_and(ARRAY[lo, lo_step::float8] = (SELECT min(ARRAY[v, s::float8])
                                                      FROM unnest(vals, steps) AS u(v, s)))
           AND bool_and(ARRAY[hi, hi_step::float8] = (SELECT max(ARRAY[v, s::float8])
                                                      FROM unnest(vals, steps) AS u(v, s)))
        FROM metric_chunks WHERE run_id = $1
    """
    assert await conn.fetchval(checks, run_id)


STATISTICS = r"""
SELECT c.relname, a.attname, a.attstattarget FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid
WHERE (c.relname = 'metric_chunks' OR c.relname LIKE 'metric\_chunks\_2%')
  AND a.attname IN ('steps', 'times', 'vals', 'seqs', 'idxs')
"""


async def test_value_arrays_carry_no_statistics(conn: asyncpg.Connection) -> None:
    """ANALYZE must not open the value arrays (migration 0006), of the parent or of a partition
    made since (`test_migration_chunks` checks those made before)."""
    await conn.execute("SELECT metric_chunks_partition($1)", datetime(2031, 5, 2, tzinfo=UTC))
    targets = await conn.fetch(STATISTICS)
    assert {row["relname"] for row in targets} == {"metric_chunks", "metric_chunks_203105"}
    assert [row["attstattarget"] for row in targets] == [0] * 10


async def test_persist_writes_after_compaction_land_once(conn: asyncpg.Connection) -> None:
    """A batch that is half replay (already compacted) and half new, its new half delivered
    twice in it, stores only the new half, once."""
    run_id = f"compact-{uuid.uuid4().hex[:8]}"
    batches = small_batches(run_id, random.Random(17), datetime.now(UTC))
    await write(conn, batches[:60])
    await compact_run(conn, run_id)
    await write(conn, [[*batches[50], *batches[60], *batches[60]], *batches[61:]])
    expected = await _reference(batches)
    assert await stored(conn) == expected


@pytest.fixture
async def merging(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A second connection, to hold a compaction open."""
    connection = await asyncpg.connect(database)
    try:
        yield connection
    finally:
        await connection.close()


async def open_compaction(conn: asyncpg.Connection, run_id: str) -> Any:
    """Compact `run_id` on `conn` up to, not including, the commit; the open transaction."""
    held = conn.transaction()
    await held.start()
    assert await conn.fetchval(_LOCK_RUN, run_id, _COMPACTION_LOCKS)
    row = await conn.fetchrow(_COMPACT, run_id, SMALL_CHUNK, MERGED_SPAN, SERIES_PER_STEP)
    assert row is not None
    assert row["merged"] > 0
    return held


async def test_persist_does_not_wait_for_a_compaction_of_its_run(
    conn: asyncpg.Connection, merging: asyncpg.Connection, database: str
) -> None:
    """While a compaction of the run is merged but not committed, persist writes the run (a batch
    half replay of merged values, half new) without waiting, a second compaction of the run skips
    it, and once the merge commits every value is stored once."""
    run_id = f"compact-{uuid.uuid4().hex[:8]}"
    batches = small_batches(run_id, random.Random(19), datetime.now(UTC))
    await write(conn, batches[:60])
    held = await open_compaction(merging, run_id)
    try:
        rest = [[*batches[50], *batches[60]], *batches[61:]]
        await asyncio.wait_for(write(conn, rest), 20)
        second = await asyncpg.connect(database)
        try:
            skipped = await asyncio.wait_for(compact_run(second, run_id), 20)
            assert skipped == Compacted(run_id, 0, 0, 0)
        finally:
            await second.close()
    finally:
        await held.commit()
    assert await stored(conn) == await _reference(batches)


async def test_deleting_a_run_waits_for_its_compaction_and_leaves_no_chunk(
    conn: asyncpg.Connection, merging: asyncpg.Connection
) -> None:
    run_id = f"compact-{uuid.uuid4().hex[:8]}"
    await write(conn, small_batches(run_id, random.Random(20), datetime.now(UTC)))
    plan = await plan_run_deletion(conn, [run_id], force=True)
    held = await open_compaction(merging, run_id)
    deleting = asyncio.create_task(delete(conn, plan))
    try:
        await asyncio.sleep(1)
        assert not deleting.done()
    finally:
        await held.commit()
    removed = await asyncio.wait_for(deleting, 20)
    assert removed.rows["runs"] == 1
    left = "SELECT count(*) FROM metric_chunks WHERE run_id = $1"
    assert await conn.fetchval(left, run_id) == 0


async def _reference(batches: Sequence[Sequence[EventRecord]]) -> Counter[tuple[Any, ...]]:
    """The values of `batches`, each once, as the `metrics` view spells them."""
    found: Counter[tuple[Any, ...]] = Counter()
    for event in {(e.producer_id, e.seq): e for batch in batches for e in batch}.values():
        body = event.body
        assert isinstance(body, Metrics)
        for idx, (name, logged) in enumerate(body.values):
            value = "NaN" if logged != logged else logged  # noqa: PLR0124
            key = (event.run_id, name, body.step, event.rank, event.time, value)
            found[(*key, uuid.UUID(event.producer_id), event.seq, idx)] += 1
    return found


async def retention_cli(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`runstream db retention ARGS` on `database`, off a terminal."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "runstream.cli", "db", "retention", *args],
        env={"RUNSTREAM_DATABASE_URL": database, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def test_retention_drops_whole_months_counted_and_keeps_the_rest(
    conn: asyncpg.Connection, database: str
) -> None:
    run_id = f"retain-{uuid.uuid4().hex[:8]}"
    rng = random.Random(18)
    january, february, april = (datetime(2026, m, 10, tzinfo=UTC) for m in (1, 2, 4))
    old = small_batches(run_id, rng, january)[:20] + small_batches(run_id, rng, february)[:20]
    await write(conn, old)
    kept = small_batches(run_id, rng, april)[:20]
    await write(conn, kept)
    counts = """
        SELECT date_trunc('month', time_lo, 'UTC') AS month, count(*) AS chunks,
               sum(n)::bigint AS values
        FROM metric_chunks GROUP BY 1 ORDER BY 1
    """
    before = [tuple(r) for r in await conn.fetch(counts)]
    assert [r[0].month for r in before] == [1, 2, 4]
    april_values = Counter(v for v in (await stored(conn)).elements() if v[4].month == 4)

    # On 2026-04-20 with 60 days kept, everything before 2026-02-19 goes: January only, since
    # February's partition still holds values inside the retention.
    expired = await expired_months(conn, timedelta(days=60), datetime(2026, 4, 20, tzinfo=UTC))
    assert [(m.partition, m.chunks, m.values) for m in expired] == [
        ("metric_chunks_202601", before[0][1], before[0][2])
    ]
    # Ten days later February has ended more than 60 days ago too: drop through the CLI.
    now = datetime.now(UTC)
    keep_days = (now - datetime(2026, 3, 2, tzinfo=UTC)).days
    done = await retention_cli(database, "--keep-days", str(keep_days))
    assert done.returncode != 0, "dropped without confirmation off a terminal"
    assert await conn.fetchval("SELECT to_regclass('metric_chunks_202601')") is not None
    done = await retention_cli(database, "--keep-days", str(keep_days), "--yes")
    assert done.returncode == 0, done.stderr
    gone = before[0][2] + before[1][2]
    assert f"dropped 2 months, {gone:,} metric values" in done.stdout
    assert "metric_chunks_202601" in done.stderr
    assert "metric_chunks_202602" in done.stderr
    for partition in ("metric_chunks_202601", "metric_chunks_202602"):
        assert await conn.fetchval("SELECT to_regclass($1)", partition) is None
    assert [tuple(r) for r in await conn.fetch(counts)] == before[2:]
    assert await stored(conn) == april_values


async def test_persist_upkeep_compacts_what_it_wrote_and_applies_retention(
    conn: asyncpg.Connection, database: str
) -> None:
    run_id = f"upkeep-{uuid.uuid4().hex[:8]}"
    rng = random.Random(19)
    await write(conn, small_batches(run_id, rng, datetime(2026, 1, 5, tzinfo=UTC))[:10])
    recent = small_batches(run_id, rng, datetime.now(UTC))[:30]
    await write(conn, recent)
    january = await conn.fetchval("SELECT sum(n) FROM metric_chunks WHERE time_lo < '2026-02-01'")
    registry = CollectorRegistry()
    pool = Database(DatabaseConfig(database))
    config = StorageConfig(compact_interval=1.0, retention=timedelta(days=30))
    upkeep = Maintenance(pool, config, registry)
    upkeep.written([run_id])
    try:
        await upkeep.round(datetime.now(UTC))
    finally:
        await pool.close()
    assert await conn.fetchval("SELECT to_regclass('metric_chunks_202601')") is None
    assert registry.get_sample_value("runstream_persist_expired_values_total") == january
    sizes = await chunk_sizes(conn, run_id)
    assert all(len(n) == 1 or min(n[:-1]) >= SMALL_CHUNK for n in sizes.values()), sizes
    merged = registry.get_sample_value("runstream_persist_compacted_chunks_total")
    assert merged is not None
    assert merged > len(sizes)
    assert await stored(conn) == await _reference(recent)


async def test_recent_values_come_from_the_chunks_that_reach_furthest(
    conn: asyncpg.Connection,
) -> None:
    """A sparkline's last values by step, with steps logged out of order over many chunks."""
    run_id = f"recent-{uuid.uuid4().hex[:8]}"
    session, codec = EventFactory(run_id, "storage"), default_codec()
    steps = list(range(300))
    random.Random(20).shuffle(steps)
    events = [
        codec.decode(session.event(kinds.METRICS, _body(step, {"acc": step / 1000})))
        for step in steps
    ]
    await write(conn, [events[n : n + 7] for n in range(0, len(events), 7)])
    assert await conn.fetchval("SELECT count(*) FROM metric_chunks WHERE run_id = $1", run_id) > 40
    assert await recent_values(conn, run_id, "acc", 0, 12) == [s / 1000 for s in range(288, 300)]

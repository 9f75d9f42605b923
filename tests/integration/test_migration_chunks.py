"""Migration 0005 (metric values into chunks) on a database holding data in every table.

A database of the test's own is brought to the previous schema (migrations 0001-0004) and filled
through SQL the way persist filled it then: every table has rows, and `metrics` holds several runs,
metrics, ranks and producer sessions, a series longer than one chunk, NaN and ±inf, and two values
at one step. After `upgrade`, every value reads back the same through `metrics` (now a view over
`metric_chunks`), every other table is unchanged, the marks hold each session's highest seq, and
a replayed event is still recognised as stored.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from runstream._config import DatabaseConfig
from runstream._local import WRITER_ROLE
from runstream.consumers import upgrade
from runstream.consumers._migrate import shipped_migrations
from runstream.consumers._store import EventStore, create_staging_tables
from runstream.deploy.local import StackEndpoints
from runstream.schemas import default_codec, kinds
from tests.harness import EventFactory, create_database, database_url, drop_database
from tests.integration.test_storage import STATISTICS

OTHER_TABLES = (
    "experiments", "runs", "run_ranks", "metric_latest", "text_metrics", "table_rows", "files",
    "log_records", "status_events",
)  # fmt: skip
METRICS = "SELECT run_id, name, step, rank, time, value, producer_id, seq, idx FROM metrics"
T0 = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)  # the values span a month boundary
_OLD_ROWS = """
INSERT INTO experiments (name) VALUES ('mig');
INSERT INTO runs (run_id, experiment, name, status, params, tags, world_size)
VALUES ('mig-a', 'mig', 'first', 'completed', '{"lr": "0.1"}', '{"team": "x"}', 2),
       ('mig-b', 'mig', 'second', 'running', '{}', '{}', 1);
INSERT INTO run_ranks (run_id, rank, last_step) VALUES ('mig-a', 0, 1499), ('mig-a', 1, 1499),
       ('mig-b', 0, 9);
INSERT INTO metric_latest (run_id, name, rank, step, time, value, count, min, max)
VALUES ('mig-a', 'loss', 0, 1499, now(), 0.5, 1500, 0.1, 2.0);
INSERT INTO text_metrics VALUES ('mig-a', 'phase', 3, 0, now(), 'warm-up', $1, 9000001);
INSERT INTO table_rows VALUES ('mig-a', 'fits', 0, now(), '{"alpha": 0.5}', $1, 9000002);
INSERT INTO files VALUES ('mig-a', 'notes', 0, 1, now(), 'text/plain', 5, 'notes', $1, 9000003);
INSERT INTO log_records VALUES ('mig-a', 0, now(), 'INFO', 'train', 'hello', $1, 9000004);
INSERT INTO status_events (run_id, rank, time, state, source, producer_id, seq)
VALUES ('mig-a', 0, now(), 'completed', 'rank', $1, 9000005);
"""


@pytest.fixture
async def old_database(stack: StackEndpoints) -> AsyncIterator[str]:
    """A database of this test's own at schema 0004."""
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    await create_database(stack.admin_url, name, owner=WRITER_ROLE)
    url = database_url(stack.writer_url, name)
    previous = [m for m in shipped_migrations() if m.version <= 4]
    assert [m.version for m in previous] == [1, 2, 3, 4]
    await upgrade(DatabaseConfig(url), previous)
    try:
        yield url
    finally:
        await drop_database(stack.admin_url, name)


def old_metric_rows(producers: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """Rows of the old `metrics` table: a 1,500-value series, NaN, ±inf, repeated steps."""
    rng, rows = random.Random(5), []
    for seq in range(1500):
        at = T0 + timedelta(milliseconds=seq * 97)
        for idx, (name, rank) in enumerate((("loss", 0), ("loss", 1), ("acc", 0))):
            value = rng.choice((math.nan, math.inf, -math.inf)) if seq % 301 == 7 else rng.random()
            rows.append(("mig-a", name, seq // 2, rank, at, value, producers[rank], seq, idx))
    rows.extend(("mig-b", "loss", s, 0, T0, 1.0 / (s + 1), producers[2], s, 0) for s in range(10))
    return rows


def spelled(rows: Iterable[Iterable[Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple("NaN" if v != v else v for v in row) for row in rows)  # noqa: PLR0124


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    return {
        table: sorted(r[0] for r in await conn.fetch(f"SELECT to_jsonb(t)::text FROM {table} t"))
        for table in OTHER_TABLES
    }


async def test_migration_moves_every_value_into_chunks(old_database: str) -> None:
    producers = [uuid.uuid4() for _ in range(3)]
    conn = await asyncpg.connect(old_database)
    try:
        for statement in _OLD_ROWS.strip().split(";\n"):
            args = [producers[0]] if "$1" in statement else []
            await conn.execute(statement, *args)
        rows = old_metric_rows(producers)
        await conn.copy_records_to_table("metrics", records=rows)
        before = await snapshot(conn)
        assert all(before.values()), before

        assert await upgrade(DatabaseConfig(old_database)) == [
            "0005_metric_chunks",
            "0006_chunk_upkeep",
        ]

        assert spelled(await conn.fetch(METRICS)) == spelled(rows)
        assert await snapshot(conn) == before
        marks = {tuple(r) for r in await conn.fetch("SELECT * FROM metric_marks")}
        assert marks == {("mig-a", producers[0], 1499), ("mig-a", producers[1], 1499)} | {
            ("mig-b", producers[2], 9)
        }
        sizes = await conn.fetch(
            "SELECT name, rank, array_agg(n ORDER BY seq_lo) AS n FROM metric_chunks "
            "WHERE run_id = 'mig-a' GROUP BY 1, 2 ORDER BY 1, 2"
        )
        assert [(r["name"], r["rank"], r["n"]) for r in sizes] == [
            ("acc", 0, [1000, 500]), ("loss", 0, [1000, 500]), ("loss", 1, [1000, 500])
        ]  # fmt: skip
        months = (
            "SELECT relname FROM pg_class WHERE relname ~ '^metric_chunks_[0-9]{6}$' ORDER BY 1"
        )
        assert [r[0] for r in await conn.fetch(months)] == [
            "metric_chunks_202610", "metric_chunks_202611"
        ]  # fmt: skip
        targets = await conn.fetch(STATISTICS)  # made by 0005, given no statistics by 0006
        assert {r["relname"] for r in targets} >= {"metric_chunks_202610", "metric_chunks_202611"}
        assert {r["attstattarget"] for r in targets} == {0}

        await create_staging_tables(conn)
        again = EventFactory("mig-a", "mig", rank=0, world_size=2)
        again.producer_id, again.seq = str(producers[0]), 1499
        codec = default_codec()
        stored_twice = codec.decode(again.event(kinds.METRICS, _body(749, {"loss": 0.0})))
        new = codec.decode(again.event(kinds.METRICS, _body(750, {"loss": 0.25})))
        await EventStore().write(conn, [stored_twice, new])
        after = spelled(await conn.fetch(METRICS))
        assert sum(after.values()) == len(rows) + 1
        assert after - spelled(rows) == Counter(
            {("mig-a", "loss", 750, 0, new.time, 0.25, producers[0], 1500, 0): 1}
        )
    finally:
        await conn.close()


def _body(step: int, values: dict[str, float]) -> dict[str, Any]:
    return {"step": step, "values": [{"name": n, "value": v} for n, v in values.items()]}

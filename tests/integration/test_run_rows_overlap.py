"""Two persist writers folding the same new run at once (consumers overlapping in a rebalance)
cannot undo each other: what each folded is in the `runs` row afterwards.

The overlap is made deterministic with a real lock: a third connection holds `metric_latest`
while both writers run up to their write-back, then lets them go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from runstream.consumers._store import EventStore, create_staging_tables
from runstream.schemas import EventRecord, default_codec
from tests.harness import EventFactory, Harness


@pytest.fixture
async def connections(harness: Harness) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    opened = [await asyncpg.connect(harness.database_url) for _ in range(3)]
    try:
        for conn in opened[:2]:
            await create_staging_tables(conn)
        yield opened
    finally:
        for conn in opened:
            await conn.close()


def decoded(messages: list[bytes]) -> list[EventRecord]:
    codec = default_codec()
    return [codec.decode(message) for message in messages]


async def test_two_writers_of_one_new_run_keep_both_their_fields(
    harness: Harness, connections: list[asyncpg.Connection[Any]]
) -> None:
    first, second, holder = connections
    run = EventFactory(f"overlap-{harness.suffix}")
    started = decoded([run.run_started(name="both", params={"lr": "0.1"})])
    progressed = decoded([run.heartbeat(41, progress=True), run.metrics(42, {"loss": 0.5})])

    async with holder.transaction():
        await holder.execute("LOCK TABLE metric_latest IN ACCESS EXCLUSIVE MODE")
        writes = [
            asyncio.create_task(EventStore().write(first, started)),
            asyncio.create_task(EventStore().write(second, progressed)),
        ]
        await asyncio.sleep(1.0)  # both are now inside their transactions, waiting
        assert not any(write.done() for write in writes)
    await asyncio.wait_for(asyncio.gather(*writes), 30)

    row = await harness.fetch(
        "SELECT name, params, last_step FROM runs WHERE run_id = $1", run.run_id
    )
    assert len(row) == 1
    assert row[0]["name"] == "both"
    assert '"lr"' in row[0]["params"]
    assert row[0]["last_step"] == 42

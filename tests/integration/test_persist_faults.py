"""Persist under faults: repeated SIGKILL, consumers joining and dying, PostgreSQL stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runstream.deploy.local import StackConfig, StackEndpoints
from runstream.deploy.local._config import ADMIN_ROLE
from runstream.deploy.local._postgres import PostgresServer
from tests.harness import (
    EventFactory,
    Harness,
    database_url,
    end_offsets,
    produce,
    scrape,
)
from tests.ports import reserved_ports

pytestmark = pytest.mark.slow


async def stream(
    harness: Harness, runs: list[EventFactory], per_run: int, chunk: int, pause: float
) -> None:
    """Produce `per_run` single-value Metrics events for each run, chunk by chunk, `pause`
    seconds apart (so that faults land while events still flow)."""
    for start in range(0, per_run, chunk):
        steps = range(start, min(start + chunk, per_run))
        messages = [(r.key, r.metrics(s, {"loss": s * 0.5})) for s in steps for r in runs]
        await produce(harness.kafka, messages)
        await asyncio.sleep(pause)


async def assert_exactly_once(harness: Harness, runs: list[EventFactory], per_run: int) -> None:
    total = per_run * len(runs)
    count = await harness.wait_for_rows("SELECT count(*) FROM metrics", total, within=300)
    assert count == total
    distinct = await harness.fetchval("SELECT count(DISTINCT (run_id, step)) FROM metrics")
    assert distinct == total
    latest = await harness.fetch("SELECT step, count FROM metric_latest")
    assert sorted((r["step"], r["count"]) for r in latest) == [(per_run - 1, per_run)] * len(runs)


async def test_persist_killed_five_times_over_200k_events_stores_each_once(
    harness: Harness,
) -> None:
    runs = [EventFactory(f"kill5-{harness.suffix}-{n}") for n in range(8)]
    # A killed member holds its partitions for the group's session timeout (10 s), so five kills
    # take about a minute: the stream lasts longer than that.
    producing = asyncio.create_task(stream(harness, runs, 25_000, chunk=1000, pause=2.6))
    persist = harness.service("persist").start()
    for kill in range(1, 6):
        query = f"SELECT count(*) >= {kill * 30_000} FROM metrics"
        reached = await harness.wait_for_rows(query, True, within=180)
        assert reached, persist.log()[-3000:]
        assert not producing.done(), f"kill {kill} lands while events still flow"
        persist.kill()
        persist = harness.service("persist").start()
    await producing
    await assert_exactly_once(harness, runs, 25_000)


async def test_consumers_added_and_killed_while_events_flow_store_each_once(
    harness: Harness,
) -> None:
    runs = [EventFactory(f"group-{harness.suffix}-{n}") for n in range(8)]
    harness.service("persist").start()
    second = harness.service("persist").start()
    producing = asyncio.create_task(stream(harness, runs, 10_000, chunk=500, pause=0.6))
    assert await harness.wait_for_rows("SELECT count(*) > 15000 FROM metrics", True, within=120)
    assert not producing.done(), "the third consumer joins while events still flow"
    harness.service("persist").start()
    assert await harness.wait_for_rows("SELECT count(*) > 35000 FROM metrics", True, within=120)
    assert not producing.done(), "the second consumer dies while events still flow"
    second.kill()
    await producing
    await assert_exactly_once(harness, runs, 10_000)


def _postmaster_pid(server: PostgresServer) -> int | None:
    pid_file = server.data / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


def _stop(server: PostgresServer) -> None:
    """Fast shutdown by the postmaster's pid; wait until it is gone."""
    pid = _postmaster_pid(server)
    if pid is not None:
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while _postmaster_pid(server) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def private_postgres(stack: StackEndpoints) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (initdb, real postmaster), so it can be stopped."""
    home = Path(tempfile.mkdtemp(prefix="runstream-pg-"))
    home.chmod(0o755)
    with reserved_ports(1) as [port]:
        yield from _postgres_on(home, port)


def _postgres_on(home: Path, port: int) -> Iterator[PostgresServer]:
    server = PostgresServer(StackConfig(state_dir=home, postgres_port=port))
    server.prepare()
    asyncio.run(server.wait_ready(server.launch()))
    asyncio.run(server.configure())
    try:
        yield server
    finally:
        _stop(server)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
async def outage_harness(
    stack: StackEndpoints, unique_topic: str, tmp_path: Path, private_postgres: PostgresServer
) -> AsyncIterator[Harness]:
    config = private_postgres.config
    async with Harness.create(
        stack.bootstrap_servers,
        database_url(config.database_url(ADMIN_ROLE), "postgres"),
        tmp_path,
        topic=unique_topic,
        writer_url=config.database_url(),
    ) as created:
        yield created


async def test_postgres_stopped_for_20s_loses_and_dead_letters_nothing(
    outage_harness: Harness, private_postgres: PostgresServer
) -> None:
    harness = outage_harness
    runs = [EventFactory(f"outage-{harness.suffix}-{n}") for n in range(4)]
    persist = harness.service("persist").start()
    producing = asyncio.create_task(stream(harness, runs, 10_000, chunk=250, pause=0.2))
    assert await harness.wait_for_rows("SELECT count(*) > 5000 FROM metrics", True, within=120)

    assert not producing.done(), "PostgreSQL stops while events still flow"
    await asyncio.to_thread(_stop, private_postgres)
    await asyncio.sleep(20)
    page = await asyncio.to_thread(scrape, persist.metrics_url())
    await asyncio.to_thread(private_postgres.launch)

    await producing
    await assert_exactly_once(harness, runs, 10_000)
    assert page["runstream_consumer_paused"] == [({}, 1.0)]
    assert page["runstream_consumer_database_errors_total"][0][1] > 0
    dead_letters = await end_offsets(harness.kafka, harness.kafka.dlq_topic)
    assert dead_letters == {0: 0}, "the dead-letter topic never received a record"

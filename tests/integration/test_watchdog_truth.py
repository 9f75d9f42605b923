"""The watchdog judges what runs say, never what a lagging pipeline shows (real Kafka, PostgreSQL).

Persist killed, the broker stopped, a watchdog clock far ahead: no verdict for healthy runs.
A rank that dies before its first event, and a rank at 40 % of the others' rate: detected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from runstream.consumers import LoopOptions, RunWatchdog, WatchPolicy, run_until_stopped
from runstream.deploy.local import StackEndpoints
from runstream.deploy.local._kafka import KafkaBroker
from runstream.schemas import kinds
from tests.harness import (
    EventFactory,
    Harness,
    ServiceProcess,
    produce,
    scrape,
    wait_until,
)
from tests.integration.private import start_broker, stop_broker

STALL_AFTER, LOST_AFTER, TICK = 4.0, 5.0, 0.5
SLACK = 6.0  # one tick, persist's batch, on a busy 2-core machine
VERDICTS = "SELECT count(*) FROM status_events WHERE run_id = $1 AND state IN ('lost', 'stalled')"

_TRAINING = """
import sys, time
from runstream.producer import start_run

run = start_run(experiment="truth", run_id=sys.argv[1])
until = time.monotonic() + float(sys.argv[2])
step = 0
while time.monotonic() < until:
    run.log("loss", 1.0 / (step + 1), step=step)
    step += 1
    time.sleep(0.1)
run.complete(120)
"""

_RANK = """
import sys, time
from runstream.producer import start_run

run = start_run(experiment="truth", run_id=sys.argv[1])
if sys.argv[2] == "hang":
    time.sleep(3600)
for step in range(5):
    run.log("loss", 1.0, step=step)
run.complete(60)
"""


def watchdog(
    harness: Harness, lost_after: float = LOST_AFTER, stall_after: float = STALL_AFTER, **extra: str
) -> ServiceProcess:
    """A fast watchdog process of this harness (started)."""
    return harness.service(
        "watchdog",
        RUNSTREAM_STALL_AFTER=str(stall_after),
        RUNSTREAM_LOST_AFTER=str(lost_after),
        RUNSTREAM_WATCHDOG_INTERVAL=str(TICK),
        **extra,
    ).start()


async def training(harness: Harness, run_id: str, seconds: float) -> asyncio.subprocess.Process:
    """A real training process logging every 100 ms for `seconds`, then completing."""
    env = {**os.environ, **harness.env(RUNSTREAM_HEARTBEAT_INTERVAL="0.5")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRAINING, run_id, str(seconds), env=env
    )


async def status_within(harness: Harness, run_id: str, status: str, within: float) -> float:
    """Seconds until `runs.status` of `run_id` is `status` (fails after `within`)."""
    started = time.monotonic()
    query = f"SELECT status FROM runs WHERE run_id = '{run_id}'"
    found = await harness.wait_for_rows(query, status, within=within)
    assert found == status, f"{run_id} is {found}, expected {status}"
    return time.monotonic() - started


@contextlib.asynccontextmanager
async def reaped(proc: asyncio.subprocess.Process) -> AsyncIterator[asyncio.subprocess.Process]:
    """Kill (by pid) and reap `proc` on the way out if it still runs."""
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.slow
async def test_persist_killed_for_90s_makes_no_verdict_and_the_run_completes(
    harness: Harness,
) -> None:
    persist = harness.service("persist").start()
    watchdog(harness)
    run_id = f"persist-down-{harness.suffix}"
    async with reaped(await training(harness, run_id, 100)) as trainer:
        await status_within(harness, run_id, "running", within=60)
        persist.kill()
        await asyncio.sleep(90)
        harness.service("persist").start()
        assert await asyncio.wait_for(trainer.wait(), 120) == 0
    await status_within(harness, run_id, "completed", within=60)
    assert await harness.fetchval(VERDICTS, run_id) == 0


@pytest.mark.slow
async def test_the_broker_stopped_for_30s_makes_no_run_verdict_and_blinds_the_watchdog(
    stack: StackEndpoints, private_kafka: KafkaBroker, tmp_path: Path
) -> None:
    """The test's own broker (tests/integration/private.py) is stopped by its pid for 30 s."""
    async with Harness.create(
        private_kafka.address,
        stack.admin_url,
        tmp_path,
        writer_url=stack.writer_url,
        reader_url=stack.reader_url,
    ) as harness:
        await _through_a_broker_stop(harness, private_kafka)


async def _through_a_broker_stop(harness: Harness, broker: KafkaBroker) -> None:
    harness.service("persist").start()
    url = watchdog(harness, lost_after=15.0, stall_after=10.0).metrics_url()
    run_id = f"broker-down-{harness.suffix}"
    async with reaped(await training(harness, run_id, 75)) as trainer:
        await status_within(harness, run_id, "running", within=60)
        await asyncio.sleep(5)
        assert await asyncio.to_thread(stop_broker, broker) is not None, "it was running"
        try:
            blind = await _blind_partitions(url, within=25)
            await asyncio.sleep(max(0.0, 30 - 25))
        finally:
            await asyncio.to_thread(start_broker, broker)
        assert blind > 0, "the watchdog says it cannot see the stream"
        assert await asyncio.wait_for(trainer.wait(), 120) == 0
    await status_within(harness, run_id, "completed", within=60)
    assert await harness.fetchval(VERDICTS, run_id) == 0


async def _blind_partitions(url: str, *, within: float) -> float:
    """The watchdog's blind partitions once it reports some (or after `within` seconds)."""
    last = [0.0]

    async def reported() -> bool:
        page = await asyncio.to_thread(scrape, url)
        last[0] = sum(v for _, v in page.get("runstream_watchdog_blind_partitions", []))
        return last[0] > 0

    await wait_until(reported, within=within, interval=1.0)
    return last[0]


async def test_a_watchdog_clock_120s_ahead_and_a_trainer_300s_behind_make_no_false_verdict(
    harness: Harness,
) -> None:
    harness.service("persist").start()
    policy = WatchPolicy(stall_after=STALL_AFTER, lost_after=LOST_AFTER)
    options = LoopOptions(group_id=f"watchdog-{harness.suffix}", commit_interval=1.0)
    service = RunWatchdog(
        harness.kafka,
        None,
        registry=CollectorRegistry(),
        policy=policy,
        interval=TICK,
        options=options,
        clock=lambda: time.time() + 120,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(service.run, stop, 10))
    run = EventFactory(f"skew-{harness.suffix}")
    try:
        await produce(harness.kafka, [(run.key, run.run_started())])
        for step in range(int(3 * LOST_AFTER / 0.5)):
            behind = time.time_ns() // 1000 - 300_000_000  # the trainer's clock is 300 s late
            body = {"step": step, "values": [{"name": "x", "value": 1.0}]}
            await produce(
                harness.kafka, [(run.key, run.event(kinds.METRICS, body, time_us=behind))]
            )
            await asyncio.sleep(0.5)
        assert await harness.fetchval(VERDICTS, run.run_id) == 0
        took = await status_within(harness, run.run_id, "lost", within=LOST_AFTER + SLACK)
        assert took > LOST_AFTER - 2.0, "a silent run is still lost, on the watchdog's clock"
    finally:
        stop.set()
        await task


async def test_a_rank_killed_before_its_first_event_makes_the_run_lost(harness: Harness) -> None:
    harness.service("persist").start()
    watchdog(harness)
    run_id = f"unheard-{harness.suffix}"
    env = {**harness.env(RUNSTREAM_HEARTBEAT_INTERVAL="60", RUNSTREAM_RUN_ID=run_id)}
    ranks = []
    for rank, what in ((2, "hang"), (0, "log"), (1, "log")):
        rank_env = {**os.environ, **env, "RANK": str(rank), "WORLD_SIZE": "3"}
        ranks.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _RANK, run_id, what, env=rank_env
            )
        )
    hung, *finishing = ranks
    try:
        await status_within(harness, run_id, "running", within=60)
        announced = time.monotonic()
        hung.kill()
        for proc in finishing:
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        await status_within(harness, run_id, "lost", within=LOST_AFTER + TICK + SLACK)
        assert time.monotonic() - announced > LOST_AFTER - 2.0
        reason = await harness.fetchval(
            "SELECT reason FROM status_events WHERE run_id = $1 AND state = 'lost'", run_id
        )
        assert "rank 2" in reason
    finally:
        for proc in ranks:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_a_rank_at_40_percent_of_the_others_rate_straggles_then_recovers(
    harness: Harness,
) -> None:
    window = 4.0
    harness.service("persist").start()
    url = watchdog(
        harness,
        lost_after=30.0,
        stall_after=30.0,
        RUNSTREAM_STRAGGLER_STEPS="100000",
        RUNSTREAM_STRAGGLER_WINDOW=str(window),
        RUNSTREAM_STRAGGLER_RATE="0.5",
    ).metrics_url()
    ranks = [EventFactory(f"rate-{harness.suffix}", rank=r, world_size=3) for r in range(3)]
    await produce(harness.kafka, [(ranks[0].key, ranks[0].run_started())])
    steps = [0.0, 0.0, 0.0]
    speeds = [1.0, 1.0, 1.0]
    stop = asyncio.Event()

    async def train() -> None:
        while not stop.is_set():
            for n in range(3):
                steps[n] += speeds[n]
            await produce(
                harness.kafka,
                [(r.key, r.metrics(int(steps[n]), {"x": 1.0})) for n, r in enumerate(ranks)],
            )
            await asyncio.sleep(0.2)

    trainer = asyncio.create_task(train())
    try:
        await asyncio.sleep(window)
        speeds[2] = 0.4
        slowed = time.monotonic()
        assert await _straggling_within(harness, ranks[0].run_id, [False, False, True], 3 * window)
        assert time.monotonic() - slowed <= 2 * window + SLACK
        page = await asyncio.to_thread(scrape, url)
        causes = [
            labels["cause"]
            for labels, value in page.get("runstream_watchdog_rank_straggling", [])
            if labels["run_id"] == ranks[0].run_id and labels["rank"] == "2" and value == 1
        ]
        assert causes == ["rate"]
        speeds[2] = 1.0
        assert await _straggling_within(harness, ranks[0].run_id, [False, False, False], 4 * window)
    finally:
        stop.set()
        await trainer


async def _straggling_within(
    harness: Harness, run_id: str, expected: list[bool], within: float
) -> bool:
    async def flags() -> bool:
        rows = await harness.fetch(
            "SELECT straggling FROM run_ranks WHERE run_id = $1 ORDER BY rank", run_id
        )
        return [r["straggling"] for r in rows] == expected

    return await wait_until(flags, within=within + SLACK)

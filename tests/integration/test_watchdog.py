"""The watchdog with persist and export, on real Kafka and PostgreSQL: stalled, lost, straggling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable

from runstream.schemas import kinds
from tests.harness import (
    EventFactory,
    Harness,
    Samples,
    ServiceProcess,
    produce,
    scrape,
    wait_until,
)

STALL_AFTER, LOST_AFTER, MARGIN, TICK = 4.0, 5.0, 50, 0.5
# A verdict is due at most one tick after its threshold passes; its status event then reaches
# PostgreSQL through Kafka and persist (which polls every 0.5 s): a second tick and 2 s for that.
SLACK = 2 * TICK + 2.0

_TRAINING = """
import sys, time
from runstream.producer import start_run

run = start_run(experiment="watch", run_id=sys.argv[1])
step = 0
while True:
    run.log("loss", 1.0 / (step + 1), step=step)
    step += 1
    time.sleep(0.2)
"""


def watched(harness: Harness) -> ServiceProcess:
    """persist, export and a fast watchdog; return the exporter."""
    harness.service("persist").start()
    harness.service(
        "watchdog",
        RUNSTREAM_STALL_AFTER=str(STALL_AFTER),
        RUNSTREAM_LOST_AFTER=str(LOST_AFTER),
        RUNSTREAM_STRAGGLER_STEPS=str(MARGIN),
        RUNSTREAM_WATCHDOG_INTERVAL=str(TICK),
    ).start()
    return harness.service("export").start()


async def beating(harness: Harness, ranks: list[EventFactory], stop: asyncio.Event) -> None:
    """Heartbeats (no progress) from every rank, twice a second, until `stop`."""
    while not stop.is_set():
        await produce(harness.kafka, [(r.key, r.heartbeat()) for r in ranks])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def status_within(harness: Harness, run_id: str, status: str, within: float) -> float:
    """Seconds until `runs.status` of `run_id` is `status` (fails after `within`)."""
    started = time.monotonic()
    query = f"SELECT status FROM runs WHERE run_id = '{run_id}'"
    found = await harness.wait_for_rows(query, status, within=within)
    assert found == status, f"{run_id} is {found}, expected {status}"
    return time.monotonic() - started


async def shown(url: str, check: Callable[[Samples], bool], within: float = 20.0) -> None:
    last: list[Samples] = [{}]

    async def scraped() -> bool:
        last[0] = await asyncio.to_thread(scrape, url)
        return check(last[0])

    assert await wait_until(scraped, within=within), last[0].get("runstream_run_info")


def info_status(run_id: str, status: str) -> Callable[[Samples], bool]:
    def check(page: Samples) -> bool:
        infos = page.get("runstream_run_info", [])
        return any(i["run_id"] == run_id and i["status"] == status for i, _ in infos)

    return check


async def test_heartbeats_without_progress_stall_the_run_until_it_progresses(
    harness: Harness,
) -> None:
    url = watched(harness).metrics_url()
    run = EventFactory(f"stall-{harness.suffix}")
    await produce(harness.kafka, [(run.key, run.run_started())])
    await status_within(harness, run.run_id, "running", within=30)
    progressed = time.monotonic()  # the next event's time, the run's last progress, is later
    await produce(harness.kafka, [(run.key, run.metrics(1, {"x": 1.0}))])
    stop = asyncio.Event()
    heart = asyncio.create_task(beating(harness, [run], stop))
    try:
        await status_within(harness, run.run_id, "stalled", within=STALL_AFTER + SLACK)
        took = time.monotonic() - progressed
        assert STALL_AFTER <= took <= STALL_AFTER + SLACK, took
        await shown(url, info_status(run.run_id, "stalled"))
        await produce(harness.kafka, [(run.key, run.metrics(2, {"x": 2.0}))])
        await status_within(harness, run.run_id, "running", within=SLACK)
        await shown(url, info_status(run.run_id, "running"))
    finally:
        stop.set()
        await heart


async def test_a_killed_training_process_makes_its_run_lost_until_it_speaks_again(
    harness: Harness,
) -> None:
    url = watched(harness).metrics_url()
    run_id = f"lost-{harness.suffix}"
    env = {**os.environ, **harness.env(RUNSTREAM_HEARTBEAT_INTERVAL="0.5")}
    training = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRAINING, run_id, env=env
    )
    try:
        await status_within(harness, run_id, "running", within=60)
        await asyncio.sleep(2)
    finally:
        training.kill()
        killed = time.monotonic()
        await training.wait()
    await status_within(harness, run_id, "lost", within=LOST_AFTER + SLACK)
    took = time.monotonic() - killed
    # Its last heartbeat left at most one heartbeat interval (0.5 s) before the kill.
    assert LOST_AFTER - 0.5 <= took <= LOST_AFTER + SLACK, took
    await shown(url, info_status(run_id, "lost"))

    again = EventFactory(run_id, "watch")
    await produce(harness.kafka, [(again.key, again.metrics(10_000, {"loss": 0.1}))])
    await status_within(harness, run_id, "running", within=SLACK)
    await shown(url, info_status(run_id, "running"))


async def _straggling(harness: Harness, run_id: str) -> list[bool]:
    rows = await harness.fetch(
        "SELECT straggling FROM run_ranks WHERE run_id = $1 ORDER BY rank", run_id
    )
    return [r["straggling"] for r in rows]


async def test_a_rank_held_back_straggles_until_it_catches_up(harness: Harness) -> None:
    url = watched(harness).metrics_url()
    ranks = [EventFactory(f"strag-{harness.suffix}", rank=r, world_size=2) for r in range(2)]
    lead, slow = ranks
    messages = [(lead.key, lead.run_started())]
    messages += [(lead.key, lead.metrics(s, {"x": 1.0})) for s in range(200)]
    messages += [(slow.key, slow.metrics(s, {"x": 1.0})) for s in range(10)]
    await produce(harness.kafka, messages)
    stop = asyncio.Event()
    heart = asyncio.create_task(beating(harness, ranks, stop))
    try:
        assert await _wait(lambda: _straggling(harness, lead.run_id), [False, True], SLACK + 10)

        def flagged(page: Samples) -> bool:
            return any(
                labels["run_id"] == lead.run_id and labels["rank"] == "1" and value == 1.0
                for labels, value in page.get("runstream_run_rank_straggling", [])
            )

        await shown(url, flagged)
        await produce(harness.kafka, [(slow.key, slow.metrics(199, {"x": 1.0}))])
        assert await _wait(lambda: _straggling(harness, lead.run_id), [False, False], SLACK)
        await shown(url, lambda page: not flagged(page))
    finally:
        stop.set()
        await heart


async def _wait(read: Callable[[], Awaitable[object]], expected: object, within: float) -> bool:
    async def check() -> bool:
        return await read() == expected

    return await wait_until(check, within=within)


def stalled_verdict(run: EventFactory, judged_through: int) -> bytes:
    """A `stalled` Status as the watchdog writes it, judged with the run's partition read up to
    `judged_through`.
    """
    body = {"state": "stalled", "reason": "test", "exit_code": None, "source": "watchdog"}
    return run.event(kinds.STATUS, body | {"judged_through": judged_through})


async def test_a_verdict_judged_before_later_progress_does_not_leave_the_run_stalled(
    harness: Harness,
) -> None:
    """The watchdog judged `stalled` having read the run's partition up to its step 1; step 2
    came after. Persist and export must keep the run running; a verdict judged after step 2
    still stalls it.
    """
    harness.service("persist").start()
    url = harness.service("export").start().metrics_url()
    run, watchdog = EventFactory(f"order-{harness.suffix}"), EventFactory(f"order-{harness.suffix}")
    judged, later = (
        await produce(
            harness.kafka,
            [(run.key, run.run_started())]
            + [(run.key, run.metrics(step, {"x": 1.0})) for step in (1, 2)],
        )
    )[1:]
    straggling = watchdog.event(
        kinds.RANK_STRAGGLING,
        {"straggling": True, "step": 2, "leader_step": 2, "judged_through": later},
    )
    verdicts = [(run.key, stalled_verdict(watchdog, judged)), (run.key, straggling)]
    await produce(harness.kafka, verdicts, topic=harness.kafka.verdict_topic)
    # The straggling flag comes after the stale verdict on the same partition: once it is in
    # PostgreSQL, so is whatever the stale verdict did.
    assert await _wait(lambda: _straggling(harness, run.run_id), [True], 30)
    running = info_status(run.run_id, "running")
    assert await harness.fetchval(f"SELECT status FROM runs WHERE run_id = '{run.run_id}'") == (
        "running"
    )
    await shown(url, lambda page: rank_flagged(page, run.run_id) and running(page))

    fresh = [(run.key, stalled_verdict(watchdog, later))]
    await produce(harness.kafka, fresh, topic=harness.kafka.verdict_topic)
    await status_within(harness, run.run_id, "stalled", within=30)
    await shown(url, info_status(run.run_id, "stalled"))


def rank_flagged(page: Samples, run_id: str) -> bool:
    """Whether /metrics shows rank 0 of `run_id` straggling."""
    flags = page.get("runstream_run_rank_straggling", [])
    return any(labels["run_id"] == run_id and value == 1.0 for labels, value in flags)

"""Two exporters in one consumer group: each shows only the runs of its own partitions, and a
stopped one's runs move to the other, so no run is ever on /metrics twice after a rebalance."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from tests.harness import EventFactory, Harness, ServiceProcess, produce, scrape

_SCRAPE_INTERVAL = 2.0  # deploy/local's Prometheus scrapes every service every two seconds
_RUNS = 12
_ASSIGNED = re.compile(r"Setting newly assigned partitions")


def runs_on(process: ServiceProcess) -> list[str]:
    """The run ids on the exporter's /metrics (one `runstream_run_info` series each)."""
    page = scrape(process.metrics_url())
    return [labels["run_id"] for labels, _ in page.get("runstream_run_info", [])]


async def wait_for(check: Callable[[], bool], within: float) -> float:
    """Seconds until `check()` was true; fail past `within`."""
    began = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - began < within, "not within the bound"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def assignments(process: ServiceProcess) -> int:
    return len(_ASSIGNED.findall(process.log()))


async def test_two_exporters_share_the_runs_and_one_left_gives_its_runs_back(
    harness: Harness,
) -> None:
    harness.service("persist").start()
    runs = [EventFactory(f"scale-{harness.suffix}-{n}") for n in range(_RUNS)]
    events = [(r.key, e) for r in runs for e in (r.run_started(), r.metrics(0, {"loss": 1.0}))]
    await produce(harness.kafka, events)
    await harness.wait_for_rows("SELECT count(*) FROM runs", _RUNS, within=60)
    every = {r.run_id for r in runs}

    first = harness.service("export").start()
    await wait_for(lambda: set(runs_on(first)) == every, within=60)

    second = harness.service("export").start()
    await wait_for(lambda: assignments(second) >= 1 and assignments(first) >= 2, within=60)
    both: list[list[str]] = []

    def shared_once() -> bool:
        both[:] = [runs_on(first), runs_on(second)]
        together = both[0] + both[1]
        return sorted(together) == sorted(every) and all(both)

    took = await wait_for(shared_once, within=60)
    assert took <= _SCRAPE_INTERVAL, f"runs shown twice for {took:.1f}s after the rebalance"
    assert not set(both[0]) & set(both[1])

    second.stop()
    await wait_for(lambda: assignments(first) >= 3, within=60)
    took = await wait_for(lambda: sorted(runs_on(first)) == sorted(every), within=60)
    assert took <= _SCRAPE_INTERVAL, f"the stopped exporter's runs came back after {took:.1f}s"

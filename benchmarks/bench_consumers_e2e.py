"""End to end: `run.log_metrics` in a training process → Kafka → persist → PostgreSQL, and → export.

    eval "$(runstream stack env)"
    python benchmarks/bench_consumers_e2e.py --rate 50000 --seconds 60 --runs 4 --persist 2
    python benchmarks/bench_consumers_e2e.py --rate 20000 --seconds 60

A training process (the real SDK) logs 10 metrics per call at `--rate` values per second, each
value being the wall-clock time of its `log_metrics` call; `--runs` such processes share the rate
(a run is one partition: more runs let more persist processes share the work; the benchmark picks
run ids on partitions 0, 1, 2…, so that a few runs do not all land on one persist process). Persist
(`--persist` processes in one group) and export run as real processes on a fresh topic and
database. Every 100 ms the benchmark reads the newest value visible in PostgreSQL
(`metric_latest`, over one open connection) and on the exporter's /metrics: its age when the answer
arrives is the latency of the newest row (log call → committed row / → value on /metrics; an upper
bound: a busy exporter may render its page a little before it arrives). Prints the sustained rate
(values committed per second while the producer ran, and how long the rest took to drain) and
p50/p99 of both latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from runstream._settings import Settings
from runstream.consumers.testing import Harness, scrape, wait_until

_PARTITIONER = DefaultPartitioner()

_TRAINING = """
import sys, time
from runstream.producer import start_run

rate, seconds, run_id = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
names = [f"m{i}" for i in range(10)]
with start_run(experiment="bench", run_id=run_id) as run:
    start, calls = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        while calls < int(elapsed * rate / 10):
            now = time.time()
            run.log_metrics(dict.fromkeys(names, now), step=calls)
            calls += 1
        time.sleep(0.001)
print(calls * 10)
"""


def spread_run_ids(suffix: str, runs: int, partitions: int) -> list[str]:
    """`runs` run ids on partitions 0, 1, 2… (one each while there are enough), which the
    consumers' round-robin assignment deals out evenly: a few runs then spread over the persist
    processes the way many runs do by chance.
    """
    every = list(range(partitions))
    wanted = min(runs, partitions)
    by_partition: dict[int, str] = {}
    for n in itertools.count():
        if len(by_partition) == wanted:
            break
        run_id = f"bench-{suffix}-{n}"
        partition = _PARTITIONER(run_id.encode(), every, every)
        if partition < wanted:
            by_partition.setdefault(partition, run_id)
    more = [f"bench-{suffix}-more-{k}" for k in range(runs - wanted)]
    return [by_partition[p] for p in range(wanted)] + more


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile of `samples` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def newest_in_postgres(conn: asyncpg.Connection[asyncpg.Record]) -> float | None:
    """The newest logged time visible in PostgreSQL."""
    value = await conn.fetchval("SELECT max(value) FROM metric_latest WHERE name = 'm0'")
    return None if value is None else float(value)


async def newest_on_metrics(client: httpx.AsyncClient, url: str) -> tuple[float | None, float]:
    """The newest logged time visible on the exporter's /metrics, and when the page arrived."""
    response = await client.get(url)
    arrived = time.time()
    response.raise_for_status()
    values = [
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "runstream_metric_value"
        for sample in family.samples
        if sample.labels["metric"] == "m0"
    ]
    return max(values, default=None), arrived


async def sample(harness: Harness, url: str, until: float) -> tuple[list[float], list[float]]:
    """Latency samples (seconds) from PostgreSQL and from /metrics, every 100 ms."""
    database, exporter = [], []
    conn = await asyncpg.connect(harness.database_url)
    client = httpx.AsyncClient(timeout=30.0)  # one client: building one costs milliseconds
    try:
        while time.monotonic() < until:
            newest = await newest_in_postgres(conn)
            if newest is not None:
                database.append(time.time() - newest)
            shown, arrived = await newest_on_metrics(client, url)
            if shown is not None:
                exporter.append(arrived - shown)
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
        await conn.close()
    return database, exporter


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    if settings.database_admin_url is None:
        raise SystemExit('RUNSTREAM_DATABASE_ADMIN_URL is not set: eval "$(runstream stack env)"')
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    async with Harness.create(
        settings.bootstrap_servers,
        settings.database_admin_url.get_secret_value(),
        workdir,
        writer_url=settings.database_url.get_secret_value(),
    ) as harness:
        persists = [harness.service("persist").start() for _ in range(args.persist)]
        export = harness.service("export").start()
        url = export.metrics_url()
        await asyncio.sleep(5)  # let the groups form
        env = {**os.environ, **harness.env()}
        run_ids = spread_run_ids(harness.suffix, args.runs, harness.partitions)
        trainings = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _TRAINING, str(args.rate / args.runs), str(args.seconds),
                run_id, stdout=asyncio.subprocess.PIPE,
                env={**env, "RUNSTREAM_SPOOL_DIR": str(workdir / f"spool-{n}")},
            )
            for n, run_id in enumerate(run_ids)
        ]  # fmt: skip
        started = time.monotonic()
        database, exporter = await sample(harness, url, started + args.seconds)
        committed_in_window = await rows(harness)
        outputs = [(await t.communicate())[0].decode().strip() for t in trainings]
        produced = sum(int(out or 0) for out in outputs)
        await wait_until(lambda: _all_rows(harness, produced), within=600)
        drained = time.monotonic() - started - args.seconds
        report(args, produced, committed_in_window, drained, database, exporter)
        for persist in persists:
            page = scrape(persist.metrics_url())
            seconds = page["runstream_consumer_batch_write_seconds_sum"][0][1]
            batches = page["runstream_consumer_batch_write_seconds_count"][0][1]
            each = seconds / max(batches, 1) * 1000
            print(f"  persist: {batches:.0f} batches, {each:.1f} ms each")


async def _all_rows(harness: Harness, produced: int) -> bool:
    return await rows(harness) >= produced


async def rows(harness: Harness) -> int:
    """Values committed so far."""
    return int(await harness.fetchval("SELECT coalesce(sum(count), 0) FROM metric_latest"))


def report(
    args: argparse.Namespace,
    produced: int,
    committed: int,
    drained: float,
    database: list[float],
    exporter: list[float],
) -> None:
    """Print the figures."""
    print(f"asked {args.rate:,} values/s for {args.seconds}s; the producer logged {produced:,}")
    print(
        f"committed while producing: {committed:,} ({committed / args.seconds:,.0f} values/s); "
        f"the rest drained {max(drained, 0):.1f}s after the producer stopped"
    )
    for name, samples in (("PostgreSQL", database), ("/metrics", exporter)):
        if samples:
            p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
            count = len(samples)
            print(f"latency log → {name}: p50 {p50:.0f} ms, p99 {p99:.0f} ms ({count} samples)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--persist", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    asyncio.run(main(parser.parse_args()))

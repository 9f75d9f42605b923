"""End to end: `run.log_metrics` in a training process → Kafka → persist → PostgreSQL, and → export.

    eval "$(runstream stack env --admin)"
    python benchmarks/bench_consumers_e2e.py --rate 60000 --seconds 60 --runs 4 --persist 2
    python benchmarks/bench_consumers_e2e.py --rate 20000 --seconds 60
    RUNSTREAM_BOOTSTRAP_SERVERS=<brokers> python benchmarks/bench_consumers_e2e.py --replication 3

`--replication 3` makes the benchmark's topic with three replicas and `min.insync.replicas=2` (a
cluster: `runstream stack up --brokers 3`); the default, 1, suits the single-node stack.

A training process (the real SDK) logs 10 metrics per call at `--rate` values per second, each
value being the wall-clock time of its `log_metrics` call; `--runs` such processes share the rate
(a run is one partition: more runs let more persist processes share the work; the benchmark picks
run ids on partitions 0, 1, 2…, so that a few runs do not all land on one persist process). Persist
(`--persist` processes in one group) and export run as real processes on a fresh topic and
database. Every 100 ms the benchmark reads the newest value visible in PostgreSQL
(`metric_latest`, over one open connection) and on the exporter's /metrics: its age when the answer
arrives is the latency of the newest row (log call → committed row / → value on /metrics; an upper
bound: a busy exporter may render its page a little before it arrives). Every second it also counts
the values committed. Prints the values committed while the producer ran and how long the rest
took to drain; the steady rate after a warm-up and the slowest 10 s stretch of it (asking more than
the target shows whether the system keeps up: the rate committed follows the rate asked, and the
rest drains within seconds); p50/p99 of both latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from runstream._settings import Settings

# The consumers' test harness lives with the tests, at the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import Harness, scrape, wait_until

_PARTITIONER = DefaultPartitioner()
_WARM_UP = 5.0  # seconds for the training processes to start and the first batches to flow
_WINDOW = 10.0

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


@dataclass
class Samples:
    """What the benchmark saw while the producer ran."""

    database: list[float] = field(default_factory=list)  # latency to PostgreSQL, seconds
    exporter: list[float] = field(default_factory=list)  # latency to /metrics, seconds
    committed: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, values)

    def steady_rates(self, skip: float, window: float) -> tuple[float, float]:
        """Values committed per second after the first `skip` seconds, overall and in the
        slowest `window`-second stretch.
        """
        if not self.committed:
            return 0.0, 0.0
        start = self.committed[0][0] + skip
        points = [(t, n) for t, n in self.committed if t >= start]
        if len(points) < 2:
            return 0.0, 0.0
        overall = (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])
        slowest = overall
        for i, (t0, n0) in enumerate(points):
            later = [(t, n) for t, n in points[i:] if t - t0 >= window]
            if later:
                t1, n1 = later[0]
                slowest = min(slowest, (n1 - n0) / (t1 - t0))
        return overall, slowest


async def sample(harness: Harness, url: str, until: float) -> Samples:
    """Latency samples from PostgreSQL and /metrics every 100 ms; values committed every second."""
    seen = Samples()
    conn = await asyncpg.connect(harness.database_url)
    client = httpx.AsyncClient(timeout=30.0)  # one client: building one costs milliseconds
    next_count = time.monotonic()
    try:
        while time.monotonic() < until:
            newest = await newest_in_postgres(conn)
            if newest is not None:
                seen.database.append(time.time() - newest)
            shown, arrived = await newest_on_metrics(client, url)
            if shown is not None:
                seen.exporter.append(arrived - shown)
            if time.monotonic() >= next_count:
                next_count += 1.0
                count = await conn.fetchval("SELECT coalesce(sum(count), 0) FROM metric_latest")
                seen.committed.append((time.monotonic(), int(count)))
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
        await conn.close()
    return seen


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    if settings.database_admin_url is None:
        raise SystemExit('no RUNSTREAM_DATABASE_ADMIN_URL: eval "$(runstream stack env --admin)"')
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    async with Harness.create(
        settings.bootstrap_servers,
        settings.database_admin_url.get_secret_value(),
        workdir,
        writer_url=settings.database_url.get_secret_value(),
        replicas=(args.replication, 2 if args.replication >= 3 else 1),
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
        seen = await sample(harness, url, started + args.seconds)
        committed_in_window = await rows(harness)
        outputs = [(await t.communicate())[0].decode().strip() for t in trainings]
        produced = sum(int(out or 0) for out in outputs)
        await wait_until(lambda: _all_rows(harness, produced), within=600)
        drained = time.monotonic() - started - args.seconds
        report(args, produced, committed_in_window, drained, seen)
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
    seen: Samples,
) -> None:
    """Print the figures."""
    print(f"asked {args.rate:,} values/s for {args.seconds}s; the producer logged {produced:,}")
    print(
        f"committed while producing: {committed:,} ({committed / args.seconds:,.0f} values/s); "
        f"the rest drained {max(drained, 0):.1f}s after the producer stopped"
    )
    overall, slowest = seen.steady_rates(skip=_WARM_UP, window=_WINDOW)
    print(
        f"steady ingest after the first {_WARM_UP:.0f}s: {overall:,.0f} values/s "
        f"(slowest {_WINDOW:.0f}s stretch: {slowest:,.0f} values/s)"
    )
    if args.timeline and seen.committed:
        t0, marks = seen.committed[0][0], seen.committed[::10]
        for (ta, na), (tb, nb) in itertools.pairwise(marks):
            print(f"  {ta - t0:5.0f}s to {tb - t0:3.0f}s: {(nb - na) / (tb - ta):9,.0f} values/s")
    for name, samples in (("PostgreSQL", seen.database), ("/metrics", seen.exporter)):
        if samples:
            p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
            count = len(samples)
            print(f"latency log → {name}: p50 {p50:.0f} ms, p99 {p99:.0f} ms ({count} samples)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--persist", type=int, default=1)
    parser.add_argument(
        "--timeline", action="store_true", help="print the rate committed in each 10 s"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--replication", type=int, choices=(1, 3), default=1)
    asyncio.run(main(parser.parse_args()))

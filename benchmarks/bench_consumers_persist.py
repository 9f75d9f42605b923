"""Persist alone, from a pre-filled topic: rows per second into PostgreSQL.

    eval "$(runstream stack env --admin)"
    python benchmarks/bench_consumers_persist.py [--events 100000] [--values 10] [--consumers 1]

Fills a fresh topic (8 partitions) with `--events` Metrics events of `--values` values each, spread
over 16 runs, then starts `--consumers` persist processes on a fresh database and times them until
every value is a committed row (`metric_latest` counts only inserted rows). Prints events/s and
rows/s. Needs RUNSTREAM_DATABASE_ADMIN_URL (the stack's `env` gives it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from runstream._settings import Settings
from runstream.schemas import default_codec
from runstream.schemas._fast import MetricsWriter

# The consumers' test harness lives with the tests, at the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import Harness, produce, scrape

RUNS = 16


def events(count: int, values: int) -> list[tuple[bytes, bytes]]:
    """`count` encoded Metrics events of `values` values each, round-robin over RUNS runs."""
    codec, names = default_codec(), [f"metric_{n}" for n in range(values)]
    writers = [
        MetricsWriter(codec, f"bench-{n}-{uuid.uuid4().hex[:6]}", "bench", 0, 1, str(uuid.uuid4()))
        for n in range(RUNS)
    ]
    now = time.time_ns() // 1000
    out = []
    for i in range(count):
        run, step = i % RUNS, i // RUNS
        pairs = [(name, float(step)) for name in names]
        out.append((str(run).encode(), writers[run].encode(step, now + i, step, pairs)))
    return out


async def rows(harness: Harness) -> int:
    """Committed values so far."""
    return int(await harness.fetchval("SELECT coalesce(sum(count), 0) FROM metric_latest"))


async def main(args: argparse.Namespace) -> None:
    settings = Settings()
    admin = settings.database_admin_url
    if admin is None:
        raise SystemExit('no RUNSTREAM_DATABASE_ADMIN_URL: eval "$(runstream stack env --admin)"')
    workdir = Path(tempfile.mkdtemp(prefix="bench-persist-"))
    async with Harness.create(
        settings.bootstrap_servers,
        admin.get_secret_value(),
        workdir,
        writer_url=settings.database_url.get_secret_value(),
    ) as harness:
        messages = events(args.events, args.values)
        started = time.perf_counter()
        await produce(harness.kafka, messages)
        print(f"filled the topic: {args.events} events in {time.perf_counter() - started:.1f}s")
        total = args.events * args.values
        started = time.perf_counter()
        services = [harness.service("persist").start() for _ in range(args.consumers)]
        first: tuple[float, int] | None = None
        while (done := await rows(harness)) < total:
            if first is None and done:
                first = (time.perf_counter(), done)
            await asyncio.sleep(0.2)
        ended = time.perf_counter()
        elapsed = ended - started
        print(
            f"persist x{args.consumers}: {done} rows ({args.events} events) in {elapsed:.1f}s "
            f"(incl. startup) = {done / elapsed:,.0f} rows/s, {args.events / elapsed:,.0f} events/s"
        )
        if first is not None:
            steady = (done - first[1]) / (ended - first[0])
            print(f"  from the first committed batch on: {steady:,.0f} rows/s")
        for service in services:
            page = scrape(service.metrics_url())
            seconds = page["runstream_consumer_batch_write_seconds_sum"][0][1]
            batches = page["runstream_consumer_batch_write_seconds_count"][0][1]
            each = seconds / batches * 1000
            print(f"  {batches:.0f} batches, {seconds:.1f}s writing ({each:.1f} ms each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--values", type=int, default=10)
    parser.add_argument("--consumers", type=int, default=1)
    asyncio.run(main(parser.parse_args()))

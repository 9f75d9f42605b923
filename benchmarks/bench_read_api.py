"""Cost of reading one 100k-point curve back with the Python read API.

    python benchmarks/bench_read_api.py [--points 100000] [--repeats 7] [--run-id ID]

Logs one run of POINTS values of `loss` (one rank) through the stack's topic and waits until
the stack's persist service has stored them (or reads the run given with --run-id), then times
`Client.metrics(run_id, "loss")` as pandas, Arrow and polars, and with `aggregate=True`, each
REPEATS times in a row on one client, as the reader role of RUNSTREAM_DATABASE_READ_URL. Prints
the median and the fastest of each, and the rows per second of the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from runstream._settings import Settings
from runstream.consumers.read import Client
from runstream.producer import Run, RunContext


def log_curve(points: int) -> str:
    settings = Settings()
    config = replace(settings.producer(), spool_dir=Path(tempfile.mkdtemp()) / "spool")
    run = Run(RunContext(f"bench-read-{uuid.uuid4().hex[:12]}", "bench-read"), config)
    for step in range(points):
        run.log("loss", 1.0 / (step + 1), step=step)
    run.complete(timeout=60)
    return run.run_id


def wait_stored(url: str, run_id: str, points: int) -> None:
    async def count() -> int:
        connection = await asyncpg.connect(url)
        try:
            stored: int = await connection.fetchval(
                "SELECT count(*) FROM metrics WHERE run_id = $1", run_id
            )
            return stored
        finally:
            await connection.close()

    deadline = time.monotonic() + 300
    while asyncio.run(count()) < points:
        if time.monotonic() > deadline:
            raise SystemExit(f"persist did not store {points} values of {run_id}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--run-id")
    options = parser.parse_args()
    settings = Settings()
    run_id = options.run_id or log_curve(options.points)
    wait_stored(settings.database_read_url.get_secret_value(), run_id, options.points)
    print(f"run {run_id}: {options.points} points of loss, one rank")
    cases: dict[str, dict[str, Any]] = {
        "pandas": {"frame": "pandas"},
        "arrow": {"frame": "arrow"},
        "polars": {"frame": "polars"},
        "aggregate (arrow)": {"frame": "arrow", "aggregate": True},
    }
    with Client(settings.database(read_only=True)) as client:
        client.metrics(run_id, "loss", frame="arrow")  # connection and first-query costs
        for label, kwargs in cases.items():
            seconds = []
            for _ in range(options.repeats):
                start = time.perf_counter()
                frame = client.metrics(run_id, "loss", **kwargs)
                seconds.append(time.perf_counter() - start)
            assert len(frame) == options.points, len(frame)
            median = statistics.median(seconds)
            print(
                f"client.metrics -> {label:18s} median {median * 1e3:7.1f} ms   "
                f"fastest {min(seconds) * 1e3:7.1f} ms   {options.points / median:,.0f} rows/s"
            )


if __name__ == "__main__":
    main()

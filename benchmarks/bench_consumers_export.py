"""Exporter scrape time with many live runs, and the cost of folding events into its state.

    python benchmarks/bench_consumers_export.py [--runs 1000] [--metrics 20] [--ranks 8]
    python benchmarks/bench_consumers_export.py --runs 1 --metrics 50 --ranks 1000

The exporter's default rank limit (8) applies unless `--ranks-limit` is given: a run of more ranks
is exported as its cross-rank aggregates plus rank 0 (no rank straggles here).

Builds the exporter's in-memory state (`LiveRuns`) as the consume loop would, from decoded Metrics
events, then times full renders of the /metrics page (the WSGI app the exporter serves: its health
registry plus `RunCollector`'s text). No services needed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from prometheus_client import CollectorRegistry

from runstream._config import ExportConfig
from runstream.consumers import LiveRuns, RunCollector
from runstream.consumers._health import metrics_app
from runstream.schemas import EventRecord, Metrics, event_record


def events(runs: int, metrics: int, ranks: int) -> list[EventRecord]:
    """One Metrics event per (run, rank), with `metrics` values each."""
    now = time.time_ns() // 1000
    body = Metrics(step=100, values=[(f"metric_{m}", m * 0.5) for m in range(metrics)])
    producer = str(uuid.uuid4())
    return [
        event_record(
            run_id=f"run-{r}",
            experiment=f"exp-{r % 10}",
            rank=rank,
            world_size=ranks,
            producer_id=producer,
            seq=r * ranks + rank,
            kind=body.KIND,
            body=body,
            time_us=now,
        )
        for r in range(runs)
        for rank in range(ranks)
    ]


def main(args: argparse.Namespace) -> None:
    live = LiveRuns(finished_ttl=600, idle_ttl=86400)
    batch = events(args.runs, args.metrics, args.ranks)
    started = time.perf_counter()
    live.apply(batch)
    fold = time.perf_counter() - started
    values = args.runs * args.metrics * args.ranks
    print(f"fold: {len(batch)} events, {values} values in {fold:.2f}s ({values / fold:,.0f}/s)")
    collector = RunCollector(live, ranks_limit=args.ranks_limit)
    app = metrics_app(CollectorRegistry(), collector.render)
    timings, size = [], 0
    for _ in range(args.scrapes):
        started = time.perf_counter()
        size = len(b"".join(app({"PATH_INFO": "/metrics"}, lambda *_: None)))  # type: ignore[arg-type]
        timings.append(time.perf_counter() - started)
    print(
        f"scrape: {args.runs} runs x {args.metrics} metrics x {args.ranks} ranks "
        f"(rank limit {args.ranks_limit}), {size / 1e6:.1f} MB: "
        f"median {statistics.median(timings) * 1000:.0f} ms, "
        f"max {max(timings) * 1000:.0f} ms over {args.scrapes} scrapes"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--ranks-limit", type=int, default=ExportConfig().ranks_limit)
    main(parser.parse_args())

"""The watchdog's own /metrics: verdicts, ticks, what it can see of the stream, and stragglers.

- `runstream_watchdog_assigned_partitions` and `runstream_watchdog_blind_partitions`: partitions
  it reads, and those it could not see whole at the last tick (broker unreachable, a backlog).
  While a partition is blind its runs get no verdict; WatchdogBlind alerts on it.
- `runstream_watchdog_partition_seen_timestamp_seconds{topic,partition}`: when it last saw one
  whole (its own clock); `runstream_watchdog_blind_seconds_total`: blind time, summed.
- `runstream_watchdog_rank_step_rate{experiment,run_id,rank}` (steps per second over the
  straggler window) and `runstream_watchdog_rank_straggling{experiment,run_id,rank,cause}` = 1 for
  each straggling rank, `cause` = gap | rate | gap+rate: a custom collector over the runs judged at
  the last tick, so the series leave with the run.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runstream.consumers._labels import safe_label
from runstream.consumers._sightings import WatchedRuns


class WatchdogHealth:
    """Verdicts sent, tick duration, live runs, failures and sight, on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "runstream_watchdog_verdicts",
            "Verdicts sent, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "runstream_watchdog_tick_seconds", "Time to judge every live run", registry=registry
        )
        self.live_runs = Gauge(
            "runstream_watchdog_live_runs", "Runs judged at the last tick", registry=registry
        )
        self.failures = Counter(
            "runstream_watchdog_failures",
            "Ticks that could not read the topic's progress or send their verdicts",
            registry=registry,
        )
        self.last_tick = Gauge(
            "runstream_watchdog_last_tick_timestamp_seconds",
            "When the last tick completed (Unix time)",
            registry=registry,
        )
        self.assigned = Gauge(
            "runstream_watchdog_assigned_partitions", "Partitions it reads", registry=registry
        )
        self.blind = Gauge(
            "runstream_watchdog_blind_partitions",
            "Partitions it could not see whole at the last tick (their runs are not judged)",
            registry=registry,
        )
        self.blind_seconds = Gauge(
            "runstream_watchdog_blind_seconds",
            "Blind time summed over partitions since start (left out of every silence)",
            registry=registry,
        )
        self.seen = Gauge(
            "runstream_watchdog_partition_seen_timestamp_seconds",
            "When the partition was last seen whole (the watchdog's clock)",
            ["topic", "partition"],
            registry=registry,
        )

    def observe(self, runs: WatchedRuns) -> None:
        """Set the gauges from the runs and sights of the tick that just ran."""
        self.live_runs.set(sum(1 for run in runs.runs.values() if not run.terminal))
        self.assigned.set(len(runs.sights))
        self.blind.set(sum(1 for sight in runs.sights.values() if sight.blind_now))
        self.blind_seconds.set(sum(sight.blind for sight in runs.sights.values()))
        for tp, sight in runs.sights.items():
            if sight.seen_at is not None:
                self.seen.labels(tp.topic, str(tp.partition)).set(sight.seen_at)


class StragglerCollector(Collector):
    """Step rates and straggling ranks as judged at the last tick."""

    def __init__(self, runs: WatchedRuns) -> None:
        self._runs = runs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Two families over `WatchedRuns.stragglers` (a tuple replaced whole at each tick)."""
        labels = ["experiment", "run_id", "rank"]
        rates = GaugeMetricFamily(
            "runstream_watchdog_rank_step_rate",
            "Steps per second of the rank over the straggler window",
            labels=labels,
        )
        flagged = GaugeMetricFamily(
            "runstream_watchdog_rank_straggling",
            "1 while the rank straggles, by cause (gap, rate or gap+rate)",
            labels=[*labels, "cause"],
        )
        for run, straggler in self._runs.assessed:
            names = [safe_label(run.experiment), safe_label(run.run_id), str(straggler.rank)]
            if straggler.rate is not None:
                rates.add_metric(names, straggler.rate)
            if straggler.straggling:
                flagged.add_metric([*names, straggler.cause], 1.0)
        yield rates
        yield flagged

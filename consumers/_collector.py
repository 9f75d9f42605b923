"""`RunCollector`: the exporter contract of DESIGN.md, computed from `LiveRuns` at scrape time.

- `runstream_metric_value{experiment,run_id,metric,rank}` / `runstream_metric_step{…}`
- `runstream_run_info{experiment,run_id,run_name,status}` = 1, one series per run
- `runstream_run_last_heartbeat_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_last_progress_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_step{experiment,run_id,rank}`
- `runstream_run_rank_straggling{experiment,run_id,rank}` = 1 while the watchdog says so

Series exist only while their run is in `LiveRuns`; nothing accumulates in labelled metrics.
Label values: run ids, experiments and metric names were checked by the codec's rules; the free-form
run name is made a safe label value here (printable, at most 250 characters).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runstream.consumers._livestate import LiveRuns
from runstream.consumers._runstate import RankState
from runstream.schemas import NAME_MAX

_METRIC = ["experiment", "run_id", "metric", "rank"]
_RANK = ["experiment", "run_id", "rank"]
_INFO = ["experiment", "run_id", "run_name", "status"]


def safe_label(text: str | None) -> str:
    """A label value from free-form text: non-printable characters replaced, length bounded."""
    if not text:
        return ""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text[:NAME_MAX]


def _seconds(time: datetime | None) -> float | None:
    return None if time is None else time.timestamp()


class _Families:
    """The metric families of one scrape."""

    def __init__(self) -> None:
        self.value = GaugeMetricFamily(
            "runstream_metric_value", "Last value of each logged scalar", labels=_METRIC
        )
        self.step = GaugeMetricFamily(
            "runstream_metric_step", "Step of that last value", labels=_METRIC
        )
        self.info = GaugeMetricFamily(
            "runstream_run_info",
            "One series per run, labelled with its current status",
            labels=_INFO,
        )
        self.heartbeat = GaugeMetricFamily(
            "runstream_run_last_heartbeat_timestamp_seconds",
            "When the rank was last heard from (Unix time)",
            labels=_RANK,
        )
        self.progress = GaugeMetricFamily(
            "runstream_run_last_progress_timestamp_seconds",
            "When the rank last progressed (Unix time)",
            labels=_RANK,
        )
        self.run_step = GaugeMetricFamily(
            "runstream_run_step", "Highest step the rank reached", labels=_RANK
        )
        self.straggling = GaugeMetricFamily(
            "runstream_run_rank_straggling",
            "1 while the rank trails the run's leading rank by more than the margin",
            labels=_RANK,
        )

    def all(self) -> list[Metric]:
        """Every family, in exposition order."""
        return [
            self.value,
            self.step,
            self.info,
            self.heartbeat,
            self.progress,
            self.run_step,
            self.straggling,
        ]


class RunCollector(Collector):
    """Collects the run-level series from `LiveRuns` (called in the scrape's thread)."""

    def __init__(self, live: LiveRuns) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        """One pass over the live runs."""
        families = _Families()
        for run_id, run in self._live.snapshot():
            state = run.state
            experiment = state.experiment
            families.info.add_metric(
                [experiment, run_id, safe_label(state.name), state.status], 1.0
            )
            for (name, rank), (value, step, _time) in list(run.metrics.items()):
                labels = [experiment, run_id, name, str(rank)]
                families.value.add_metric(labels, value)
                families.step.add_metric(labels, step)
            for rank, rank_state in list(state.ranks.items()):
                self._rank(families, [experiment, run_id, str(rank)], rank_state)
        yield from families.all()

    @staticmethod
    def _rank(families: _Families, labels: list[str], rank: RankState) -> None:
        heartbeat = _seconds(rank.last_heartbeat_at)
        progress = _seconds(rank.last_progress_at)
        step = rank.last_step
        if heartbeat is not None:
            families.heartbeat.add_metric(labels, heartbeat)
        if progress is not None:
            families.progress.add_metric(labels, progress)
        if step is not None:
            families.run_step.add_metric(labels, step)
        families.straggling.add_metric(labels, 1.0 if rank.straggling else 0.0)

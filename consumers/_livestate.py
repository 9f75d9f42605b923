"""`LiveRuns`: the exporter's in-memory state of the runs worth showing, and nothing more.

Each run keeps its `RunState` (folded by the same rules as persist's) and the last value and step
of each metric on each rank (by metric, then rank: a scrape reads one metric's ranks together).
A finished run leaves `finished_ttl` seconds after it ended, an unfinished run that has been
silent for `idle_ttl` seconds leaves too, so memory and Prometheus cardinality are bounded by the
runs alive now.

Threads: the consume loop is the only writer. A scrape (another thread) copies each dict with one
`list(d.items())`, a single C-level call that the GIL keeps atomic, and values are immutable tuples
replaced whole, so a scrape never takes a lock the loop would wait on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runstream.consumers._labels import aggregate_labels, metric_labels
from runstream.consumers._runstate import RunState, with_offsets
from runstream.schemas import EventRecord, Metrics

MetricKey = tuple[str, int]
Latest = tuple[float, int, datetime]


@dataclass(slots=True)
class LiveRun:
    """One run on /metrics: its state, the latest (value, step, time) of each metric by rank, and
    each series' label text (computed once, by the loop): per (metric, rank), and per metric for
    the cross-rank aggregates.
    """

    state: RunState
    metrics: dict[str, dict[int, Latest]] = field(default_factory=dict)
    labels: dict[MetricKey, str] = field(default_factory=dict)
    metric_labels: dict[str, str] = field(default_factory=dict)

    def remember(self, name: str, rank: int, latest: Latest) -> None:
        """Keep `latest` unless the series already holds a later one (by time)."""
        by_rank = self.metrics.get(name)
        if by_rank is None:
            by_rank = self.metrics[name] = {}
            self.metric_labels[name] = aggregate_labels(
                self.state.experiment, self.state.run_id, name
            )
        current = by_rank.get(rank)
        if current is None:
            self.labels[name, rank] = metric_labels(
                self.state.experiment, self.state.run_id, name, rank
            )
        elif latest[2] < current[2]:
            return
        by_rank[rank] = latest

    def apply(self, event: EventRecord, offset: int | None = None) -> None:
        """Fold one event of this run (at `offset` of its topic, when known)."""
        self.state.apply(event, offset)
        if isinstance(event.body, Metrics):
            self._values(event, event.body)

    def _values(self, event: EventRecord, body: Metrics) -> None:
        rank, step, time = event.rank, body.step, event.time
        for name, value in body.values:
            self.remember(name, rank, (value, step, time))


class LiveRuns:
    """The runs the exporter shows, keyed by run id."""

    def __init__(self, *, finished_ttl: float, idle_ttl: float) -> None:
        self.finished_ttl = timedelta(seconds=finished_ttl)
        self.idle_ttl = timedelta(seconds=idle_ttl)
        self.runs: dict[str, LiveRun] = {}

    def apply(self, events: Sequence[EventRecord], offsets: Sequence[int] | None = None) -> None:
        """Fold events (topic order, at `offsets` when known); unknown runs are created."""
        runs = self.runs
        for event, offset in with_offsets(events, offsets):
            run = runs.get(event.run_id)
            if run is None:
                run = runs[event.run_id] = LiveRun(RunState.first_seen(event))
            run.apply(event, offset)

    def load(self, states: dict[str, RunState], latest: Sequence[Sequence[Any]]) -> None:
        """Start from a snapshot: run states and `(run_id, name, rank, value, step, time)` rows."""
        for run_id, state in states.items():
            self.runs[run_id] = LiveRun(state)
        for run_id, name, rank, value, step, time in latest:
            run = self.runs.get(run_id)
            if run is not None:
                run.remember(name, rank, (value, step, time))

    def keep_only(self, wanted: Callable[[str], bool]) -> list[str]:
        """Drop every run whose id `wanted` refuses (its partition went to another exporter)."""
        gone = [run_id for run_id in list(self.runs) if not wanted(run_id)]
        for run_id in gone:
            del self.runs[run_id]
        return gone

    def evict(self, now: datetime | None = None) -> list[str]:
        """Drop runs finished longer than `finished_ttl` ago or silent for `idle_ttl`."""
        now = now or datetime.now(UTC)
        gone = [run_id for run_id, run in list(self.runs.items()) if self._expired(run.state, now)]
        for run_id in gone:
            del self.runs[run_id]
        return gone

    def _expired(self, state: RunState, now: datetime) -> bool:
        if state.terminal:
            ended = state.ended_at or state.last_heartbeat_at
            return ended is not None and now - ended > self.finished_ttl
        heard = state.last_heartbeat_at or state.started_at
        return heard is not None and now - heard > self.idle_ttl

    def snapshot(self) -> list[tuple[str, LiveRun]]:
        """The runs now, for a scrape (see the module docstring on threads)."""
        return list(self.runs.items())

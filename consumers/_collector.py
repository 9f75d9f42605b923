"""`RunCollector`: the exporter contract of DESIGN.md, rendered from `LiveRuns` at scrape time.

- `runstream_metric_value{experiment,run_id,metric,rank}` / `runstream_metric_step{…}`
- `runstream_run_info{experiment,run_id,run_name,status}` = 1, one series per run
- `runstream_run_last_heartbeat_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_last_progress_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_step{experiment,run_id,rank}`
- `runstream_run_rank_straggling{experiment,run_id,rank}` = 1 while the watchdog says so

Series exist only while their run is in `LiveRuns`; nothing accumulates in labelled metrics.
Label values: run ids, experiments and metric names were checked by the codec's rules; the free-form
run name is made a safe label value here (printable, at most 250 characters), and every value is
escaped for the text format.

Speed: 1,000 runs x 20 metrics x 8 ranks are 320,000 samples per scrape. prometheus_client's
generic exposition needs seconds for that, so the collector writes the text format itself, with
each series' label text computed once (when the series first appears) and kept in `LiveRun`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from runstream.consumers._labels import escape, metric_labels, safe_label
from runstream.consumers._livestate import LiveRun, LiveRuns
from runstream.consumers._runstate import RankState

_FAMILIES = (
    ("runstream_metric_value", "Last value of each logged scalar"),
    ("runstream_metric_step", "Step of that last value"),
    ("runstream_run_info", "One series per run, labelled with its current status"),
    ("runstream_run_last_heartbeat_timestamp_seconds", "When the rank was last heard (Unix time)"),
    ("runstream_run_last_progress_timestamp_seconds", "When the rank last progressed (Unix time)"),
    ("runstream_run_step", "Highest step the rank reached"),
    ("runstream_run_rank_straggling", "1 while the rank trails the leading rank by the margin"),
)


def number(value: float) -> str:
    """A sample value in the text format (NaN, +Inf and -Inf spelled as Prometheus does)."""
    if math.isfinite(value):
        return repr(float(value))
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _seconds(time: datetime | None) -> str | None:
    return None if time is None else repr(time.timestamp())


class RunCollector:
    """Renders the run-level series of `LiveRuns` (called in the scrape's thread)."""

    def __init__(self, live: LiveRuns) -> None:
        self._live = live

    def render(self) -> str:
        """The text exposition of every run-level family."""
        lines: list[list[str]] = [[] for _ in _FAMILIES]
        for run_id, run in self._live.snapshot():
            self._run(lines, run_id, run)
        out = []
        for (name, help_text), samples in zip(_FAMILIES, lines, strict=True):
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            out.extend(samples)
        return "".join(out)

    @staticmethod
    def _run(lines: list[list[str]], run_id: str, run: LiveRun) -> None:
        state = run.state
        prefix = f'experiment="{escape(state.experiment)}",run_id="{escape(run_id)}"'
        name, status = escape(safe_label(state.name)), state.status
        lines[2].append(f'runstream_run_info{{{prefix},run_name="{name}",status="{status}"}} 1.0\n')
        values, steps = lines[0], lines[1]
        for key, (value, step, _time) in list(run.metrics.items()):
            labels = run.labels.get(key) or metric_labels(state.experiment, run_id, *key)
            values.append(f"runstream_metric_value{{{labels}}} {number(value)}\n")
            steps.append(f"runstream_metric_step{{{labels}}} {step}\n")
        for rank, rank_state in list(state.ranks.items()):
            _rank(lines, f'{prefix},rank="{rank}"', rank_state)


def _rank(lines: list[list[str]], labels: str, rank: RankState) -> None:
    heartbeat, progress = _seconds(rank.last_heartbeat_at), _seconds(rank.last_progress_at)
    if heartbeat is not None:
        lines[3].append(f"runstream_run_last_heartbeat_timestamp_seconds{{{labels}}} {heartbeat}\n")
    if progress is not None:
        lines[4].append(f"runstream_run_last_progress_timestamp_seconds{{{labels}}} {progress}\n")
    if rank.last_step is not None:
        lines[5].append(f"runstream_run_step{{{labels}}} {rank.last_step}\n")
    flag = "1.0" if rank.straggling else "0.0"
    lines[6].append(f"runstream_run_rank_straggling{{{labels}}} {flag}\n")


def family_names() -> Iterable[str]:
    """The names of the run-level families, in exposition order."""
    return (name for name, _ in _FAMILIES)

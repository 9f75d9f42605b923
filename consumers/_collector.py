"""`RunCollector`: the exporter contract of DESIGN.md, rendered from `LiveRuns` at scrape time.

- `runstream_metric_ranks_min|_mean|_max{experiment,run_id,metric}`: across the ranks' last values,
  `runstream_metric_ranks{…}` how many ranks they cover (every rank that logged the metric)
- `runstream_metric_value{experiment,run_id,metric,rank}` / `runstream_metric_step{…}`, for the
  ranks `shown_ranks` picks; `runstream_run_hidden_ranks{experiment,run_id}` counts the others
- `runstream_run_info{experiment,run_id,run_name,status}` = 1, one series per run
- `runstream_run_last_heartbeat_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_last_progress_timestamp_seconds{experiment,run_id,rank}`
- `runstream_run_step{experiment,run_id,rank}`
- `runstream_run_rank_straggling{experiment,run_id,rank}` = 1 while the watchdog says so

Series exist only while their run is in `LiveRuns`; nothing accumulates in labelled metrics.
Label values: run ids, experiments and metric names were checked by the codec's rules; the free-form
run name is made a safe label value here (printable, at most 250 characters), and every value is
escaped for the text format.

Speed: 1,000 runs x 20 metrics x 8 ranks are 400,000 samples per scrape. prometheus_client's
generic exposition needs seconds for that, so the collector writes the text format itself, with
each series' label text computed once (when the series first appears) and kept in `LiveRun`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from operator import itemgetter

from runstream._config import ExportConfig
from runstream.consumers._labels import escape, safe_label
from runstream.consumers._livestate import Latest, LiveRun, LiveRuns
from runstream.consumers._runstate import RankState
from runstream.consumers._shownranks import RankSpread, shown_ranks

_FAMILIES = (
    ("runstream_metric_value", "Last value of each logged scalar, on each shown rank"),
    ("runstream_metric_step", "Step of that last value"),
    ("runstream_metric_ranks_min", "Lowest of the ranks' last values of a metric"),
    ("runstream_metric_ranks_mean", "Mean of the ranks' last values of a metric"),
    ("runstream_metric_ranks_max", "Highest of the ranks' last values of a metric"),
    ("runstream_metric_ranks", "How many ranks logged the metric (what the aggregates cover)"),
    ("runstream_run_hidden_ranks", "Ranks logging metrics without per-rank series (rank limit)"),
    ("runstream_run_info", "One series per run, labelled with its current status"),
    ("runstream_run_last_heartbeat_timestamp_seconds", "When the rank was last heard (Unix time)"),
    ("runstream_run_last_progress_timestamp_seconds", "When the rank last progressed (Unix time)"),
    ("runstream_run_step", "Highest step the rank reached"),
    ("runstream_run_rank_straggling", "1 while the rank trails the leading rank by the margin"),
)
(
    _VALUE,
    _STEP,
    _MIN,
    _MEAN,
    _MAX,
    _RANKS,
    _HIDDEN,
    _INFO,
    _HEARTBEAT,
    _PROGRESS,
    _RUN_STEP,
    _STRAGGLING,
) = range(len(_FAMILIES))
Lines = list[list[str]]
_first = itemgetter(0)


def number(value: float) -> str:
    """A sample value in the text format (NaN, +Inf and -Inf spelled as Prometheus does)."""
    if math.isfinite(value):
        return repr(float(value))
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _seconds(time: datetime | None) -> str | None:
    return None if time is None else repr(time.timestamp())


class RunCollector:
    """Renders the run-level series of `LiveRuns` (called in the scrape's thread).

    `ranks_limit`: see `shown_ranks`, which picks the ranks with per-rank metric series.
    """

    def __init__(self, live: LiveRuns, *, ranks_limit: int = ExportConfig().ranks_limit) -> None:
        self._live = live
        self._ranks_limit = ranks_limit

    def render(self) -> str:
        """The text exposition of every run-level family."""
        lines: Lines = [[] for _ in _FAMILIES]
        for run_id, run in self._live.snapshot():
            self._run(lines, run_id, run)
        out = []
        for (name, help_text), samples in zip(_FAMILIES, lines, strict=True):
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            out.extend(samples)
        return "".join(out)

    def _run(self, lines: Lines, run_id: str, run: LiveRun) -> None:
        state = run.state
        prefix = f'experiment="{escape(state.experiment)}",run_id="{escape(run_id)}"'
        name, status = escape(safe_label(state.name)), state.status
        lines[_INFO].append(
            f'runstream_run_info{{{prefix},run_name="{name}",status="{status}"}} 1.0\n'
        )
        ranks = list(state.ranks.items())
        hidden = self._metrics(lines, run, ranks)
        lines[_HIDDEN].append(f"runstream_run_hidden_ranks{{{prefix}}} {hidden}\n")
        for rank, rank_state in ranks:
            _rank(lines, f'{prefix},rank="{rank}"', rank_state)

    def _metrics(self, lines: Lines, run: LiveRun, ranks: list[tuple[int, RankState]]) -> int:
        """Render the run's metrics; returns how many logging ranks were left out."""
        metrics = list(run.metrics.items())
        logged: set[int] = set()
        for _metric, by_rank in metrics:
            logged.update(by_rank)
        straggling = (rank for rank, rank_state in ranks if rank_state.straggling)
        shown = shown_ranks(logged, straggling, self._ranks_limit)
        everyone, order = len(shown) == len(logged), sorted(shown)
        for metric, by_rank in metrics:
            latest = list(by_rank.items()) if everyone else _picked(by_rank, order)
            _spread(lines, run.metric_labels[metric], list(map(_first, list(by_rank.values()))))
            for rank, (value, step, _time) in latest:
                _value(lines, run.labels[metric, rank], value, step)
        return len(logged) - len(shown)


def _picked(by_rank: dict[int, Latest], ranks: list[int]) -> list[tuple[int, Latest]]:
    picked = ((rank, by_rank.get(rank)) for rank in ranks)
    return [(rank, latest) for rank, latest in picked if latest is not None]


def _spread(lines: Lines, labels: str, values: list[float]) -> None:
    spread = RankSpread.of(values)
    lines[_MIN].append(f"runstream_metric_ranks_min{{{labels}}} {number(spread.low)}\n")
    lines[_MEAN].append(f"runstream_metric_ranks_mean{{{labels}}} {number(spread.mean)}\n")
    lines[_MAX].append(f"runstream_metric_ranks_max{{{labels}}} {number(spread.high)}\n")
    lines[_RANKS].append(f"runstream_metric_ranks{{{labels}}} {spread.ranks}\n")


def _value(lines: Lines, labels: str, value: float, step: int) -> None:
    lines[_VALUE].append(f"runstream_metric_value{{{labels}}} {number(value)}\n")
    lines[_STEP].append(f"runstream_metric_step{{{labels}}} {step}\n")


def _rank(lines: Lines, labels: str, rank: RankState) -> None:
    heartbeat, progress = _seconds(rank.last_heartbeat_at), _seconds(rank.last_progress_at)
    if heartbeat is not None:
        lines[_HEARTBEAT].append(
            f"runstream_run_last_heartbeat_timestamp_seconds{{{labels}}} {heartbeat}\n"
        )
    if progress is not None:
        lines[_PROGRESS].append(
            f"runstream_run_last_progress_timestamp_seconds{{{labels}}} {progress}\n"
        )
    if rank.last_step is not None:
        lines[_RUN_STEP].append(f"runstream_run_step{{{labels}}} {rank.last_step}\n")
    flag = "1.0" if rank.straggling else "0.0"
    lines[_STRAGGLING].append(f"runstream_run_rank_straggling{{{labels}}} {flag}\n")


def family_names() -> Iterable[str]:
    """The names of the run-level families, in exposition order."""
    return (name for name, _ in _FAMILIES)

"""The read layer's queries over one connection, for callers that hold their own (the CLI).

Each function only reads; `Client` and `AsyncClient` are built on the same ones.
"""

from runstream.consumers.read._downsample import (
    DOWNSAMPLED_COLUMNS,
    curves_sql,
    downsampled_history,
    downsampled_sql,
)
from runstream.consumers.read._history import (
    curve_points,
    export_batches,
    metric_aggregate,
    metric_history,
    metric_total,
)
from runstream.consumers.read._runs import (
    Row,
    RunFilter,
    database_now,
    extras,
    get_run,
    launcher_state,
    list_runs,
    log_tail,
    metric_names,
    metric_summaries,
    pick_run,
    ranks,
    recent_values,
)

__all__ = [
    "DOWNSAMPLED_COLUMNS",
    "Row",
    "RunFilter",
    "curve_points",
    "curves_sql",
    "database_now",
    "downsampled_history",
    "downsampled_sql",
    "export_batches",
    "extras",
    "get_run",
    "launcher_state",
    "list_runs",
    "log_tail",
    "metric_aggregate",
    "metric_history",
    "metric_names",
    "metric_summaries",
    "metric_total",
    "pick_run",
    "ranks",
    "recent_values",
]

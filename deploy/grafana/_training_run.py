"""The Training run dashboard: one run, its curves, ranks, status, logs and tables."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as models

from runstream.consumers.read.queries import curves_sql, downsampled_sql
from runstream.deploy.grafana._panels import (
    experiment_variable,
    logs_panel,
    row,
    sql_variable,
    stat_panel,
    step_panel,
    table_panel,
    timeseries_panel,
)
from runstream.deploy.grafana._targets import promql, sql

UID = "runstream-training-run"

# At most 2,000 points per curve, whatever the run's length: 1,000 step buckets, each keeping its
# lowest and highest value across the selected ranks (so every spike shows), read by the same SQL
# as the Python read API's `points=` (runstream.consumers.read.queries.downsampled_sql).
CURVE_VS_STEP = f"""
    SELECT step, value FROM ({
    downsampled_sql(
        curves_sql("run_id = '$run' AND name IN ($metric)"),
        rank="m.rank IN ($rank)",
        buckets="1000",
        series="NULL::int",
    )
}) points
    ORDER BY step, value
"""

RUN_SUMMARY = """
    SELECT coalesce(name, run_id) AS name, experiment, status, status_reason AS reason,
           started_at, ended_at,
           extract(epoch FROM coalesce(ended_at, now()) - started_at) AS duration_seconds,
           world_size, last_step, host, git_commit, exit_code, error
    FROM runs WHERE run_id = '$run'
"""

PARAMS_AND_TAGS = """
    SELECT 'param' AS kind, p.key, p.value
    FROM runs r, jsonb_each_text(r.params) p WHERE r.run_id = '$run'
    UNION ALL
    SELECT 'tag', t.key, t.value
    FROM runs r, jsonb_each_text(r.tags) t WHERE r.run_id = '$run'
    ORDER BY 1, 2
"""

LATEST_VALUES = """
    SELECT name AS metric, rank, step, value, min, max, count, time
    FROM metric_latest WHERE run_id = '$run' AND rank IN ($rank)
    ORDER BY name, rank
"""

RANKS = """
    SELECT rank, status, last_step,
           extract(epoch FROM now() - last_heartbeat_at) AS heartbeat_age_seconds,
           extract(epoch FROM now() - last_progress_at) AS progress_age_seconds,
           straggling, host, pid, exit_code, reason
    FROM run_ranks WHERE run_id = '$run' AND rank IN ($rank)
    ORDER BY rank
"""

STATUS_EVENTS = """
    SELECT time, rank, state, reason, exit_code, source
    FROM status_events WHERE run_id = '$run'
    ORDER BY time DESC LIMIT 200
"""

LOGS = """
    SELECT time, message, level, logger, rank
    FROM log_records
    WHERE run_id = '$run' AND rank IN ($rank) AND $__timeFilter(time)
    ORDER BY time DESC LIMIT 1000
"""

TABLE_ROWS = """
    SELECT time, table_name AS "table", rank, row_data::text AS row
    FROM table_rows WHERE run_id = '$run' AND rank IN ($rank)
    ORDER BY time DESC LIMIT 500
"""

TEXT_METRICS = """
    SELECT time, name, step, rank, value
    FROM text_metrics WHERE run_id = '$run' AND rank IN ($rank)
    ORDER BY time DESC LIMIT 200
"""

RUN_SELECTOR = 'run_id="$run", rank=~"$rank"'
CURVE_SELECTOR = 'run_id="$run", metric=~"$metric"'


def variables() -> list[cogbuilder.Builder[models.VariableModel]]:
    """Experiment → run → metric, rank."""
    return [
        experiment_variable(),
        sql_variable(
            "run",
            "Run",
            "SELECT run_id AS __value, coalesce(name, run_id) || ' · ' || status AS __text"
            " FROM runs WHERE experiment = '$experiment'"
            " ORDER BY started_at DESC NULLS LAST LIMIT 500",
        ),
        sql_variable(
            "metric",
            "Metric",
            "SELECT DISTINCT name FROM metric_latest WHERE run_id = '$run' ORDER BY 1",
            multi=True,
        ),
        sql_variable(
            "rank",
            "Rank",
            "SELECT rank FROM run_ranks WHERE run_id = '$run' ORDER BY 1",
            multi=True,
            include_all=True,
        ),
    ]


def dashboard() -> dashboard_builders.Dashboard:
    """The Training run dashboard."""
    board = (
        dashboard_builders.Dashboard("runstream · Training run")
        .uid(UID)
        .tags(["runstream"])
        .time("now-6h", "now")
        .refresh("10s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .variables(variables())
    )
    board = board.with_row(row("Run"))
    board = board.with_panel(
        stat_panel(
            "Status", sql("SELECT status FROM runs WHERE run_id = '$run'"), width=4, height=7
        )
    )
    board = board.with_panel(table_panel("Run", sql(RUN_SUMMARY), width=12, height=7))
    board = board.with_panel(
        table_panel("Params and tags", sql(PARAMS_AND_TAGS), width=8, height=7)
    )
    board = board.with_row(row("Curves"))
    board = board.with_panel(
        step_panel("$metric against step", sql(CURVE_VS_STEP))
        .repeat("metric")
        .repeat_direction("h")
    )
    board = board.with_panel(
        timeseries_panel(
            "Live values against time: across ranks, and per shown rank",
            [
                promql(
                    f"runstream_metric_ranks_{part}{{{CURVE_SELECTOR}}}", f"{{{{metric}}}} · {part}"
                )
                for part in ("min", "mean", "max")
            ]
            + [
                promql(
                    f'runstream_metric_value{{{RUN_SELECTOR}, metric=~"$metric"}}',
                    "{{metric}} · rank {{rank}}",
                )
            ],
            width=20,
        )
    )
    board = board.with_panel(
        stat_panel(
            "Ranks without per-rank series",
            promql('runstream_run_hidden_ranks{run_id="$run"}', "hidden ranks"),
            width=4,
            height=9,
        )
    )
    board = board.with_panel(table_panel("Latest values", sql(LATEST_VALUES), width=24, height=7))
    board = board.with_row(row("Ranks"))
    board = board.with_panel(
        timeseries_panel(
            "Step per rank",
            [promql(f"runstream_run_step{{{RUN_SELECTOR}}}", "rank {{rank}}")],
            width=8,
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Steps per second per rank",
            [promql(f"run_rank:runstream_run_step:deriv2m{{{RUN_SELECTOR}}}", "rank {{rank}}")],
            unit="none",
            width=8,
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Heartbeat age per rank",
            [
                promql(
                    f"time() - runstream_run_last_heartbeat_timestamp_seconds{{{RUN_SELECTOR}}}",
                    "rank {{rank}}",
                )
            ],
            unit="s",
            width=8,
        )
    )
    board = board.with_panel(table_panel("Ranks", sql(RANKS), width=24, height=6))
    board = board.with_row(row("Events"))
    board = board.with_panel(table_panel("Status changes", sql(STATUS_EVENTS), width=12))
    board = board.with_panel(table_panel("Text metrics", sql(TEXT_METRICS), width=12))
    board = board.with_panel(logs_panel("Logs", sql(LOGS)))
    return board.with_panel(table_panel("Table rows", sql(TABLE_ROWS), width=24, height=8))

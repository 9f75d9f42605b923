"""The Experiment overview dashboard: every run of an experiment, and one metric across them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as models

from runstream.consumers.read.queries import curves_sql, downsampled_sql
from runstream.deploy.grafana._panels import (
    category_bars_panel,
    experiment_variable,
    row,
    sql_variable,
    stat_panel,
    step_panel,
    table_panel,
    timeseries_panel,
    transformation,
)
from runstream.deploy.grafana._targets import promql, sql

UID = "runstream-experiment"

# `lowest`/`highest` are the best value for a loss or an accuracy respectively; `last` is the
# value at the run's last logged step (rank 0, or the lowest rank that logged the metric).
RUNS = """
    SELECT r.run_id, coalesce(r.name, r.run_id) AS name, r.status,
           r.started_at, r.ended_at,
           extract(epoch FROM coalesce(r.ended_at, now()) - r.started_at) AS duration_seconds,
           r.world_size, r.last_step,
           m.value AS last, m.min AS lowest, m.max AS highest
    FROM runs r
    LEFT JOIN LATERAL (
        SELECT value, min, max FROM metric_latest
        WHERE run_id = r.run_id AND name = '$metric' ORDER BY rank LIMIT 1
    ) m ON true
    WHERE r.experiment = '$experiment'
      AND ($__timeFilter(r.started_at) OR r.ended_at IS NULL)
    ORDER BY r.started_at DESC NULLS LAST LIMIT 500
"""

RUNS_BY_STATUS = """
    SELECT status, count(*) AS runs
    FROM runs
    WHERE experiment = '$experiment' AND ($__timeFilter(started_at) OR ended_at IS NULL)
    GROUP BY status ORDER BY status
"""

LAST_VALUE_PER_RUN = """
    SELECT coalesce(r.name, r.run_id) AS run, m.value AS "$metric"
    FROM runs r
    JOIN LATERAL (
        SELECT value FROM metric_latest
        WHERE run_id = r.run_id AND name = '$metric' ORDER BY rank LIMIT 1
    ) m ON true
    WHERE r.experiment = '$experiment' AND ($__timeFilter(r.started_at) OR r.ended_at IS NULL)
    ORDER BY r.started_at DESC NULLS LAST LIMIT 30
"""

# The 20 most recent runs, each curve read at 500 points: 250 step buckets keeping their lowest
# and highest value across ranks (the read API's downsampling SQL).
METRIC_ACROSS_RUNS = f"""
    WITH recent AS (
        SELECT run_id, coalesce(name, run_id) AS run FROM runs
        WHERE experiment = '$experiment' AND ($__timeFilter(started_at) OR ended_at IS NULL)
        ORDER BY started_at DESC NULLS LAST LIMIT 20
    )
    SELECT recent.run, points.step, points.value
    FROM recent JOIN ({
    downsampled_sql(
        curves_sql("run_id IN (SELECT run_id FROM recent) AND name = '$metric'"),
        rank="true",
        buckets="250",
        series="NULL::int",
    )
}) points USING (run_id)
    ORDER BY 1, 2, 3
"""


def variables() -> list[cogbuilder.Builder[models.VariableModel]]:
    """Experiment → metric."""
    return [
        experiment_variable(),
        sql_variable(
            "metric",
            "Metric",
            "SELECT DISTINCT m.name FROM metric_latest m JOIN runs r USING (run_id)"
            " WHERE r.experiment = '$experiment' ORDER BY 1",
        ),
    ]


def dashboard() -> dashboard_builders.Dashboard:
    """The Experiment overview dashboard."""
    board = (
        dashboard_builders.Dashboard("runstream · Experiment overview")
        .uid(UID)
        .tags(["runstream"])
        .time("now-7d", "now")
        .refresh("30s")
        .variables(variables())
    )
    board = board.with_row(row("Runs"))
    board = board.with_panel(stat_panel("Runs by status", sql(RUNS_BY_STATUS), width=24, height=4))
    board = board.with_panel(table_panel("Runs", sql(RUNS), width=24, height=10))
    board = board.with_row(row("$metric across runs"))
    board = board.with_panel(
        step_panel("$metric against step", sql(METRIC_ACROSS_RUNS)).with_transformation(
            transformation("partitionByValues", {"fields": ["run"], "keepFields": False})
        )
    )
    board = board.with_panel(
        category_bars_panel("$metric: last value per run", sql(LAST_VALUE_PER_RUN), "run")
    )
    board = board.with_panel(
        timeseries_panel(
            "$metric live, mean across ranks, per run",
            [
                promql(
                    'runstream_metric_ranks_mean{experiment="$experiment", metric="$metric"}',
                    "{{run_id}}",
                )
            ],
        )
    )
    return board.with_panel(
        timeseries_panel(
            "Steps per second per run",
            [promql('run:runstream_run_step:deriv2m{experiment="$experiment"}', "{{run_id}}")],
        )
    )

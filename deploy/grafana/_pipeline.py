"""The Pipeline health dashboard: what runstream's own services do (Prometheus only)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from runstream.deploy.grafana._panels import bars_panel, gauge_bars_panel, row, timeseries_panel
from runstream.deploy.grafana._targets import promql

UID = "runstream-pipeline"

RUNSTREAM_JOBS = 'job=~"runstream-.+"'
BUCKETS = "sum by (job, le) (rate(runstream_consumer_batch_write_seconds_bucket[$__rate_interval]))"


def dashboard() -> dashboard_builders.Dashboard:
    """The Pipeline health dashboard."""
    board = (
        dashboard_builders.Dashboard("runstream · Pipeline health")
        .uid(UID)
        .tags(["runstream"])
        .time("now-3h", "now")
        .refresh("10s")
    )
    board = board.with_row(row("Flow"))
    board = board.with_panel(
        timeseries_panel(
            "Events consumed per second",
            [
                promql(
                    "sum by (job, kind) (rate(runstream_consumer_events_total[$__rate_interval]))",
                    "{{job}} · {{kind}}",
                )
            ],
            unit="ops",
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Consumer lag",
            [
                promql(
                    "sum by (job, topic, partition) (runstream_consumer_lag_messages)",
                    "{{job}} · {{topic}}/{{partition}}",
                )
            ],
            unit="short",
        )
    )
    board = board.with_panel(
        bars_panel(
            "Dead letters",
            [
                promql(
                    "sum by (job, reason)"
                    " (increase(runstream_consumer_dead_letters_total[$__rate_interval]))",
                    "{{job}} · {{reason}}",
                )
            ],
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Live runs by status",
            [promql("count by (status) (runstream_run_info)", "{{status}}")],
        )
    )
    board = board.with_row(row("Storage"))
    board = board.with_panel(
        timeseries_panel(
            "Batch write latency",
            [
                promql(f"histogram_quantile(0.5, {BUCKETS})", "p50 {{job}}", "A"),
                promql(f"histogram_quantile(0.99, {BUCKETS})", "p99 {{job}}", "B"),
            ],
            unit="s",
            width=8,
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Since last offset commit",
            [promql("time() - runstream_consumer_last_commit_timestamp_seconds", "{{job}}")],
            unit="s",
            width=8,
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Paused for the database, and database errors",
            [
                promql("max by (job) (runstream_consumer_paused)", "paused {{job}}", "A"),
                promql(
                    "sum by (job)"
                    " (increase(runstream_consumer_database_errors_total[$__rate_interval]))",
                    "errors {{job}}",
                    "B",
                ),
            ],
            width=8,
        )
    )
    board = board.with_row(row("Watchdog"))
    board = board.with_panel(
        timeseries_panel(
            "Since the watchdog last judged runs",
            [promql("time() - runstream_watchdog_last_tick_timestamp_seconds", "{{instance}}")],
            unit="s",
        )
    )
    board = board.with_panel(
        timeseries_panel(
            "Watchdog check duration and runs judged",
            [
                promql(
                    "histogram_quantile(0.99, sum by (le)"
                    " (rate(runstream_watchdog_tick_seconds_bucket[$__rate_interval])))",
                    "p99 check seconds",
                    "A",
                ),
                promql("sum(runstream_watchdog_live_runs)", "runs judged", "B"),
            ],
        )
    )
    board = board.with_row(row("Scrapes"))
    board = board.with_panel(
        gauge_bars_panel("Targets up", [promql(f"up{{{RUNSTREAM_JOBS}}}", "{{job}}")], width=8)
    )
    board = board.with_panel(
        timeseries_panel(
            "Scrape duration",
            [promql(f"scrape_duration_seconds{{{RUNSTREAM_JOBS}}}", "{{job}}")],
            unit="s",
            width=8,
        )
    )
    return board.with_panel(
        timeseries_panel(
            "Samples per scrape",
            [promql(f"scrape_samples_scraped{{{RUNSTREAM_JOBS}}}", "{{job}}")],
            width=8,
        )
    )

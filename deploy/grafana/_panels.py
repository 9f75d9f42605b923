"""Panel and variable shorthands shared by the three dashboards."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import barchart, bargauge, logs, stat, table, timeseries, trend
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

from runstream.deploy.grafana._targets import POSTGRES

Target = cogbuilder.Builder[cogvariants.Dataquery]

STATUS_COLORS = {
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "canceled": "text",
    "stalled": "orange",
    "lost": "purple",
}


def status_mappings() -> list[models.ValueMapping]:
    """Colour each run status the same way on every panel."""
    options = {
        status: models.ValueMappingResult(text=status, color=color, index=index)
        for index, (status, color) in enumerate(STATUS_COLORS.items())
    }
    return [models.ValueMap(options=options)]


def sql_variable(
    name: str, label: str, query: str, *, multi: bool = False, include_all: bool = False
) -> dashboard_builders.QueryVariable:
    """A template variable whose options come from PostgreSQL (`__value`, `__text` columns)."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(POSTGRES)
        .query(" ".join(query.split()))
        .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
        .multi(multi)
        .include_all(include_all)
    )


def experiment_variable() -> dashboard_builders.QueryVariable:
    """`$experiment`: every experiment that has a run, the first of each dashboard's chain."""
    return sql_variable(
        "experiment", "Experiment", "SELECT DISTINCT experiment FROM runs ORDER BY 1"
    )


def timeseries_panel(
    title: str, targets: Sequence[Target], unit: str = "", width: int = 12, height: int = 8
) -> timeseries.Panel:
    """Lines over time."""
    panel = timeseries.Panel().title(title).targets(list(targets)).span(width).height(height)
    panel = panel.legend(
        common_builders.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
    )
    return panel.unit(unit) if unit else panel


def bars_panel(
    title: str, targets: Sequence[Target], unit: str = "", width: int = 12, height: int = 8
) -> timeseries.Panel:
    """Bars over time (counts per interval)."""
    panel = timeseries_panel(title, targets, unit, width, height)
    return panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)


def step_panel(title: str, target: Target, width: int = 12, height: int = 9) -> trend.Panel:
    """A curve against the `step` column (Grafana's trend panel: any numeric x axis)."""
    return (
        trend.Panel()
        .title(title)
        .with_target(target)
        .x_field("step")
        .span(width)
        .height(height)
        .show_points(common.VisibilityMode.NEVER)
        .line_width(1)
    )


def table_panel(
    title: str, target: Target, width: int = 12, height: int = 8, unit: str = ""
) -> table.Panel:
    """Rows as the query returns them, run statuses coloured."""
    panel = table.Panel().title(title).with_target(target).span(width).height(height)
    panel = panel.mappings(status_mappings())
    return panel.unit(unit) if unit else panel


def stat_panel(
    title: str, target: Target, width: int = 6, height: int = 4, unit: str = ""
) -> stat.Panel:
    """One big value per row or series (text values shown as they are)."""
    panel = (
        stat.Panel()
        .title(title)
        .with_target(target)
        .span(width)
        .height(height)
        .mappings(status_mappings())
        .reduce_options(
            common_builders.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields("/.*/")
        )
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )
    return panel.unit(unit) if unit else panel


def gauge_bars_panel(
    title: str, targets: Sequence[Target], width: int = 12, height: int = 6, unit: str = ""
) -> bargauge.Panel:
    """One horizontal bar per series (last value)."""
    panel = (
        bargauge.Panel()
        .title(title)
        .targets(list(targets))
        .span(width)
        .height(height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    return panel.unit(unit) if unit else panel


def category_bars_panel(
    title: str, target: Target, x_field: str, width: int = 12, height: int = 8
) -> barchart.Panel:
    """One bar per row of a table, labelled by `x_field`."""
    return (
        barchart.Panel()
        .title(title)
        .with_target(target)
        .x_field(x_field)
        .span(width)
        .height(height)
        .show_value(common.VisibilityMode.AUTO)
    )


def logs_panel(title: str, target: Target, width: int = 24, height: int = 10) -> logs.Panel:
    """Log lines, newest first."""
    return (
        logs.Panel()
        .title(title)
        .with_target(target)
        .span(width)
        .height(height)
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(common.LogsSortOrder.DESCENDING)
    )


def row(title: str) -> dashboard_builders.Row:
    """A row header."""
    return dashboard_builders.Row(title)


def transformation(kind: str, options: dict[str, object]) -> models.DataTransformerConfig:
    """A Grafana transformation (e.g. `partitionByValues`)."""
    return models.DataTransformerConfig(id_val=kind, options=options)

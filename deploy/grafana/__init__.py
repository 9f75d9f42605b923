"""Grafana dashboards as code (grafana-foundation-sdk), provisioning files, and `push`.

    python -m runstream.deploy.grafana      # regenerate dashboards/*.json and provisioning/
    runstream grafana push --url … --token …

Needs the `grafana` extra: `pip install 'runstream[grafana]'`.
"""

from runstream.deploy.grafana._datasources import PostgresSource, datasources
from runstream.deploy.grafana._files import (
    DASHBOARDS,
    HERE,
    dashboard_models,
    generated_files,
    stale_files,
    write_files,
)
from runstream.deploy.grafana._interpolate import (
    PanelQuery,
    QueryContext,
    expand_promql,
    expand_sql,
    panel_queries,
    variable_kinds,
)
from runstream.deploy.grafana._push import GrafanaPushError, GrafanaTarget, PushReport, push

__all__ = [
    "DASHBOARDS",
    "HERE",
    "GrafanaPushError",
    "GrafanaTarget",
    "PanelQuery",
    "PostgresSource",
    "PushReport",
    "QueryContext",
    "dashboard_models",
    "datasources",
    "expand_promql",
    "expand_sql",
    "generated_files",
    "panel_queries",
    "push",
    "stale_files",
    "variable_kinds",
    "write_files",
]

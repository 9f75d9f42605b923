"""The two datasources the dashboards read, and query builders for each.

grafana-foundation-sdk ships a builder for Prometheus queries but none for Grafana's PostgreSQL
datasource, so `SqlQuery` / `SqlTarget` add one: a raw-SQL query in Grafana's own JSON shape
(`rawSql`, `format`, `editorMode: code`).
"""

from __future__ import annotations

import textwrap
from typing import Literal, Self

from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

PROMETHEUS_UID = "runstream-prometheus"
POSTGRES_UID = "runstream-postgres"
POSTGRES_TYPE = "grafana-postgresql-datasource"

PROMETHEUS = models.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
POSTGRES = models.DataSourceRef(type_val=POSTGRES_TYPE, uid=POSTGRES_UID)

SqlFormat = Literal["table", "time_series"]


class SqlQuery(cogvariants.Dataquery):
    """One raw-SQL query of Grafana's PostgreSQL datasource."""

    def __init__(self, sql: str, ref_id: str = "A", sql_format: SqlFormat = "table") -> None:
        self.sql = sql
        self.ref_id = ref_id
        self.format = sql_format

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in dashboard JSON."""
        return {
            "datasource": {"type": POSTGRES_TYPE, "uid": POSTGRES_UID},
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class SqlTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of `SqlQuery`, in the style of the SDK's own query builders."""

    def __init__(self, sql: str) -> None:
        self._query = SqlQuery(textwrap.dedent(sql).strip())

    def build(self) -> SqlQuery:
        """The query."""
        return self._query

    def ref_id(self, ref_id: str) -> Self:
        """The query's letter in its panel."""
        self._query.ref_id = ref_id
        return self

    def format(self, sql_format: SqlFormat) -> Self:
        """`table` (rows as they come) or `time_series` (a `time` column, one series per metric)."""
        self._query.format = sql_format
        return self


def sql(text: str, ref_id: str = "A") -> SqlTarget:
    """A PostgreSQL target returning a table."""
    return SqlTarget(text).ref_id(ref_id)


def promql(
    expr: str, legend: str = "", ref_id: str = "A", *, instant: bool = False
) -> prometheus_builders.Dataquery:
    """A Prometheus target (a range query unless `instant`)."""
    target = prometheus_builders.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    target = target.editor_mode(prometheus_models.QueryEditorMode.CODE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        return target.instant().format(prometheus_models.PromQueryFormat.TABLE)
    return target.range()

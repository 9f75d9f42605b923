"""Panel queries as Grafana would send them: template variables and SQL macros expanded.

Grafana's front end first replaces template variables (a single value as it is; a multi-value or
include-all variable as `'a','b'` in SQL and as the regex `(a|b)` in PromQL) and built-ins such
as `$__interval` and `$__rate_interval`; the PostgreSQL datasource then expands its macros
(`$__timeFilter(col)`, `$__timeFrom()`, …). This module does the same so that tests (and anyone
checking a deployment) can run every panel's query against the real services.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")
_MACRO = re.compile(
    r"\$__(timeFilter|timeFrom|timeTo|timeGroupAlias|timeGroup|unixEpochFilter)\(([^)]*)\)"
)


@dataclass(frozen=True, slots=True)
class PanelQuery:
    """One target of one panel (or one template variable's query)."""

    panel: str
    datasource: str
    """`prometheus` or `grafana-postgresql-datasource`."""
    text: str
    instant: bool = False


@dataclass(frozen=True, slots=True)
class QueryContext:
    """A dashboard's state when it runs its queries: variable values, time range, interval."""

    values: Mapping[str, Sequence[str]]
    multi: Mapping[str, bool] = field(default_factory=dict)
    """Variables that are multi-value or include-all (their values get quoted / joined)."""
    time_to: datetime = field(default_factory=lambda: datetime.now(UTC))
    span: timedelta = timedelta(hours=1)
    interval: timedelta = timedelta(seconds=15)
    scrape_interval: timedelta = timedelta(seconds=15)

    @property
    def time_from(self) -> datetime:
        """Start of the time range."""
        return self.time_to - self.span

    def builtins(self) -> dict[str, str]:
        """`$__interval` & co., as Grafana computes them."""
        rate = max(self.interval + self.scrape_interval, 4 * self.scrape_interval)
        return {
            "__interval": _duration(self.interval),
            "__interval_ms": str(int(self.interval.total_seconds() * 1000)),
            "__rate_interval": _duration(rate),
            "__range": _duration(self.span),
            "__range_s": str(int(self.span.total_seconds())),
        }


def variable_kinds(model: Mapping[str, Any]) -> dict[str, bool]:
    """Variable name → whether it is multi-value or include-all, from a dashboard model."""
    return {
        var["name"]: bool(var.get("multi") or var.get("includeAll"))
        for var in model.get("templating", {}).get("list", [])
    }


def panel_queries(model: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Every query of a dashboard: its variables' first, then each panel's targets."""
    for var in model.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            yield PanelQuery(f"variable {var['name']}", var["datasource"]["type"], var["query"])
    for panel in _panels(model):
        for target in panel.get("targets", []):
            kind = target["datasource"]["type"]
            text = target.get("rawSql") if "rawSql" in target else target.get("expr", "")
            yield PanelQuery(panel["title"], kind, text, bool(target.get("instant")))


def expand_promql(expr: str, context: QueryContext) -> str:
    """A PromQL expression with variables replaced the way the Prometheus datasource does."""

    def value(name: str) -> str | None:
        values = context.values[name]
        if not context.multi.get(name, False):
            return values[0].replace("\\", "\\\\").replace("'", "\\'")
        escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _substitute(expr, context, value)


def expand_sql(sql: str, context: QueryContext) -> str:
    """SQL with variables replaced and macros expanded the way the PostgreSQL datasource does."""

    def value(name: str) -> str | None:
        values = context.values[name]
        if not context.multi.get(name, False):
            return values[0].replace("'", "''")
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)

    return _MACRO.sub(
        lambda m: _macro(m.group(1), m.group(2), context), _substitute(sql, context, value)
    )


def _substitute(text: str, context: QueryContext, value: Any) -> str:
    builtins = context.builtins()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name in context.values:
            return str(value(name))
        return match.group(0)

    return _VARIABLE.sub(replace, text)


def _macro(name: str, argument: str, context: QueryContext) -> str:
    start, end = _rfc3339(context.time_from), _rfc3339(context.time_to)
    args = [a.strip() for a in argument.split(",")] if argument.strip() else []
    if name == "timeFilter":
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "timeFrom":
        return f"'{start}'"
    if name == "timeTo":
        return f"'{end}'"
    if name == "unixEpochFilter":
        low, high = int(context.time_from.timestamp()), int(context.time_to.timestamp())
        return f"{args[0]} >= {low} AND {args[0]} <= {high}"
    seconds = _seconds(args[1]) if len(args) > 1 else int(context.interval.total_seconds())
    group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
    return group + (' AS "time"' if name == "timeGroupAlias" else "")


def _panels(model: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _seconds(text: str) -> int:
    text = text.strip("'\" ")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))

"""Dashboards as code: generated files up to date, every panel queried, Grafana's expansion,
and the compose file checked as far as it can be without a Docker engine."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from runstream._settings import Settings
from runstream.deploy import grafana
from runstream.deploy.grafana import QueryContext, expand_promql, expand_sql
from runstream.deploy.local import StackConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DATASOURCE_UIDS = {"runstream-prometheus", "runstream-postgres"}
BUILTINS = {"__interval", "__interval_ms", "__rate_interval", "__range", "__range_s"}
SQL_MACROS = re.compile(
    r"\$__(timeFilter|timeFrom|timeTo|timeGroup|timeGroupAlias|unixEpochFilter)\("
)


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def test_generated_files_are_up_to_date() -> None:
    stale = grafana.stale_files()
    assert not stale, (
        f"run `runstream grafana build` (or python -m runstream.deploy.grafana): {stale}"
    )


def test_the_three_dashboards_exist_with_their_variables() -> None:
    models = grafana.dashboard_models()
    assert set(models) == {"training-run", "experiment-overview", "pipeline-health"}
    names = {stem: list(grafana.variable_kinds(m)) for stem, m in models.items()}
    assert names["training-run"] == ["experiment", "run", "metric", "rank"]
    assert names["experiment-overview"] == ["experiment", "metric"]


def test_every_panel_has_a_query_on_a_known_datasource() -> None:
    for stem, model in grafana.dashboard_models().items():
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), stem
        for panel in panels(model):
            targets = panel.get("targets", [])
            assert targets, f"{stem}: panel {panel['title']!r} has no query"
            for target in targets:
                assert target["datasource"]["uid"] in DATASOURCE_UIDS
                assert (target.get("rawSql") or target.get("expr", "")).strip(), panel["title"]


def test_every_variable_a_query_uses_is_defined() -> None:
    for stem, model in grafana.dashboard_models().items():
        defined = set(grafana.variable_kinds(model)) | BUILTINS
        for query in grafana.panel_queries(model):
            text = SQL_MACROS.sub("", query.text)
            used = {a or b for a, b in re.findall(r"\$(\w+)|\$\{(\w+)", text)}
            assert used <= defined, f"{stem}: {query.panel} uses {used - defined}"


def test_sql_expansion_quotes_like_grafana() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    context = QueryContext(
        values={"run": ["it's"], "rank": ["0", "1"]},
        multi={"rank": True},
        time_to=moment,
        span=timedelta(minutes=5),
    )
    sql = "SELECT 1 WHERE run_id = '$run' AND rank IN ($rank) AND $__timeFilter(time)"
    assert expand_sql(sql, context) == (
        "SELECT 1 WHERE run_id = 'it''s' AND rank IN ('0','1') AND time BETWEEN "
        "'2026-01-02T02:59:05.000000Z' AND '2026-01-02T03:04:05.000000Z'"
    )
    assert expand_sql("$__timeFrom() $__timeTo()", context) == (
        "'2026-01-02T02:59:05.000000Z' '2026-01-02T03:04:05.000000Z'"
    )


def test_promql_expansion_joins_multi_values_as_a_regex() -> None:
    context = QueryContext(
        values={"run": ["r1"], "rank": ["0", "1"], "metric": ["train.loss"]},
        multi={"rank": True, "metric": True},
        interval=timedelta(seconds=30),
        scrape_interval=timedelta(seconds=15),
    )
    expr = 'x{run_id="$run", rank=~"$rank", metric=~"$metric"}[$__rate_interval]'
    assert expand_promql(expr, context) == (
        'x{run_id="r1", rank=~"(0|1)", metric=~"train\\\\.loss"}[1m]'
    )


def test_provisioned_datasources_are_the_pushed_ones() -> None:
    text = (DEPLOY / "grafana" / "provisioning" / "datasources" / "runstream.yml").read_text()
    provisioned = yaml.safe_load(text)["datasources"]
    source = grafana.PostgresSource.from_url(Settings().database_read_url.get_secret_value())
    pushed = grafana.datasources("http://127.0.0.1:19090", source)
    assert [d["uid"] for d in provisioned] == [d["uid"] for d in pushed]
    assert [d["type"] for d in provisioned] == [d["type"] for d in pushed]
    assert source.user == "runstream_reader"


# -- compose.yaml -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_has_every_service() -> None:
    services = set(compose()["services"])
    assert services >= {
        "kafka",
        "postgres",
        "prometheus",
        "alertmanager",
        "grafana",
        "persist",
        "export",
        "watchdog",
    }


def test_compose_mounts_and_builds_only_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file(), name
            assert (context / "pyproject.toml").is_file(), name


def test_compose_publishes_the_local_stack_ports() -> None:
    config = StackConfig()
    services = compose()["services"]
    published = {
        name: {int(p.split(":")[-2]) for p in service.get("ports", [])}
        for name, service in services.items()
    }
    assert config.kafka_port in published["kafka"]
    assert config.postgres_port in published["postgres"]
    assert config.prometheus_port in published["prometheus"]
    assert config.alertmanager_port in published["alertmanager"]
    assert int(config.exporter_address.rpartition(":")[2]) in published["export"]


def test_compose_service_environment_is_runstream_settings() -> None:
    known = {f"RUNSTREAM_{name.upper()}" for name in Settings.model_fields}
    services = compose()["services"]
    for name in ("persist", "export", "watchdog", "migrate"):
        env = services[name]["environment"]
        assert set(env) <= known, f"{name}: {set(env) - known}"
        assert env["RUNSTREAM_DATABASE_READ_URL"].startswith("postgresql://runstream_reader:")


def test_compose_prometheus_scrapes_the_jobs_the_rules_name() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {"runstream-export", "runstream-persist", "runstream-watchdog"} <= jobs
    template = (DEPLOY / "local" / "templates" / "prometheus.yml").read_text()
    for job in ("runstream-export", "runstream-persist", "runstream-watchdog"):
        assert f"job_name: {job}" in template


def test_compose_grafana_gets_the_provisioning_variables() -> None:
    grafana_env = compose()["services"]["grafana"]["environment"]
    text = "".join(p.read_text() for p in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"))
    for variable in set(re.findall(r"\$\{(\w+)\}", text)):
        assert variable in grafana_env, variable

"""Every query of every dashboard, run against the real Prometheus and PostgreSQL of the stack.

A run is seeded through the producer SDK (two ranks, params, tags, metrics, a text metric, a table
row, a log record, a status change) next to a completed run of the same experiment, and one
record that is not an event goes to the topic (a dead letter). Each panel's query is expanded the
way Grafana does (template variables, `$__rate_interval`, `$__timeFilter`…) and must return rows
or series of the expected shape: SQL columns by name, and every label its legend names.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy import grafana
from runstream.deploy.grafana import PanelQuery, QueryContext
from runstream.deploy.local import StackConfig, StackEndpoints
from runstream.producer import Run, start_run

STEPS = 60
SPAN = timedelta(minutes=30)

# SQL panel (or variable) → columns its rows must have. Every SQL query must be listed.
SQL_COLUMNS: dict[str, set[str]] = {
    "variable experiment": {"experiment"},
    "variable run": {"__value", "__text"},
    "variable metric": {"name"},
    "variable rank": {"rank"},
    "Status": {"status"},
    "Run": {"name", "experiment", "status", "started_at", "duration_seconds", "world_size"},
    "Params and tags": {"kind", "key", "value"},
    "$metric against step": {"step", "value"},
    "Latest values": {"metric", "rank", "step", "value", "min", "max"},
    "Ranks": {"rank", "status", "last_step", "heartbeat_age_seconds", "progress_age_seconds"},
    "Status changes": {"time", "rank", "state", "source"},
    "Text metrics": {"time", "name", "step", "value"},
    "Logs": {"time", "message", "level", "logger"},
    "Table rows": {"time", "table", "row"},
    "Runs by status": {"status", "runs"},
    "Runs": {"run_id", "name", "status", "duration_seconds", "last", "lowest", "highest"},
    "$metric: last value per run": {"run", "loss"},
}


@dataclass(frozen=True)
class Seeded:
    experiment: str
    live_run: str
    done_run: str


def _start(config: ProducerConfig, experiment: str, run_id: str, rank: int, **kw: Any) -> Run:
    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE")}
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    try:
        return start_run(experiment, run_id=run_id, config=config, **kw)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _train(run: Run) -> None:
    for step in range(STEPS):
        run.log_metrics({"loss": 2.0 / (step + 1) + run.rank, "accuracy": step / STEPS}, step=step)
        run.report_progress(expect_next_in=600)
    run.log_text("phase", "warmup done", step=10)
    run.log_row("eval", epoch=1, accuracy=0.91)
    run.log_record("INFO", "train", f"rank {run.rank} finished its epoch")
    assert run.flush(30.0)


def _poll(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 90.0) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
            await asyncio.sleep(1.0)

    asyncio.run(wait())


async def _true(url: str, sql: str, *args: object) -> bool:
    connection = await asyncpg.connect(url)
    try:
        return bool(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


async def _has_series(prometheus: str, query: str) -> bool:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{prometheus}/api/v1/query", params={"query": query})
    return bool(answer.json()["data"]["result"])


async def _value(prometheus: str, query: str) -> float:
    """The query's one value now (0 when it has no series yet)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{prometheus}/api/v1/query", params={"query": query})
    result = answer.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


async def _dead_letter(config: KafkaConfig) -> None:
    producer = AIOKafkaProducer(**config.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(config.topic, b"not a runstream event", key=b"dashboard-test")
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def spool() -> Iterator[Path]:
    """A spool folder of its own: pytest's numbered temp folders are pruned by other pytest
    sessions on a shared machine, and a spool must not vanish under a live run."""
    with tempfile.TemporaryDirectory(prefix="runstream-dashboards-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def seeded(stack: StackEndpoints, stack_config: StackConfig, spool: Path) -> Iterator[Seeded]:
    kafka = KafkaConfig(
        stack.bootstrap_servers, topic=stack_config.topic, dlq_topic=stack_config.dlq_topic
    )
    config = ProducerConfig(kafka=kafka, spool_dir=spool, heartbeat_interval=1.0)
    experiment = f"dashboards-{uuid.uuid4().hex[:8]}"
    live_id, done_id = f"live-{uuid.uuid4().hex[:8]}", f"done-{uuid.uuid4().hex[:8]}"
    params = {"lr": 0.01, "batch_size": 64}
    ranks = [
        _start(config, experiment, live_id, 0, name="live", params=params, tags={"team": "vision"})
    ]
    ranks.append(_start(config, experiment, live_id, 1))
    done = start_run(experiment, name="done", run_id=done_id, config=config, params=params)
    try:
        for run in [*ranks, done]:
            _train(run)
        ranks[0].set_status("running", reason="seeded for the dashboard tests")
        done.complete(30.0)
        dead_letters = "sum(runstream_consumer_dead_letters_total)"
        before = asyncio.run(_value(stack.prometheus_url, dead_letters))
        asyncio.run(_dead_letter(kafka))
        reader, prometheus = stack.reader_url, stack.prometheus_url
        every_metric = 2 * 2 * STEPS + 2 * STEPS
        metrics = "SELECT count(*) = $2 FROM metrics WHERE run_id = ANY($1)"
        _poll(
            "the metrics in PostgreSQL",
            partial(_true, reader, metrics, [live_id, done_id], every_metric),
        )
        for table in ("log_records", "table_rows", "text_metrics", "status_events"):
            exists = f"SELECT count(*) > 0 FROM {table} WHERE run_id = $1"
            _poll(f"{table} of {live_id}", partial(_true, reader, exists, live_id))
        completed = "SELECT count(*) > 0 FROM runs WHERE run_id = $1 AND status = 'completed'"
        _poll("the completed run", partial(_true, reader, completed, done_id))
        for query in (
            f'runstream_metric_value{{run_id="{live_id}"}}',
            f'run_rank:runstream_run_step:deriv2m{{run_id="{live_id}"}}',
            f'run:runstream_run_step:deriv2m{{run_id="{live_id}"}}',
            "runstream_consumer_batch_write_seconds_bucket",
        ):
            _poll(query, partial(_has_series, prometheus, query))
        # This session's dead letter, not one an earlier session left behind.
        above = f"{dead_letters} > {before}"
        _poll(above, partial(_has_series, prometheus, above))
        yield Seeded(experiment, live_id, done_id)
    finally:
        for run in [*ranks, done]:
            run.close(10.0)


# -- running the queries ------------------------------------------------------------------------


def _context(model: dict[str, Any], values: dict[str, list[str]]) -> QueryContext:
    return QueryContext(values=values, multi=grafana.variable_kinds(model), span=SPAN)


async def _run_sql(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


def _check_sql(url: str, query: PanelQuery, context: QueryContext) -> str | None:
    expected = SQL_COLUMNS.get(query.panel)
    if expected is None:
        return f"{query.panel}: no expected columns listed in SQL_COLUMNS"
    sql = grafana.expand_sql(query.text, context)
    rows = asyncio.run(_run_sql(url, sql))
    if not rows:
        return f"{query.panel}: no rows from\n{sql}"
    missing = expected - set(rows[0].keys())
    return f"{query.panel}: missing columns {missing}" if missing else None


def _check_promql(url: str, query: PanelQuery, context: QueryContext, legend: str) -> str | None:
    expr = grafana.expand_promql(query.text, context)
    end = time.time()
    params: dict[str, Any] = {"query": expr, "start": end - 600, "end": end, "step": "15s"}
    answer = httpx.get(f"{url}/api/v1/query_range", params=params, timeout=30)
    if answer.status_code != 200:
        return f"{query.panel}: Prometheus answered {answer.status_code}: {answer.text}"
    result = answer.json()["data"]["result"]
    if not result or not all(series["values"] for series in result):
        return f"{query.panel}: no series from {expr}"
    wanted = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    for series in result:
        if not wanted <= set(series["metric"]):
            return f"{query.panel}: series {series['metric']} lack legend labels {wanted}"
    return None


def _check_dashboard(stem: str, values: dict[str, list[str]], stack: StackEndpoints) -> None:
    model = grafana.dashboard_models()[stem]
    context = _context(model, values)
    legends = _legends(model)
    repeats = _repeats(model)
    problems = []
    for query in grafana.panel_queries(model):
        contexts = [context]
        if query.panel in repeats:  # a repeated panel runs once per value, each alone
            name = repeats[query.panel]
            contexts = [_context(model, {**values, name: [v]}) for v in values[name]]
        for each in contexts:
            if query.datasource == "prometheus":
                legend = legends.get((query.panel, query.text), "")
                problems.append(_check_promql(stack.prometheus_url, query, each, legend))
            else:
                problems.append(_check_sql(stack.reader_url, query, each))
    failures = [p for p in problems if p]
    assert not failures, "\n".join(failures)


def _legends(model: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (panel["title"], target.get("expr", "")): target.get("legendFormat", "")
        for panel in model["panels"]
        for target in panel.get("targets", [])
    }


def _repeats(model: dict[str, Any]) -> dict[str, str]:
    return {panel["title"]: panel["repeat"] for panel in model["panels"] if panel.get("repeat")}


def test_training_run_panels_return_data(seeded: Seeded, stack: StackEndpoints) -> None:
    values = {
        "experiment": [seeded.experiment],
        "run": [seeded.live_run],
        "metric": ["accuracy", "loss"],
        "rank": ["0", "1"],
    }
    _check_dashboard("training-run", values, stack)


def test_experiment_overview_panels_return_data(seeded: Seeded, stack: StackEndpoints) -> None:
    values = {"experiment": [seeded.experiment], "metric": ["loss"]}
    _check_dashboard("experiment-overview", values, stack)
    model = grafana.dashboard_models()["experiment-overview"]
    runs = next(q for q in grafana.panel_queries(model) if q.panel == "Runs")
    sql = grafana.expand_sql(runs.text, _context(model, values))
    rows = asyncio.run(_run_sql(stack.reader_url, sql))
    by_run = {row["run_id"]: row for row in rows}
    assert set(by_run) == {seeded.live_run, seeded.done_run}
    assert by_run[seeded.done_run]["status"] == "completed"
    assert by_run[seeded.done_run]["last"] == pytest.approx(2.0 / STEPS)
    assert by_run[seeded.done_run]["lowest"] == pytest.approx(2.0 / STEPS)
    assert by_run[seeded.done_run]["highest"] == pytest.approx(2.0)


def test_pipeline_health_panels_return_data(seeded: Seeded, stack: StackEndpoints) -> None:
    _check_dashboard("pipeline-health", {}, stack)


def test_variables_offer_the_seeded_run(seeded: Seeded, stack: StackEndpoints) -> None:
    model = grafana.dashboard_models()["training-run"]
    values = {
        "experiment": [seeded.experiment],
        "run": [seeded.live_run],
        "metric": ["loss"],
        "rank": ["0"],
    }
    context = _context(model, values)
    options = {
        q.panel: asyncio.run(_run_sql(stack.reader_url, grafana.expand_sql(q.text, context)))
        for q in grafana.panel_queries(model)
        if q.panel.startswith("variable ")
    }
    assert seeded.experiment in [r["experiment"] for r in options["variable experiment"]]
    # Newest first: the done run started after the live one.
    assert [r["__value"] for r in options["variable run"]] == [seeded.done_run, seeded.live_run]
    assert [r["name"] for r in options["variable metric"]] == ["accuracy", "loss"]
    assert [r["rank"] for r in options["variable rank"]] == [0, 1]

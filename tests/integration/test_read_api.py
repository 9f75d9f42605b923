"""The Python read API against the stack: what it returns is what PostgreSQL holds.

One run of four ranks logs 100,000 values (25,000 per rank, with NaN, ±Inf and a repeated step)
through the SDK; the stack's persist service stores them; the read API reads them back as the
reader role and every row is checked against SQL.
"""

from __future__ import annotations

import math
import struct
import uuid
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from runstream import AmbiguousRunError, ConfigError, NotFoundError
from runstream._config import DatabaseConfig, KafkaConfig, ProducerConfig
from runstream.consumers.read import AsyncClient, Client
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.integration.support import Rows, wait_for_run

RANKS = 4
STEPS = 12_500  # two metrics per rank and step: 100,000 values
SQL = (
    "SELECT name, step, rank, time, value FROM metrics WHERE run_id = $1 "
    "ORDER BY name, step, rank, time, producer_id, seq, idx"
)


def value(rank: int, step: int) -> float:
    special = {0: math.nan, 1: math.inf, 2: -math.inf, 3: -0.0}
    return special.get(step, 1 / (step + 1) + rank / 7)


def bits(number: float) -> bytes:
    return b"nan" if math.isnan(number) else struct.pack("<d", number)


def same_mean(got: float, want: float) -> bool:
    """Equal, to the last bits a different summation order may change (PostgreSQL's avg adds
    in scan order, which two plans of one query need not share)."""
    if math.isnan(want) or math.isinf(want):
        return bits(got) == bits(want)
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300)


def key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    name, step, rank, time, number = row
    return name, step, rank, time, bits(number)


def producer_config(stack: StackEndpoints, spool: Path) -> ProducerConfig:
    return ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=spool
    )


@pytest.fixture(scope="module")
def big_run(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A completed run: 4 ranks, 12,500 steps of loss and acc each, and a repeated step."""
    run_id = f"read-{uuid.uuid4().hex[:12]}"
    config = producer_config(stack, tmp_path_factory.mktemp("spool"))
    ranks = [
        Run(RunContext(run_id, "read-api", rank=r, world_size=RANKS), config, params={"lr": 0.1})
        for r in range(RANKS)
    ]
    for step in range(STEPS):
        for rank, run in enumerate(ranks):
            run.log_metrics({"loss": value(rank, step), "acc": step / STEPS}, step=step)
    ranks[0].log("loss", 42.0, step=5)  # a second genuine value at step 5: both are kept
    for run in ranks:
        run.complete(timeout=60)
    wait_for_run(Rows(stack.reader_url), run_id, metrics=2 * RANKS * STEPS + 1, within=180)
    return run_id


@pytest.fixture(scope="module")
def client(stack: StackEndpoints) -> Any:
    with Client(DatabaseConfig(url=stack.reader_url)) as opened:
        yield opened


def test_pandas_and_arrow_hold_exactly_the_rows_sql_holds(
    big_run: str, client: Client, db: Rows
) -> None:
    expected = [key(tuple(r)) for r in db.fetch(SQL, big_run)]
    assert len(expected) == 2 * RANKS * STEPS + 1
    frame = client.metrics(big_run)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["run_id", "name", "step", "rank", "time", "value"]
    assert set(frame["run_id"]) == {big_run}
    from_pandas = sorted(
        key((n, int(s), int(r), t.to_pydatetime(), float(v)))
        for n, s, r, t, v in frame[["name", "step", "rank", "time", "value"]].itertuples(
            index=False
        )
    )
    assert from_pandas == sorted(expected)
    table = client.metrics(big_run, frame="arrow")
    assert isinstance(table, pa.Table)
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    columns = [table.column(c).to_pylist() for c in ("name", "step", "rank", "time", "value")]
    assert sorted(key(row) for row in zip(*columns, strict=True)) == sorted(expected)


def test_one_metric_of_one_rank_is_in_step_order_and_polars_agrees(
    big_run: str, client: Client
) -> None:
    frame = client.metrics(big_run[:12], "loss", rank=2, frame="polars")
    assert isinstance(frame, pl.DataFrame)
    assert frame["step"].to_list() == list(range(STEPS))
    assert [bits(v) for v in frame["value"].to_list()] == [bits(value(2, s)) for s in range(STEPS)]


def test_aggregation_across_ranks_matches_sql(big_run: str, client: Client, db: Rows) -> None:
    expected = db.fetch(
        "SELECT name, step, min(value), avg(value), max(value), count(DISTINCT rank) "
        "FROM metrics WHERE run_id = $1 GROUP BY name, step ORDER BY name, step",
        big_run,
    )
    frame = client.metrics(big_run, ["loss", "acc"], aggregate=True, frame="arrow")
    assert frame.column_names == ["run_id", "name", "step", "min", "mean", "max", "ranks"]
    got = list(zip(*(frame.column(c).to_pylist() for c in frame.column_names[1:]), strict=True))
    assert len(got) == len(expected) == 2 * STEPS
    for row, want in zip(got, expected, strict=True):
        assert row[:2] == (want[0], want[1])
        assert (bits(row[2]), bits(row[4])) == (bits(want[2]), bits(want[4]))  # min, max exact
        assert same_mean(row[3], want[3])
        assert row[5] == want[5] == RANKS
    step5 = next(r for r in got if r[:2] == ("loss", 5))
    assert step5[4] == 42.0  # the repeated value counts


def test_runs_filter_by_experiment_status_params_and_tags(big_run: str, client: Client) -> None:
    found = client.runs(experiment="read-api", status="completed", params={"lr": 0.1})
    assert big_run in [r["run_id"] for r in found]
    other_lr = client.runs(experiment="read-api", params={"lr": 0.2}, limit=1000)
    assert big_run not in [r["run_id"] for r in other_lr]
    assert big_run not in [r["run_id"] for r in client.runs(tags={"team": "nobody"}, limit=1000)]
    one = client.run(big_run)
    assert (one["status"], one["world_size"], one["params"]) == ("completed", 4, {"lr": "0.1"})
    assert [(r["rank"], r["status"]) for r in one["ranks"]] == [(r, "completed") for r in range(4)]


def test_get_metrics_has_azures_shape(
    stack: StackEndpoints, client: Client, tmp_path: Path
) -> None:
    run_id = f"azure-{uuid.uuid4().hex[:12]}"
    config = producer_config(stack, tmp_path / "spool")
    figure = plt.figure()
    plt.plot([1, 2, 3])
    with Run(RunContext(run_id, "read-api"), config) as run:
        run.log("accuracy", 0.9)
        run.log("loss", 0.5)
        run.log("loss", 0.25)
        run.log_list("accuracies", [0.6, 0.7, 0.87])
        run.log("note", "first try")
        run.log_row("single", x=1, y=0.4)
        run.log_row("sinusoid", x=1, sinx=0.84)
        run.log_row("sinusoid", x=2, sinx=0.91)
        run.log_table("y = x^2", {"x": [1, 2, 3], "y": [1, 4, 9]})
        run.log_image("curve", plot=figure)
    plt.close(figure)
    wait_for_run(Rows(stack.reader_url), run_id, metrics=6)
    metrics = client.get_metrics(run_id)
    assert metrics == {
        "accuracy": 0.9,
        "accuracies": [0.6, 0.7, 0.87],
        "loss": [0.5, 0.25],
        "note": "first try",
        "single": {"x": 1, "y": 0.4},
        "sinusoid": {"x": [1, 2], "sinx": [0.84, 0.91]},
        "y = x^2": {"x": [1, 2, 3], "y": [1, 4, 9]},
        "curve": f"runstream://{run_id}/files/curve",
    }
    assert client.get_metrics(run_id, "loss") == {"loss": [0.5, 0.25]}
    assert client.image(run_id, "curve").startswith(b"\x89PNG\r\n\x1a\n")
    rows = client.table(run_id, "sinusoid")
    assert rows[["x", "sinx"]].to_dict("records") == [
        {"x": 1, "sinx": 0.84},
        {"x": 2, "sinx": 0.91},
    ]


def test_what_is_not_there_is_a_clear_error(big_run: str, client: Client) -> None:
    with pytest.raises(NotFoundError, match="no run 'no-such-run'"):
        client.metrics("no-such-run")
    with pytest.raises(NotFoundError, match="no table 'nope'"):
        client.table(big_run, "nope")
    with pytest.raises(NotFoundError, match="no file 'nope'"):
        client.file(big_run, "nope")
    with pytest.raises(AmbiguousRunError):
        client.run("")  # every run starts with the empty prefix
    with pytest.raises(ConfigError, match="frame='excel'"):
        client.metrics(big_run, frame="excel")


async def test_the_async_client_reads_the_same(big_run: str, stack: StackEndpoints) -> None:
    async with AsyncClient(DatabaseConfig(url=stack.reader_url)) as client:
        frame = await client.metrics(big_run, "acc", rank=0, frame="arrow")
    assert frame.column("step").to_pylist() == list(range(STEPS))

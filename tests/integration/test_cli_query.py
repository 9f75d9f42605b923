"""`runstream runs`, `show`, `metrics` and `plot` as a user runs them, against the stack.

One run of two ranks is logged through the SDK and stored by the stack's persist service; the
commands then read it back as the reader role.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import matplotlib.image
import numpy as np
import pyarrow.parquet as pq
import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.ports import REFUSED

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]
STEPS = 300
SPECIAL = {0: 0.1, 1: 1e-300, 2: -0.0, 3: math.inf, 4: math.nan, 5: 2.0**-1074}


def value(rank: int, step: int) -> float:
    """What rank `rank` logs as `loss` at `step`: a curve, with awkward doubles at the start."""
    return SPECIAL.get(step, math.exp(-step / 80) + rank * 0.05 + 1 / 3)


@pytest.fixture(scope="module")
def logged_run(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A completed run of two ranks with params, tags, `loss` on both ranks and `lr` on rank 0."""
    run_id = f"query-{uuid.uuid4().hex[:12]}"
    spool = tmp_path_factory.mktemp("spool")
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=spool
    )
    ranks = [
        Run(
            RunContext(run_id=run_id, experiment="cli-query", rank=r, world_size=2, name="curves"),
            config,
            params={"lr": 0.1} if r == 0 else None,
            tags={"team": "vision"} if r == 0 else None,
        )
        for r in range(2)
    ]
    for step in range(STEPS):
        for rank, run in enumerate(ranks):
            run.log("loss", value(rank, step), step=step)
        ranks[0].log("lr", 0.1 / (1 + step), step=step)
    for run in ranks:
        run.complete(timeout=30)
    asyncio.run(wait_until_stored(stack.reader_url, run_id, rows=3 * STEPS))
    return run_id


async def wait_until_stored(url: str, run_id: str, rows: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = await connection.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
            count = await connection.fetchval(
                "SELECT count(*) FROM metrics WHERE run_id = $1", run_id
            )
            if status == "completed" and count >= rows:
                return
            await asyncio.sleep(0.2)
        pytest.fail(f"persist did not store run {run_id}")
    finally:
        await connection.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNSTREAM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def test_runs_lists_the_run_as_json_and_as_a_table(
    logged_run: str, run_env: dict[str, str]
) -> None:
    listed = json.loads(cli(run_env, "runs", "-e", "cli-query", "--json").stdout)
    mine = next(r for r in listed if r["run_id"] == logged_run)
    assert (mine["status"], mine["world_size"], mine["name"]) == ("completed", 2, "curves")
    table = cli(run_env, "runs", "-e", "cli-query", "--status", "completed")
    assert table.returncode == 0
    assert logged_run[:12] in table.stdout
    bad = cli(run_env, "runs", "--status", "exploded")
    assert bad.returncode == 2


def test_show_gives_params_tags_and_a_summary_per_metric(
    logged_run: str, run_env: dict[str, str]
) -> None:
    shown = json.loads(cli(run_env, "show", logged_run[:14], "--json").stdout)
    assert shown["run"]["params"] == {"lr": "0.1"}
    assert shown["run"]["tags"] == {"team": "vision"}
    loss = next(m for m in shown["metrics"] if m["name"] == "loss")
    assert (loss["count"], loss["ranks"], loss["step"]) == (2 * STEPS, 2, STEPS - 1)
    assert [r["status"] for r in shown["ranks"]] == ["completed", "completed"]
    page = cli(run_env, "show", logged_run)
    assert page.returncode == 0
    assert "vision" in page.stdout
    assert "loss" in page.stdout


def test_an_unknown_run_id_exits_3_with_close_matches(
    logged_run: str, run_env: dict[str, str]
) -> None:
    typo = logged_run[:-1] + ("x" if logged_run[-1] != "x" else "y")
    done = cli(run_env, "show", typo)
    assert done.returncode == 3
    assert f"no run {typo!r}" in done.stderr
    assert logged_run in done.stderr


def test_metrics_parquet_round_trips_exactly(
    logged_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "loss.parquet"
    done = cli(run_env, "metrics", logged_run, "loss", "--format", "parquet", "-o", str(path))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(path)
    rows = list(
        zip(*(table.column(c).to_pylist() for c in ("name", "step", "rank", "value")), strict=True)
    )
    expected = [("loss", s, r, value(r, s)) for s in range(STEPS) for r in range(2)]
    assert sorted(r[:3] for r in rows) == sorted(e[:3] for e in expected)
    by_key = {r[:3]: r[3] for r in rows}
    assert all(same_float(by_key[e[:3]], e[3]) for e in expected)
    assert not path.with_name("loss.parquet.part").exists()


def test_metrics_csv_of_one_rank_is_in_step_order(logged_run: str, run_env: dict[str, str]) -> None:
    done = cli(run_env, "metrics", logged_run, "--rank", "1")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["name"] for r in rows} == {"loss"}
    assert [int(r["step"]) for r in rows] == list(range(STEPS))
    assert all(same_float(float(r["value"]), value(1, int(r["step"]))) for r in rows)


def test_metrics_names_an_unknown_metric(logged_run: str, run_env: dict[str, str]) -> None:
    done = cli(run_env, "metrics", logged_run, "los")
    assert done.returncode == 3
    assert "Did you mean: loss" in done.stderr


def test_plot_writes_a_png_that_is_not_blank(
    logged_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "curve.png"
    done = cli(run_env, "plot", logged_run, "--metric", "loss", "-o", str(path))
    assert done.returncode == 0, done.stderr
    pixels = np.asarray(matplotlib.image.imread(path))[..., :3]
    assert pixels.shape[0] > 100
    assert pixels.shape[1] > 100
    coloured = np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2  # the curves, not black or white
    assert coloured.sum() > 200


def test_a_database_that_does_not_answer_is_named_without_its_password(
    run_env: dict[str, str],
) -> None:
    url = f"postgresql://runstream_reader:do-not-print-me@{REFUSED}/runstream"
    done = cli(run_env | {"RUNSTREAM_DATABASE_READ_URL": url}, "runs")
    assert done.returncode == 4
    assert f"runstream_reader@{REFUSED}/runstream" in done.stderr
    assert "do-not-print-me" not in done.stderr + done.stdout


def test_a_refused_login_exits_4_and_names_the_database_without_the_password(
    run_env: dict[str, str], stack: StackEndpoints
) -> None:
    parts = urlsplit(stack.reader_url)
    wrong = parts._replace(
        netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"
    )
    done = cli(run_env | {"RUNSTREAM_DATABASE_READ_URL": urlunsplit(wrong)}, "runs")
    assert done.returncode == 4, done.stderr
    assert f"{parts.username}@{parts.hostname}:{parts.port}{parts.path}" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    right = cli(run_env, "runs", "--limit", "1")
    assert right.returncode == 0, right.stderr  # the same server takes the right password

"""`runstream runs delete` and `runstream experiments delete` against the stack's PostgreSQL.

Runs with rows in every kind of table are logged through the SDK and stored by the stack's
persist service; each deletion must remove every row of the runs it names, in every table that
holds run rows, and nothing of any other run (counted by SQL before and after).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from runstream.producer.logging import RunLogHandler

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]
RUN_TABLES = """
SELECT c.relname AS table_name FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition AND a.attname = 'run_id'
"""
VALUES = "SELECT count(*) FROM metrics WHERE run_id = $1"
Counts = dict[str, int]


def log_a_run(config: ProducerConfig, run_id: str, experiment: str, files: Path) -> None:
    """One finished run with metrics, text, a table, a file, a log record, params and tags."""
    picture = files / f"{run_id}.txt"
    picture.write_text("notes")
    run = Run(RunContext(run_id=run_id, experiment=experiment), config, params={"lr": 0.1})
    for step in range(50):
        run.log("loss", 1 / (step + 1), step=step)
    run.log("phase", "warm-up")
    run.log_row("fits", alpha=0.5, mse=3.2)
    run.upload_file("notes", picture)
    run.tag("team", "vision")
    logger = logging.getLogger(f"test.delete.{run_id}")
    logger.addHandler(RunLogHandler(run))
    logger.warning("a log line")
    run.complete(timeout=30)


async def counts_of(url: str, run_ids: list[str]) -> dict[str, Counts]:
    """Rows per table of each run, and the `experiments` rows by name."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r["table_name"] for r in await conn.fetch(RUN_TABLES)]
        result: dict[str, Counts] = {}
        for run_id in run_ids:
            result[run_id] = {
                table: await conn.fetchval(
                    f'SELECT count(*) FROM "{table}" WHERE run_id = $1', run_id
                )
                for table in tables
            }
        return result
    finally:
        await conn.close()


async def values_of(url: str, run_ids: list[str]) -> dict[str, int]:
    """Metric values stored of each run (the `metrics` view over the chunks)."""
    conn = await asyncpg.connect(url)
    try:
        return {run_id: await conn.fetchval(VALUES, run_id) for run_id in run_ids}
    finally:
        await conn.close()


async def experiment_exists(url: str, name: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM experiments WHERE name = $1", name))
    finally:
        await conn.close()


def wait_stored(url: str, run_ids: list[str]) -> dict[str, Counts]:
    """The runs' counts once each is completed with every kind of row persisted."""
    kinds = ("metric_chunks", "text_metrics", "table_rows", "files", "log_records", "metric_latest")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = asyncio.run(counts_of(url, run_ids))
        values = asyncio.run(values_of(url, run_ids))
        if all(values[r] == 50 and all(counts[r][k] for k in kinds) for r in run_ids):
            return counts
        time.sleep(0.3)
    pytest.fail(f"persist did not store {run_ids}: {counts}")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNSTREAM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def three_runs(stack: StackEndpoints, tmp_path: Path) -> tuple[str, list[str]]:
    """An experiment of two runs, and one run of another experiment."""
    experiment = f"delete-{uuid.uuid4().hex[:8]}"
    runs = [f"delete-{uuid.uuid4().hex}" for _ in range(3)]
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=tmp_path / "spool"
    )
    for n, run_id in enumerate(runs):
        log_a_run(config, run_id, experiment if n < 2 else f"{experiment}-other", tmp_path)
    return experiment, runs


def test_runs_delete_removes_every_row_of_the_run_and_nothing_else(
    three_runs: tuple[str, list[str]], stack: StackEndpoints, run_env: dict[str, str]
) -> None:
    _, runs = three_runs
    before = wait_stored(stack.admin_url, runs)
    done = cli(run_env, "runs", "delete", runs[0], "--yes")
    assert done.returncode == 0, done.stderr
    total = sum(before[runs[0]].values())
    assert f"deleted 1 run, {total:,} rows, 50 metric values" in done.stdout
    after = asyncio.run(counts_of(stack.admin_url, runs))
    left = asyncio.run(values_of(stack.admin_url, runs))
    assert left == {runs[0]: 0, runs[1]: 50, runs[2]: 50}
    assert set(after[runs[0]].values()) == {0}
    assert after[runs[1]] == before[runs[1]]
    assert after[runs[2]] == before[runs[2]]


def test_experiments_delete_removes_its_runs_and_itself_only(
    three_runs: tuple[str, list[str]], stack: StackEndpoints, run_env: dict[str, str]
) -> None:
    experiment, runs = three_runs
    before = wait_stored(stack.admin_url, runs)
    done = cli(run_env, "experiments", "delete", experiment, "--yes")
    assert done.returncode == 0, done.stderr
    rows = sum(before[runs[0]].values()) + sum(before[runs[1]].values()) + 1
    assert f"deleted 2 runs, {rows:,} rows, 100 metric values" in done.stdout
    after = asyncio.run(counts_of(stack.admin_url, runs))
    assert set(after[runs[0]].values()) == set(after[runs[1]].values()) == {0}
    assert after[runs[2]] == before[runs[2]]
    assert not asyncio.run(experiment_exists(stack.admin_url, experiment))
    assert asyncio.run(experiment_exists(stack.admin_url, f"{experiment}-other"))


def test_a_refused_deletion_deletes_nothing(
    three_runs: tuple[str, list[str]], stack: StackEndpoints, run_env: dict[str, str]
) -> None:
    _, runs = three_runs
    before = wait_stored(stack.admin_url, runs)
    unknown = cli(run_env, "runs", "delete", runs[0], "no-such-run", "--yes")
    assert unknown.returncode == 3
    assert "no such run: no-such-run" in unknown.stderr
    unconfirmed = cli(run_env, "runs", "delete", runs[0])  # stdin is not a terminal
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    assert asyncio.run(counts_of(stack.admin_url, runs)) == before


def test_a_live_run_is_deleted_only_with_force(
    stack: StackEndpoints, run_env: dict[str, str], tmp_path: Path
) -> None:
    run_id = f"delete-live-{uuid.uuid4().hex}"
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=tmp_path / "spool"
    )
    run = Run(RunContext(run_id=run_id, experiment="delete-live"), config)
    try:
        run.log("loss", 1.0, step=0)
        assert run.flush(timeout=30)
        deadline = time.monotonic() + 30
        while not asyncio.run(values_of(stack.admin_url, [run_id]))[run_id]:
            assert time.monotonic() < deadline, "persist did not store the live run"
            time.sleep(0.2)
        refused = cli(run_env, "runs", "delete", run_id, "--yes")
        assert refused.returncode == 2
        assert "not finished" in refused.stderr
        forced = cli(run_env, "runs", "delete", run_id, "--yes", "--force")
        assert forced.returncode == 0, forced.stderr
        assert set(asyncio.run(counts_of(stack.admin_url, [run_id]))[run_id].values()) == {0}
    finally:
        run.close(timeout=10)

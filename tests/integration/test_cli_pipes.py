"""The query commands behave like Unix tools in a pipeline: whole values, quiet on a closed pipe.

Each command runs in a real shell pipeline (`| cat`, `| head`), so its stdout is a pipe, as in a
user's script, and the reader may close it early.
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.integration.test_cli_query import wait_until_stored

RUNSTREAM = shlex.join([sys.executable, "-m", "runstream.cli"])
STEPS = 20_000  # a CSV of ~0.5 MB: far more than a pipe buffers, so `head` closes it mid-write
EXPERIMENT = f"pipes-with-a-long-experiment-name-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def long_run(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A completed run whose id, experiment and name are longer than a narrow table shows."""
    run_id = f"pipes-{uuid.uuid4().hex}"
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers),
        spool_dir=tmp_path_factory.mktemp("spool"),
    )
    context = RunContext(run_id=run_id, experiment=EXPERIMENT, name="a-run-name-of-thirty-chars")
    run = Run(context, config)
    for step in range(STEPS):
        run.log("loss", 1.0 / (step + 1), step=step)
    run.complete(timeout=60)
    asyncio.run(wait_until_stored(stack.reader_url, run_id, rows=STEPS))
    return run_id


def pipeline(
    env: dict[str, str], command: str, reader: str, tmp_path: Path
) -> tuple[str, str, int]:
    """stdout of `runstream COMMAND | READER`, runstream's own stderr and exit status."""
    errors = tmp_path / "stderr"
    script = f"{RUNSTREAM} {command} 2>{errors} | {reader}; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout, errors.read_text(), done.returncode


def test_runs_piped_prints_whole_ids_statuses_and_names(
    long_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    out, err, status = pipeline(run_env, f"runs -e {EXPERIMENT} --limit 3", "cat", tmp_path)
    assert (status, err) == (0, "")
    row = next(line for line in out.splitlines() if long_run in line)
    assert row.split()[:4] == [long_run, EXPERIMENT, "a-run-name-of-thirty-chars", "completed"]
    assert "…" not in out


def test_show_piped_prints_the_whole_run_id(
    long_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    out, err, status = pipeline(run_env, f"show {long_run}", "cat", tmp_path)
    assert (status, err) == (0, "")
    assert long_run in out.split()
    assert EXPERIMENT in out.split()


def test_metrics_into_head_ends_quietly_when_head_closes_the_pipe(
    long_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    out, err, status = pipeline(run_env, f"metrics {long_run} -f csv", "head -1", tmp_path)
    assert out == "name,step,rank,time,value\n"
    assert err == ""
    assert status == 141  # 128 + SIGPIPE, as a Unix tool ends on a closed pipe

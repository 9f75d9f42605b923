"""`runstream run` without services: the broker address is a closed port, so everything the
launcher sends stays in its spool, where the test reads it back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstream import ValidationError
from runstream._config import KafkaConfig, ProducerConfig
from runstream.cli._launch import ANNOUNCE_TIMEOUT, child_env
from runstream.producer import Run, RunContext
from runstream.schemas import EventRecord, LogRecord, RankFinished, Status
from tests.ports import REFUSED, blackholed
from tests.spooled import bodies
from tests.spooled import spooled_events as spooled

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


def spooled_events(spool: Path) -> list[EventRecord]:
    return sorted(spooled(spool), key=lambda e: e.time_us)


@pytest.fixture
def offline(tmp_path: Path) -> ProducerConfig:
    return ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path / "spool"
    )


def test_set_status_sends_the_whole_run_status_and_ends_the_handle(
    offline: ProducerConfig,
) -> None:
    run = Run(RunContext(run_id="launched", experiment="unit"), offline)
    finished = []
    run.set_status("running", "started", source="launcher")
    finished.append(run.finished)
    run.set_status("failed", "exited with code 3", 3, source="launcher")
    finished.append(run.finished)
    assert finished == [None, "failed"]
    run.close(timeout=0.2)
    events = spooled_events(offline.spool_dir)
    statuses = bodies(events, Status)
    assert [(s.state, s.exit_code, s.source) for s in statuses] == [
        ("running", None, "launcher"),
        ("failed", 3, "launcher"),
    ]
    assert bodies(events, RankFinished) == []


def test_set_status_refuses_unknown_states(offline: ProducerConfig) -> None:
    run = Run(RunContext(run_id="launched", experiment="unit"), offline)
    with pytest.raises(ValidationError, match="state"):
        run.set_status("exploded")
    run.close(timeout=0.2)


def test_the_command_gets_the_run_context_and_unbuffered_python() -> None:
    context = RunContext(run_id="r-1", experiment="sweep", name="ridge")
    env = child_env(context, {"PATH": "/bin", "RUNSTREAM_RUN_ID": "stale"})
    assert env["RUNSTREAM_RUN_ID"] == "r-1"
    assert env["RUNSTREAM_EXPERIMENT"] == "sweep"
    assert env["RUNSTREAM_RUN_NAME"] == "ridge"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == "/bin"
    assert child_env(context, {"PYTHONUNBUFFERED": ""})["PYTHONUNBUFFERED"] == ""


def test_with_kafka_away_the_launcher_still_exits_like_its_command_and_keeps_the_status(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    env = {
        **os.environ,
        "RUNSTREAM_BOOTSTRAP_SERVERS": REFUSED,
        "RUNSTREAM_SPOOL_DIR": str(spool),
        "RUNSTREAM_CLOSE_TIMEOUT": "0.2",
    }
    child = [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"]
    done = subprocess.run(
        [*RUNSTREAM, "run", "--run-id", "unit-launch", "-e", "unit", "--", *child],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert f"Kafka at {REFUSED}" in done.stderr
    assert "runstream sync" in done.stderr
    events = spooled_events(spool)
    final = bodies(events, Status)[-1]
    assert (final.state, final.exit_code, final.source) == ("failed", 3, "launcher")
    lines = [(b.logger, b.message) for b in bodies(events, LogRecord)]
    assert lines == [("stdout", "bye")]


def test_with_kafka_silent_the_launcher_waits_its_announce_timeout_then_runs_the_command(
    tmp_path: Path,
) -> None:
    """A broker that accepts connections and never answers (not a refused port): the launcher
    says so after ANNOUNCE_TIMEOUT and still starts the command."""
    with blackholed() as address:
        env = {
            **os.environ,
            "RUNSTREAM_BOOTSTRAP_SERVERS": address,
            "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool"),
            "RUNSTREAM_CLOSE_TIMEOUT": "0.2",
        }
        child = [sys.executable, "-c", "import time; print(time.monotonic())"]
        started = time.monotonic()
        done = subprocess.run(
            [*RUNSTREAM, "run", "--run-id", "unit-silent", "-e", "unit", "--show-output", "--",
             *child],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert f"Kafka at {address} has not answered within {ANNOUNCE_TIMEOUT:g}s" in said, said
    command_started = float(done.stdout.strip().splitlines()[-1])
    assert ANNOUNCE_TIMEOUT <= command_started - started < ANNOUNCE_TIMEOUT + 5.0

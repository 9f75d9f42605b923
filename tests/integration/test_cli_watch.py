"""`runstream watch` as a user runs it: in a pseudo-terminal, against the real stack."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.cli import _reads
from runstream.cli._watchview import Snapshot, take_snapshot
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.integration.support import Rows

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")


@pytest.fixture
def run(stack: StackEndpoints, tmp_path: Path) -> Iterator[Run]:
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=tmp_path / "spool"
    )
    handle = Run(
        RunContext(run_id=f"watch-{uuid.uuid4().hex[:12]}", experiment="cli-tests"), config
    )
    yield handle
    handle.close(timeout=10)


class Terminal:
    """A command in a pseudo-terminal of 120x40; `expect` reads its screen output."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self._fd, tty = os.openpty()
        fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        terminal_env = env | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
        self.process = subprocess.Popen(
            command, env=terminal_env, stdin=tty, stdout=tty, stderr=tty, start_new_session=True
        )
        os.close(tty)
        self.seen = b""

    def expect(self, text: str, within: float = 60) -> None:
        """Read until `text` shows (escape sequences removed); fail after `within` seconds."""
        deadline = time.monotonic() + within
        while text.encode() not in _ESCAPES.sub(b"", self.seen):
            if time.monotonic() > deadline:
                shown = _ESCAPES.sub(b"", self.seen)[-2000:].decode(errors="replace")
                pytest.fail(f"{text!r} not shown within {within}s; the screen ends with:\n{shown}")
            self._read()
            time.sleep(0.05)

    def _read(self) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            while chunk := os.read(self._fd, 65536):
                self.seen += chunk
        except (BlockingIOError, OSError):
            pass

    def exit_code(self, within: float = 60) -> int:
        """Wait for the command to end, reading what it still shows."""
        deadline = time.monotonic() + within
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read()
            time.sleep(0.05)
        self._read()
        return self.process.wait(timeout=1)

    def close(self) -> None:
        """Stop the command if it still runs; close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._fd)


def wait_for_rows(db: Rows, run_id: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.fetchval("SELECT count(*) FROM metrics WHERE run_id = $1", run_id) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"persist did not store {count} values of {run_id}")


def test_watch_shows_a_value_logged_after_it_started_and_exits_when_the_run_completes(
    run: Run, run_env: dict[str, str], db: Rows
) -> None:
    run.log("loss", 1.0, step=0)
    wait_for_rows(db, run.run_id, 1)
    terminal = Terminal([*RUNSTREAM, "watch", run.run_id, "--interval", "0.3"], run_env)
    try:
        terminal.expect("running")
        terminal.expect("loss")
        run.log("loss", 0.654321, step=1)
        terminal.expect("0.654321")
        run.complete(timeout=30)
        assert terminal.exit_code() == 0
        terminal.expect("completed after")
    finally:
        terminal.close()


def test_watch_of_a_launched_run_exits_with_the_launchers_verdict(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    run_id = f"watch-{uuid.uuid4().hex[:12]}"
    env = run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    # The command's own rank completes at exit; only the launcher knows it exited with 3.
    child = [sys.executable, "-c", "from runstream.producer import get_run\nimport sys\n"
             "get_run().log('x', 1.0)\nsys.exit(3)"]  # fmt: skip
    launch = [*RUNSTREAM, "run", "--run-id", run_id, "-e", "cli-tests", "--", *child]
    with subprocess.Popen(launch, env=env, stderr=subprocess.DEVNULL) as launcher:
        watch = subprocess.run(
            [*RUNSTREAM, "watch", run_id, "--wait", "60", "--interval", "0.3"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert launcher.wait(timeout=60) == 3
    assert watch.returncode == 1, watch.stdout + watch.stderr
    assert "failed" in watch.stdout
    assert "exit code 3" in watch.stdout


def test_watch_names_what_is_missing(run_env: dict[str, str]) -> None:
    done = subprocess.run(
        [*RUNSTREAM, "watch", "no-such-run-anywhere", "--wait", "0"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "no run 'no-such-run-anywhere'" in done.stderr


def test_a_snapshot_reads_the_run_as_of_one_moment(
    run: Run, db: Rows, stack: StackEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launcher's verdict committed while the watch reads is seen with the run it ended, or not
    at all: never next to the status the run had before it.
    """
    run.log("loss", 1.0, step=0)
    wait_for_rows(db, run.run_id, 1)
    real_ranks = _reads.ranks

    async def scenario() -> Snapshot:
        reader = await asyncpg.connect(stack.reader_url)
        writer = await asyncpg.connect(stack.writer_url)

        async def ranks_while_the_launcher_ends(conn: Any, run_id: str) -> Any:
            await writer.execute(
                "INSERT INTO status_events (run_id, rank, time, state, reason, exit_code, source,"
                " producer_id, seq) VALUES ($1, 0, now(), 'failed', 'exit code 3', 3, 'launcher',"
                " $2, 0)",
                run_id,
                uuid.uuid4(),
            )
            return await real_ranks(conn, run_id)

        monkeypatch.setattr(_reads, "ranks", ranks_while_the_launcher_ends)
        try:
            return await take_snapshot(reader, run.run_id)
        finally:
            await reader.close()
            await writer.close()

    snapshot = asyncio.run(scenario())
    assert snapshot.run["status"] == "running"
    assert snapshot.launcher is None
    assert not snapshot.finished

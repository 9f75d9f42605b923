"""Pid files and stopping: only the recorded process is signalled, stubborn ones get SIGKILL."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runstream.deploy.local import _process


def launch(tmp_path: Path, script: str) -> tuple[int, Path]:
    pid_file = tmp_path / "service.pid"
    pid = _process.spawn(["sh", "-c", script], log_file=tmp_path / "service.log", cwd=tmp_path)
    _process.write_pid_file(pid_file, pid)
    return pid, pid_file


def test_spawned_process_runs_detached_and_stops(tmp_path: Path) -> None:
    pid, pid_file = launch(tmp_path, "echo started; exec sleep 60")
    try:
        assert _wait_for_text(tmp_path / "service.log", "started")
        assert _process.recorded_pid(pid_file) == pid
        assert os.getpgid(pid) == pid  # its own process group, away from ours
        assert _process.stop(pid_file, grace=10) == pid
        assert not _process.is_alive(pid)
        assert not pid_file.exists()
    finally:
        _process.stop(pid_file, grace=0)


def test_stop_kills_a_process_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    pid, pid_file = launch(tmp_path, "trap '' TERM; sleep 60 & echo child=$!; wait")
    assert _wait_for_text(tmp_path / "service.log", "child=")
    child = int(_process.tail(tmp_path / "service.log").rpartition("child=")[2])
    began = time.monotonic()
    assert _process.stop(pid_file, grace=0.5) == pid
    assert time.monotonic() - began >= 0.5  # SIGTERM was ignored: SIGKILL after the grace
    assert not _process.is_alive(pid)
    assert _process.wait_gone(child, 5)


def test_stale_pid_file_is_dropped(tmp_path: Path) -> None:
    # Spawned without a pid file of its own: `exit 0` may be gone before one could be written.
    pid = _process.spawn(["sh", "-c", "exit 0"], log_file=tmp_path / "service.log", cwd=tmp_path)
    pid_file = tmp_path / "service.pid"
    assert _process.wait_gone(pid, 10)
    pid_file.write_text(f"{pid} 1\n")
    assert _process.recorded_pid(pid_file) is None
    assert not pid_file.exists()
    assert _process.stop(pid_file) is None


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    pid, pid_file = launch(tmp_path, "exec sleep 60")
    impostor = tmp_path / "impostor.pid"
    ticks = _process.start_ticks(pid)
    assert ticks is not None
    impostor.write_text(f"{pid} {ticks + 1}\n")  # same pid, another start time: not ours
    try:
        assert _process.stop(impostor) is None
        assert _process.is_alive(pid)
    finally:
        assert _process.stop(pid_file, grace=10) == pid


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert _process.tail(log, 2) == "line 98\nline 99"
    assert _process.tail(tmp_path / "missing.log") == ""


def _wait_for_text(path: Path, text: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if text in _process.tail(path):
            return True
        time.sleep(0.05)
    return False

"""Background processes of the local stack: launch detached, record, recognise, stop, read logs.

A pid file holds the pid and the process's start time (in clock ticks since boot, from
`/proc/<pid>/stat`), so a pid that the kernel has since handed to another process is never taken
for ours. Processes are only ever signalled through the pid recorded in their own pid file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# `setsid` puts the service in a session (and process group) of its own; the shell exits at once,
# so the service is nobody's child here: no zombie, no `Popen` left to reap. Umask 077: what a
# service writes (Kafka's log segments, logs) is its owner's only.
PRIVATE_UMASK = 0o077
_LAUNCH = 'log=$1; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!'


def spawn(
    argv: Sequence[str], *, log_file: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start `argv` detached in its own session, output appended to `log_file`; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shell = ["/bin/sh", "-c", _LAUNCH, "sh", str(log_file), *argv]
    done = subprocess.run(
        shell,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        umask=PRIVATE_UMASK,
    )
    return int(done.stdout.strip())


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    after_name = stat.rpartition(")")[2].split()
    if after_name[0] in ("Z", "X"):
        _reap(pid)
        return None
    return int(after_name[19])


def write_pid_file(path: Path, pid: int) -> None:
    """Record `pid` (and its start time) as the process this pid file stands for."""
    ticks = start_ticks(pid)
    if ticks is None:
        raise ProcessLookupError(f"process {pid} exited right after it started")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {ticks}\n")


def recorded_pid(path: Path) -> int | None:
    """The pid in `path` if that very process still runs; a stale pid file is removed."""
    try:
        pid_text, ticks_text = path.read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
    except (FileNotFoundError, ValueError):
        return None
    if start_ticks(pid) == ticks:
        return pid
    path.unlink(missing_ok=True)
    return None


def is_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    return start_ticks(pid) is not None


def stop(pid_file: Path, *, first_signal: int = signal.SIGTERM, grace: float = 30.0) -> int | None:
    """Stop the process of `pid_file` and return its pid (None if nothing ran).

    Send `first_signal`, wait up to `grace` seconds, then SIGKILL its whole process group.
    """
    pid = recorded_pid(pid_file)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first_signal)
    if not wait_gone(pid, grace):
        _kill_group(pid)
        wait_gone(pid, 10.0)
    _kill_group(pid)  # anything the service left behind in its own process group
    pid_file.unlink(missing_ok=True)
    return pid


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited; False if it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` happens to be our own child (else it is init's job)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

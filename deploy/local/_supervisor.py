"""`ServiceSupervisor`: keeps one runstream service of the stack alive, and says how it went.

The stack starts `python -m runstream.deploy.local._supervisor <state file> -- <argv>` (detached,
in a session of its own) instead of the service itself; the supervisor runs the service as its
child, sharing its log. A child that exits while nobody asked it to is started again after a
backoff (0.5 s, doubling to 30 s; back to 0.5 s once a child has run a minute). Each crash is
counted in the state file (JSON, rewritten atomically) with its exit status and the last lines
of the log, which `runstream stack status` shows.

A child that exits with `EXIT_CONFIG` (78, sysexits' EX_CONFIG) said that retrying cannot help (a
wrong password, a missing topic or database): the supervisor does not restart it, records why
and exits with the same status. SIGTERM or SIGINT to the supervisor are passed on to the child;
the supervisor exits once the child has. A supervisor that is SIGKILLed leaves its child to the
stack's `down`, which kills the whole process group.

Why our own: the stack already owns its processes by pid files in its state folder and needs no
root, no daemon of the machine and no package (supervisord would need a config per stack and
its own control socket); the loop below is what it takes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from runstream._errors import EXIT_CONFIG
from runstream.deploy.local._process import tail

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0
"""A child that ran this long before it exited restarts after the initial backoff again."""
_LOG_LINES = 20


@dataclass(slots=True)
class SupervisorState:
    """What the state file holds: the child now, and how the earlier ones ended."""

    supervisor_pid: int
    child_pid: int | None = None
    restarts: int = 0
    last_exit: str = ""
    last_exit_at: float | None = None
    last_log: str = ""
    gave_up: bool = False

    @classmethod
    def read(cls, path: Path) -> SupervisorState | None:
        """The state in `path`, or None when there is none (or it is unreadable)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def write(self, path: Path) -> None:
        """Replace `path` with this state (write a sibling, then rename)."""
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(path)


def describe_exit(returncode: int) -> str:
    """`exit 3`, or `killed by SIGKILL` for a negative return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class ServiceSupervisor:
    """Runs `argv` until told to stop, restarting it with backoff when it exits on its own."""

    def __init__(self, argv: Sequence[str], state_file: Path, log_file: Path | None) -> None:
        self.argv = list(argv)
        self.state_file = state_file
        self.log_file = log_file
        self.state = SupervisorState(supervisor_pid=os.getpid())
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def run(self) -> int:
        """Supervise until stopped (return 0) or until the child says retrying is useless."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        delay = BACKOFF_INITIAL
        while not self.stopping():
            began = time.monotonic()
            returncode = self._run_child()
            if self.stopping():
                break
            self._record_exit(returncode)
            if returncode == EXIT_CONFIG:
                return EXIT_CONFIG
            delay = BACKOFF_INITIAL if time.monotonic() - began > HEALTHY_RUN else delay
            self._sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        return 0

    def _run_child(self) -> int:
        self._child = subprocess.Popen(self.argv)
        self.state.child_pid = self._child.pid
        self.state.write(self.state_file)
        while True:
            try:
                return self._child.wait()
            except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
                continue

    def _record_exit(self, returncode: int) -> None:
        state = self.state
        state.child_pid = None
        state.last_exit = describe_exit(returncode)
        state.last_exit_at = time.time()
        state.last_log = tail(self.log_file, _LOG_LINES) if self.log_file else ""
        if returncode == EXIT_CONFIG:
            state.gave_up = True
        else:
            state.restarts += 1
        state.write(self.state_file)
        verdict = "not restarting it" if state.gave_up else f"restart {state.restarts}"
        print(f"supervisor: the service ended ({state.last_exit}); {verdict}", flush=True)

    def stopping(self) -> bool:
        """Whether SIGTERM or SIGINT asked the supervisor to stop."""
        return self._stopping

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping() and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)


def main(args: Sequence[str]) -> int:
    """`_supervisor <state file> [--log <file>] -- <argv…>`."""
    separator = list(args).index("--")
    head, argv = list(args[:separator]), list(args[separator + 1 :])
    log_file = Path(head[2]) if len(head) >= 3 and head[1] == "--log" else None
    return ServiceSupervisor(argv, Path(head[0]), log_file).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

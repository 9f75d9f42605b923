"""The runstream CLI commands the stack runs as subprocesses: which exist, and `db upgrade`.

The stack asks a fresh interpreter rather than importing the CLI, so a command module that is
broken (or not written yet) never breaks `runstream stack`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._config import StackConfig
from runstream.deploy.local._service import StackError

_LIST_COMMANDS = """
import typer
from runstream.cli import app
root = typer.main.get_command(app)
for group_name, group in getattr(root, "commands", {}).items():
    for name in getattr(group, "commands", {}):
        print(group_name, name)
"""


def cli_argv(*args: str) -> list[str]:
    """`python -m runstream.cli ARGS` with this interpreter."""
    return [sys.executable, "-m", "runstream.cli", *args]


def service_env(config: StackConfig, role: str = "trainer") -> dict[str, str]:
    """This process's environment without its own `RUNSTREAM_*`, plus the stack's (with the
    Kafka credentials of `role`).
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return inherited | config.env(role=role)


def available_commands() -> frozenset[str]:
    """The `group command` pairs the runstream CLI offers now (e.g. `consume persist`)."""
    done = subprocess.run(
        [sys.executable, "-c", _LIST_COMMANDS],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode:
        return frozenset()
    return frozenset(line.strip() for line in done.stdout.splitlines() if line.strip())


def run_migrations(config: StackConfig) -> str:
    """Run `runstream db upgrade` against the stack; return its output (log: migrations.log)."""
    log_file = config.state_dir / "migrations.log"
    env = service_env(config)
    done = subprocess.run(
        cli_argv("db", "upgrade"), check=False, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    _append(log_file, output)
    if done.returncode:
        message = f"`runstream db upgrade` failed (exit {done.returncode})"
        raise StackError("migrations", message, log_tail=_process.tail(log_file))
    return output.strip()


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(text)

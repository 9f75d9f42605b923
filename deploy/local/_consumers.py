"""The runstream services the stack runs: `runstream consume persist | export | watchdog`.

Each one serves `/metrics` on its own address; that answering is what healthy means. A service
whose command does not exist yet is skipped, and a marker file says so to `status`. Each runs under
a `ServiceSupervisor` (its pid is the one in the pid file): a service that dies is started again,
and `status` shows how often that happened and how the last one ended.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._commands import cli_argv, service_env
from runstream.deploy.local._config import http_url
from runstream.deploy.local._probes import http_ok
from runstream.deploy.local._service import Service, ServiceStatus
from runstream.deploy.local._supervisor import SupervisorState


class ConsumerService(Service):
    """One `runstream consume <name>` process, its log and pid file under `<state>/<name>`."""

    stop_grace = 20.0

    @property
    def command(self) -> str:
        """The CLI command that runs the service (`consume <name>`)."""
        return f"consume {self.name}"

    @property
    def skip_marker(self) -> Path:
        """Present while the service is skipped because its command does not exist yet."""
        return self.home / "skipped"

    @property
    def supervisor_file(self) -> Path:
        """The supervisor's state: the service's pid now, its restarts, how the last one ended."""
        return self.home / "supervisor.json"

    def launch(self) -> int:
        """Start the service's supervisor with the stack's `RUNSTREAM_*` environment."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.skip_marker.unlink(missing_ok=True)
        self.supervisor_file.unlink(missing_ok=True)
        supervisor = [sys.executable, "-m", "runstream.deploy.local._supervisor"]
        supervisor += [str(self.supervisor_file), "--log", str(self.log_file), "--"]
        argv = supervisor + cli_argv(*self.command.split())
        env = service_env(self.config, role=self.name)
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home, env=env)

    async def probe(self) -> bool:
        """Whether its `/metrics` answers."""
        return await http_ok(f"{http_url(self.address)}/metrics")

    async def status(self) -> ServiceStatus:
        """As for every service, with the supervisor's restarts; `skipped` without its command."""
        status = await super().status()
        if status.health == "stopped" and self.skip_marker.exists():
            detail = self.skip_marker.read_text().strip()
            return replace(status, health="skipped", detail=detail)
        supervised = SupervisorState.read(self.supervisor_file)
        if supervised is None or status.health == "foreign":
            return status
        running = status.pid is not None
        return replace(
            status,
            pid=supervised.child_pid if running else None,
            restarts=supervised.restarts,
            detail=_supervised_detail(supervised, running=running),
        )

    def mark_skipped(self) -> None:
        """Remember that the command was missing when the stack came up."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.skip_marker.write_text(f"`runstream {self.command}` does not exist yet\n")


class PersistService(ConsumerService):
    """Kafka → PostgreSQL (consumer group runstream-persist)."""

    name = "persist"

    @property
    def address(self) -> str:
        """Bind address of its health and metrics endpoint."""
        return self.config.persist_health_address


class ExportService(ConsumerService):
    """Kafka → Prometheus exposition (consumer group runstream-export)."""

    name = "export"

    @property
    def address(self) -> str:
        """Bind address of the exporter's `/metrics`."""
        return self.config.exporter_address


class WatchdogService(ConsumerService):
    """Stalled, lost and straggling ranks → status events."""

    name = "watchdog"

    @property
    def address(self) -> str:
        """Bind address of its health and metrics endpoint."""
        return self.config.watchdog_health_address


def _supervised_detail(state: SupervisorState, *, running: bool) -> str:
    """`last: killed by SIGKILL at 14:02:11`, or why the supervisor gave up."""
    if not state.last_exit:
        return ""
    when = time.strftime("%H:%M:%S", time.localtime(state.last_exit_at or 0))
    if state.gave_up:
        return f"gave up at {when}: {state.last_exit} (retrying cannot help; see its log)"
    if not running:
        return f"last ended {when}: {state.last_exit}"
    return f"last: {state.last_exit} at {when}"

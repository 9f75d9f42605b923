"""The runstream services the stack runs: `runstream consume persist | export | watchdog`.

Each one serves `/metrics` on its own address; that answering is what healthy means. A service
whose command does not exist yet is skipped, and a marker file says so to `status`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runstream.deploy.local import _process
from runstream.deploy.local._commands import cli_argv, service_env
from runstream.deploy.local._config import http_url
from runstream.deploy.local._probes import http_ok
from runstream.deploy.local._service import Service, ServiceStatus


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

    def launch(self) -> int:
        """Start the service with the stack's `RUNSTREAM_*` environment."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.skip_marker.unlink(missing_ok=True)
        argv = cli_argv(*self.command.split())
        env = service_env(self.config)
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home, env=env)

    async def probe(self) -> bool:
        """Whether its `/metrics` answers."""
        return await http_ok(f"{http_url(self.address)}/metrics")

    async def status(self) -> ServiceStatus:
        """As for every service, but `skipped` while its command does not exist."""
        status = await super().status()
        if status.health == "stopped" and self.skip_marker.exists():
            detail = self.skip_marker.read_text().strip()
            return replace(status, health="skipped", detail=detail)
        return status

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

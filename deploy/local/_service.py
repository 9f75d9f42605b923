"""What every service of the local stack has: a home folder, a log, a pid file, a health probe."""

from __future__ import annotations

import abc
import asyncio
import signal
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar, Literal

from runstream._errors import RunstreamError
from runstream.deploy.local import _process
from runstream.deploy.local._config import HOST, StackConfig
from runstream.deploy.local._probes import tcp_open

Health = Literal["healthy", "starting", "stopped", "foreign", "skipped"]
Step = Literal["working", "done", "skipped", "failed"]
Progress = Callable[[str, str, Step], None]
"""Called as `progress(service, message, step)` while the stack changes; `step` is `working`
until the service's last message, which is `done`, `skipped` or `failed`."""


class StackError(RunstreamError, RuntimeError):
    """A service of the local stack could not be installed, started or stopped.

    `service` names it, `reason` says what went wrong and `log_tail` holds the end of its log
    (may be empty).
    """

    def __init__(self, service: str, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.reason = message
        self.log_tail = log_tail


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service as `status` sees it.

    `health` is `healthy` (ours and answering), `starting` (ours, not answering yet), `stopped`,
    `foreign` (something this stack did not start answers on its port) or `skipped` (its command
    does not exist yet). For a supervised service `pid` is the serving process (not its
    supervisor's) and `restarts` counts the times it died and was started again.
    """

    name: str
    address: str
    health: Health
    pid: int | None
    detail: str = ""
    restarts: int = 0


class Service(abc.ABC):
    """One process of the stack, with its state under `<state_dir>/<name>/`."""

    name: str
    """The service name (its folder under the state dir); a class default, or set per instance."""
    startup_timeout: ClassVar[float] = 60.0
    stop_signal: ClassVar[int] = signal.SIGTERM
    stop_grace: ClassVar[float] = 30.0

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    @property
    def home(self) -> Path:
        """The service's folder: its data, config, log and pid file."""
        return self.config.state_dir / self.name

    @property
    def log_file(self) -> Path:
        """Where the service's output goes."""
        return self.home / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        """The pid file of the process this stack started."""
        return self.home / f"{self.name}.pid"

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where the service answers (`host:port` or a URL)."""

    @abc.abstractmethod
    async def probe(self) -> bool:
        """Whether the service answers a real request right now."""

    @abc.abstractmethod
    def launch(self) -> int:
        """Start the process (blocking, quick) and return its pid."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Write config and initialise storage before a start (blocking)."""

    async def configure(self) -> None:  # noqa: B027 - optional hook
        """Converge the running service (topics, roles, reload); idempotent."""

    def pid(self) -> int | None:
        """The pid of the process this stack started, if it still runs."""
        return _process.recorded_pid(self.pid_file)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's log."""
        return _process.tail(self.log_file, lines)

    def fail(self, message: str) -> StackError:
        """A `StackError` for this service carrying its log tail."""
        return StackError(self.name, message, log_tail=self.log_tail())

    @property
    def ports(self) -> tuple[int, ...]:
        """The TCP ports the service listens on (on the loopback)."""
        return (int(self.address.rpartition(":")[2]),)

    async def port_taken(self) -> int | None:
        """A port of this service that something already listens on, if any."""
        for port in self.ports:
            if await tcp_open(HOST, port):
                return port
        return None

    async def status(self) -> ServiceStatus:
        """The service's health, pid and address."""
        pid = self.pid()
        if pid is not None:
            health: Health = "healthy" if await self.probe() else "starting"
            return ServiceStatus(self.name, self.address, health, pid)
        taken = await self.port_taken()
        if taken is not None:
            detail = f"port {taken} answers, but not for a process of this stack"
            return ServiceStatus(self.name, self.address, "foreign", None, detail)
        return ServiceStatus(self.name, self.address, "stopped", None)

    async def wait_ready(self, pid: int) -> None:
        """Poll `probe` until it answers; fail if process `pid` exits or time runs out."""
        deadline = time.monotonic() + self.startup_timeout
        while not await self.probe():
            if not _process.is_alive(pid):
                raise self.fail(f"exited during startup; log: {self.log_file}")
            if time.monotonic() > deadline:
                raise self.fail(f"no answer at {self.address} after {self.startup_timeout:.0f}s")
            await asyncio.sleep(0.25)


def render(template: str, target: Path, **values: object) -> Path:
    """Fill `templates/<template>` (`$name` placeholders) into `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(fill(template, **values))
    return target


def fill(template: str, **values: object) -> str:
    """The text of `templates/<template>` with its `$name` placeholders filled in."""
    text = resources.files("runstream.deploy.local").joinpath("templates", template).read_text()
    return string.Template(text).substitute(values)


def deploy_file(*parts: str) -> Path:
    """A file shipped under `deploy/` (rules, Alertmanager config) as a real path."""
    return Path(str(resources.files("runstream.deploy").joinpath(*parts)))

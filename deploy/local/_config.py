"""What one local stack is: where its state lives, its ports, and how clients reach it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from runstream._errors import ConfigError

if TYPE_CHECKING:
    from runstream._settings import Settings

HOST = "127.0.0.1"
DATABASE = "runstream"
ADMIN_ROLE = "runstream_admin"
ADMIN_PASSWORD = "runstream-admin-local"  # noqa: S105 - a well-known local-only password
WRITER_ROLE = "runstream_writer"
WRITER_PASSWORD = "runstream-writer-local"  # noqa: S105 - a well-known local-only password
READER_ROLE = "runstream_reader"
READER_PASSWORD = "runstream-reader-local"  # noqa: S105 - a well-known local-only password


@dataclass(frozen=True, slots=True)
class StackEndpoints:
    """Where the services of a running local stack answer."""

    state_dir: Path
    bootstrap_servers: str
    writer_url: str = field(repr=False)
    reader_url: str = field(repr=False)
    admin_url: str = field(repr=False)
    prometheus_url: str
    alertmanager_url: str
    exporter_url: str
    """Base URL of the export service; its exposition is at `/metrics`."""


@dataclass(frozen=True, slots=True)
class StackConfig:
    """One local stack: its state folder and ports.

    Two configs with different folders and ports are two independent stacks.
    """

    state_dir: Path = Path(".stack")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    postgres_port: int = 15432
    prometheus_port: int = 19090
    alertmanager_port: int = 19095
    exporter_address: str = "127.0.0.1:19100"
    persist_health_address: str = "127.0.0.1:19101"
    watchdog_health_address: str = "127.0.0.1:19102"
    topic: str = "runstream.events"
    dlq_topic: str = "runstream.events.dlq"

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        ports = [getattr(self, f.name) for f in fields(self) if f.name.endswith("_port")]
        ports += [_port_of(name, getattr(self, name)) for name in self._addresses()]
        for port in ports:
            if not 0 < port < 65536:
                raise ConfigError(f"port {port}: expected 1..65535")
        if len(set(ports)) != len(ports):
            raise ConfigError(f"the local stack needs distinct ports, got {sorted(ports)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> StackConfig:
        """The stack that `RUNSTREAM_STACK_*` (and the service addresses) describe."""
        return cls(
            state_dir=settings.stack_dir,
            kafka_port=settings.stack_kafka_port,
            kafka_controller_port=settings.stack_kafka_controller_port,
            postgres_port=settings.stack_postgres_port,
            prometheus_port=settings.stack_prometheus_port,
            alertmanager_port=settings.stack_alertmanager_port,
            exporter_address=settings.exporter_address,
            persist_health_address=settings.persist_health_address,
            watchdog_health_address=settings.watchdog_health_address,
            topic=settings.topic,
            dlq_topic=settings.dlq_topic,
        )

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap address clients use."""
        return f"{HOST}:{self.kafka_port}"

    def database_url(self, role: str = WRITER_ROLE) -> str:
        """A libpq URL for one of the stack's roles (writer, reader or admin)."""
        passwords = {
            ADMIN_ROLE: ADMIN_PASSWORD,
            WRITER_ROLE: WRITER_PASSWORD,
            READER_ROLE: READER_PASSWORD,
        }
        if role not in passwords:
            raise ConfigError(f"role={role!r}: expected one of {sorted(passwords)}")
        return f"postgresql://{role}:{passwords[role]}@{HOST}:{self.postgres_port}/{DATABASE}"

    def endpoints(self) -> StackEndpoints:
        """Where the services answer once the stack is up."""
        return StackEndpoints(
            state_dir=self.state_dir,
            bootstrap_servers=self.bootstrap_servers,
            writer_url=self.database_url(WRITER_ROLE),
            reader_url=self.database_url(READER_ROLE),
            admin_url=self.database_url(ADMIN_ROLE),
            prometheus_url=f"http://{HOST}:{self.prometheus_port}",
            alertmanager_url=f"http://{HOST}:{self.alertmanager_port}",
            exporter_url=http_url(self.exporter_address),
        )

    def env(self) -> dict[str, str]:
        """Every `RUNSTREAM_*` variable that points a client, a service or the CLI at this stack."""
        points = self.endpoints()
        return {
            "RUNSTREAM_STACK_DIR": str(self.state_dir),
            "RUNSTREAM_STACK_KAFKA_PORT": str(self.kafka_port),
            "RUNSTREAM_STACK_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "RUNSTREAM_STACK_POSTGRES_PORT": str(self.postgres_port),
            "RUNSTREAM_STACK_PROMETHEUS_PORT": str(self.prometheus_port),
            "RUNSTREAM_STACK_ALERTMANAGER_PORT": str(self.alertmanager_port),
            "RUNSTREAM_BOOTSTRAP_SERVERS": points.bootstrap_servers,
            "RUNSTREAM_TOPIC": self.topic,
            "RUNSTREAM_DLQ_TOPIC": self.dlq_topic,
            "RUNSTREAM_DATABASE_URL": points.writer_url,
            "RUNSTREAM_DATABASE_READ_URL": points.reader_url,
            "RUNSTREAM_DATABASE_ADMIN_URL": points.admin_url,
            "RUNSTREAM_PROMETHEUS_URL": points.prometheus_url,
            "RUNSTREAM_ALERTMANAGER_URL": points.alertmanager_url,
            "RUNSTREAM_EXPORTER_ADDRESS": self.exporter_address,
            "RUNSTREAM_PERSIST_HEALTH_ADDRESS": self.persist_health_address,
            "RUNSTREAM_WATCHDOG_HEALTH_ADDRESS": self.watchdog_health_address,
        }

    @staticmethod
    def _addresses() -> tuple[str, ...]:
        return ("exporter_address", "persist_health_address", "watchdog_health_address")


def http_url(address: str) -> str:
    """`http://host:port` for a bind address; a wildcard bind is reached on the loopback."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = HOST
    return f"http://{host}:{port}"


def _port_of(name: str, address: str) -> int:
    _, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{name}={address!r}: expected host:port")
    return int(port)

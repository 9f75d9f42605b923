"""What one local stack is: where its state lives, its ports, and how clients reach it."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from runstream import _local
from runstream._config import Address, KafkaConfig
from runstream._errors import ConfigError
from runstream.deploy.local._secure import (
    KAFKA_ADMIN_USER,
    KAFKA_ROLE_USERS,
    SecureFolder,
    StackSecrets,
)

if TYPE_CHECKING:
    from runstream._settings import Settings

HOST = _local.HOST
DATABASE = _local.DATABASE
ADMIN_ROLE = _local.ADMIN_ROLE
WRITER_ROLE = _local.WRITER_ROLE
READER_ROLE = _local.READER_ROLE
_LOCAL_PASSWORDS = _local.PASSWORDS
BROKER_PORT_STEP = 100
"""Broker i (from 0) of a cluster listens on the first broker's ports + i·100 unless told."""
_CLUSTER_SIZE_FILE = "cluster-size"


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
class KafkaNode:
    """One Kafka process of the stack: broker and KRaft controller at once."""

    index: int
    port: int
    controller_port: int

    @property
    def node_id(self) -> int:
        """Its `node.id` (1, 2, 3…)."""
        return self.index + 1

    @property
    def name(self) -> str:
        """The service name: `kafka` for the first node, `kafka-2`, `kafka-3`… after it."""
        return "kafka" if self.index == 0 else f"kafka-{self.node_id}"


@dataclass(frozen=True, slots=True)
class StackConfig:
    """One local stack: its state folder and ports.

    Two configs with different folders and ports are two independent stacks. A `secure` stack
    speaks SASL_SSL (SCRAM-SHA-512) on its Kafka listener and TLS only on PostgreSQL's TCP port,
    with its own CA and random passwords under `<state_dir>/secure/` (see `_secure`).

    `brokers` is the number of Kafka nodes (1, or 3 for a cluster whose topics have three replicas
    and `min.insync.replicas=2`); None means what the stack was made with (its `kafka/cluster-size`
    file), else 1. Node i after the first listens on `broker_ports[i-1]` (client, controller), by
    default the first node's ports + i·100.
    """

    state_dir: Path = Path(".stack")
    kafka_port: int = _local.KAFKA_PORT
    kafka_controller_port: int = _local.KAFKA_CONTROLLER_PORT
    postgres_port: int = _local.POSTGRES_PORT
    prometheus_port: int = _local.PROMETHEUS_PORT
    alertmanager_port: int = _local.ALERTMANAGER_PORT
    alertmanager_webhook_port: int | None = None
    """Where Alertmanager posts every alert (a test listens there); None: Alertmanager's + 85."""
    exporter_address: str = _local.EXPORTER_ADDRESS
    persist_health_address: str = _local.PERSIST_HEALTH_ADDRESS
    watchdog_health_address: str = _local.WATCHDOG_HEALTH_ADDRESS
    topic: str = _local.TOPIC
    dlq_topic: str = _local.DLQ_TOPIC
    verdict_topic: str = _local.VERDICT_TOPIC
    secure: bool = False
    brokers: int | None = None
    broker_ports: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.brokers is not None and self.brokers not in (1, 3):
            raise ConfigError(f"brokers={self.brokers}: expected 1 or 3")
        if self.alertmanager_webhook_port is None:
            object.__setattr__(self, "alertmanager_webhook_port", self.alertmanager_port + 85)
        ports = [getattr(self, f.name) for f in fields(self) if f.name.endswith("_port")]
        ports += [
            port for node in self.kafka_nodes()[1:] for port in (node.port, node.controller_port)
        ]
        ports += [Address.parse(getattr(self, name), name).port for name in self._addresses()]
        for port in ports:
            if not 0 < port < 65536:
                raise ConfigError(f"port {port}: expected 1..65535")
        if len(set(ports)) != len(ports):
            raise ConfigError(f"the local stack needs distinct ports, got {sorted(ports)}")

    @property
    def webhook_port(self) -> int:
        """The port Alertmanager's one receiver posts to, on the loopback."""
        assert self.alertmanager_webhook_port is not None  # set by __post_init__
        return self.alertmanager_webhook_port

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
            alertmanager_webhook_port=settings.stack_alertmanager_webhook_port,
            exporter_address=settings.exporter_address,
            persist_health_address=settings.persist_health_address,
            watchdog_health_address=settings.watchdog_health_address,
            topic=settings.topic,
            dlq_topic=settings.dlq_topic,
            verdict_topic=settings.verdict_topic,
            secure=settings.stack_secure,
            brokers=settings.stack_brokers,
        )

    @property
    def cluster_size_file(self) -> Path:
        """Where the stack records how many Kafka nodes its storage was formatted for."""
        return self.state_dir / "kafka" / _CLUSTER_SIZE_FILE

    def broker_count(self) -> int:
        """`brokers`, or the number the stack was made with, or 1."""
        if self.brokers is not None:
            return self.brokers
        try:
            return int(self.cluster_size_file.read_text())
        except (FileNotFoundError, ValueError):
            return 1

    def kafka_nodes(self) -> list[KafkaNode]:
        """Every Kafka node of the stack, the first on `kafka_port`."""
        nodes = [KafkaNode(0, self.kafka_port, self.kafka_controller_port)]
        for index in range(1, self.broker_count()):
            if index <= len(self.broker_ports):
                port, controller = self.broker_ports[index - 1]
            else:
                step = BROKER_PORT_STEP * index
                port, controller = self.kafka_port + step, self.kafka_controller_port + step
            nodes.append(KafkaNode(index, port, controller))
        return nodes

    @property
    def replication(self) -> int:
        """Replicas of each topic partition: one per broker, at most three."""
        return min(3, self.broker_count())

    @property
    def min_insync_replicas(self) -> int:
        """`min.insync.replicas` of the stack's topics: 2 on a cluster (one broker may fail)."""
        return 2 if self.replication >= 3 else 1

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap addresses clients use (every broker's)."""
        return ",".join(f"{HOST}:{node.port}" for node in self.kafka_nodes())

    @property
    def secure_folder(self) -> SecureFolder:
        """Where a secure stack keeps its CA, certificate, key and passwords."""
        return SecureFolder(self.state_dir / "secure")

    def secrets(self) -> StackSecrets:
        """A secure stack's passwords (made on first use); `ConfigError` for a plain stack."""
        if not self.secure:
            raise ConfigError("secrets: this stack is not secure (StackConfig(secure=True))")
        return self.secure_folder.secrets()

    def password(self, role: str) -> str:
        """The password of a PostgreSQL role: well-known locally, random on a secure stack."""
        if role not in _LOCAL_PASSWORDS:
            raise ConfigError(f"role={role!r}: expected one of {sorted(_LOCAL_PASSWORDS)}")
        if not self.secure:
            return _LOCAL_PASSWORDS[role]
        secrets = self.secrets()
        chosen = {
            ADMIN_ROLE: secrets.postgres_admin,
            WRITER_ROLE: secrets.postgres_writer,
            READER_ROLE: secrets.postgres_reader,
        }
        return chosen[role]

    def database_url(self, role: str = WRITER_ROLE, *, database: str = DATABASE) -> str:
        """A libpq URL for one of the stack's roles (writer, reader or admin).

        On a secure stack it asks for TLS with the server's name checked against the stack's CA
        (`?sslmode=verify-full&sslrootcert=…`).
        """
        url = f"postgresql://{role}:{self.password(role)}@{HOST}:{self.postgres_port}/{database}"
        if self.secure:
            url += f"?sslmode=verify-full&sslrootcert={quote(str(self.secure_folder.ca))}"
        return url

    def kafka(self, *, admin: bool = False, role: str = "trainer") -> KafkaConfig:
        """How a client reaches this stack's Kafka: as the user of `role` (a trainer by default:
        see `_acls`), or as the broker's admin.
        """
        if not self.secure:
            return KafkaConfig(**self._topics())
        secrets = self.secrets()
        return KafkaConfig(
            **self._topics(),
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=KAFKA_ADMIN_USER if admin else KAFKA_ROLE_USERS[role],
            sasl_password=secrets.kafka_admin if admin else secrets.kafka_password(role),
            ssl_cafile=str(self.secure_folder.ca),
        )

    def _topics(self) -> dict[str, str]:
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "topic": self.topic,
            "dlq_topic": self.dlq_topic,
            "verdict_topic": self.verdict_topic,
        }

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

    def env(self, *, admin: bool = False, role: str = "trainer") -> dict[str, str]:
        """Every `RUNSTREAM_*` variable that points a client, a service or the CLI at this stack.

        A secure stack's values include its passwords (`RUNSTREAM_KAFKA_SASL_PASSWORD` and the
        database URLs): this is what `runstream stack env` prints for `eval`, and how the stack
        hands them to its services (environment, never a command line). The PostgreSQL admin's
        URL (`RUNSTREAM_DATABASE_ADMIN_URL`) is only there with `admin=True`: no service and no
        client needs it (`stack env --admin` prints it for tests and benchmarks that make
        databases). The Kafka credentials are those of `role` (a trainer's by default; each
        service of the stack gets its own).
        """
        points = self.endpoints()
        variables = self._stack_env(points) | _kafka_env(self.kafka(role=role))
        if not admin:
            del variables["RUNSTREAM_DATABASE_ADMIN_URL"]
        return variables

    def _stack_env(self, points: StackEndpoints) -> dict[str, str]:
        return {
            "RUNSTREAM_STACK_DIR": str(self.state_dir),
            "RUNSTREAM_STACK_KAFKA_PORT": str(self.kafka_port),
            "RUNSTREAM_STACK_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "RUNSTREAM_STACK_POSTGRES_PORT": str(self.postgres_port),
            "RUNSTREAM_STACK_PROMETHEUS_PORT": str(self.prometheus_port),
            "RUNSTREAM_STACK_ALERTMANAGER_PORT": str(self.alertmanager_port),
            "RUNSTREAM_STACK_ALERTMANAGER_WEBHOOK_PORT": str(self.webhook_port),
            "RUNSTREAM_BOOTSTRAP_SERVERS": points.bootstrap_servers,
            "RUNSTREAM_TOPIC": self.topic,
            "RUNSTREAM_DLQ_TOPIC": self.dlq_topic,
            "RUNSTREAM_VERDICT_TOPIC": self.verdict_topic,
            "RUNSTREAM_DATABASE_URL": points.writer_url,
            "RUNSTREAM_DATABASE_READ_URL": points.reader_url,
            "RUNSTREAM_DATABASE_ADMIN_URL": points.admin_url,
            "RUNSTREAM_PROMETHEUS_URL": points.prometheus_url,
            "RUNSTREAM_ALERTMANAGER_URL": points.alertmanager_url,
            "RUNSTREAM_EXPORTER_ADDRESS": self.exporter_address,
            "RUNSTREAM_PERSIST_HEALTH_ADDRESS": self.persist_health_address,
            "RUNSTREAM_WATCHDOG_HEALTH_ADDRESS": self.watchdog_health_address,
            "RUNSTREAM_STACK_SECURE": str(self.secure).lower(),
        } | ({"RUNSTREAM_STACK_BROKERS": str(self.brokers)} if self.brokers else {})

    @staticmethod
    def _addresses() -> tuple[str, ...]:
        return ("exporter_address", "persist_health_address", "watchdog_health_address")


def _kafka_env(kafka: KafkaConfig) -> dict[str, str]:
    values = {
        "RUNSTREAM_KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
        "RUNSTREAM_KAFKA_SASL_MECHANISM": kafka.sasl_mechanism,
        "RUNSTREAM_KAFKA_SASL_USERNAME": kafka.sasl_username,
        "RUNSTREAM_KAFKA_SASL_PASSWORD": kafka.sasl_password,
        "RUNSTREAM_KAFKA_SSL_CAFILE": kafka.ssl_cafile,
    }
    return {name: value for name, value in values.items() if value is not None}


def http_url(address: str) -> str:
    """`http://host:port` for a bind address; a wildcard bind is reached on the loopback."""
    return Address.parse(address).url

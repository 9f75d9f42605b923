"""Frozen configuration objects that library code takes. Only entry points read the environment
(see `runstream._settings`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runstream import _local
from runstream._errors import ConfigError

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL = (None, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TLS = ("SSL", "SASL_SSL")
_TLS_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
_COURIERS = ("process", "thread")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

PERSIST_GROUP = "runstream-persist"
"""The persist service's consumer group (RUNSTREAM_PERSIST_GROUP overrides it)."""
EXPORT_GROUP = "runstream-export"
"""The export service's consumer group (RUNSTREAM_EXPORT_GROUP overrides it)."""
WATCHDOG_GROUP = "runstream-watchdog"
"""The watchdog's consumer group (RUNSTREAM_WATCHDOG_GROUP overrides it)."""


@dataclass(frozen=True, slots=True)
class Address:
    """host:port of something that listens (an HTTP endpoint, a broker)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, name: str = "address") -> Address:
        """Parse `host:port` or `[v6]:port` (an empty host is the loopback); raise `ConfigError`
        naming `name` otherwise.
        """
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{name}={text!r}: expected host:port")
        return cls(host.strip("[]") or _local.HOST, int(port))

    @property
    def url(self) -> str:
        """`http://host:port`; a wildcard bind (0.0.0.0, ::) is reached on the loopback."""
        host = _local.HOST if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the events go and how to reach the brokers."""

    bootstrap_servers: str = _local.BOOTSTRAP_SERVERS
    topic: str = _local.TOPIC
    dlq_topic: str = _local.DLQ_TOPIC
    verdict_topic: str = _local.VERDICT_TOPIC
    """The watchdog's verdicts: as many partitions as `topic`, keyed by run id, its alone."""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("bootstrap_servers is empty: give host:port[,host:port]")
        if self.security_protocol not in _PROTOCOLS:
            raise ConfigError(f"security_protocol={self.security_protocol!r}: one of {_PROTOCOLS}")
        if self.sasl_mechanism not in _SASL:
            raise ConfigError(f"sasl_mechanism={self.sasl_mechanism!r}: one of {_SASL}")
        self._check_security()

    def _check_security(self) -> None:
        """Credentials that the protocol would ignore, or a SASL protocol without them, fail.

        Messages name the setting, never the password.
        """
        protocol = self.security_protocol
        if protocol.startswith("SASL"):
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise ConfigError(f"security_protocol={protocol}: needs {name}")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ConfigError(
                f"SASL credentials are set but security_protocol={protocol} does not use them: "
                "use SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = [name for name in _TLS_FILES if getattr(self, name)]
        if tls_files and protocol not in _TLS:
            raise ConfigError(
                f"{tls_files[0]}={getattr(self, tls_files[0])!r} is set but "
                f"security_protocol={protocol} has no TLS: use SSL or SASL_SSL"
            )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (secrets included, never logged).

        aiokafka takes the SCRAM user and password as `sasl_plain_username`/`_password` too.
        """
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in _TLS:
            options["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context that verifies the brokers' certificates and names.

        It trusts `ssl_cafile` (the system's CAs when unset) and presents `ssl_certfile` (with
        `ssl_keyfile`) when set. A file that cannot be loaded is a `ConfigError` naming it.
        """
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
        except OSError as exc:
            raise ConfigError(f"ssl_cafile={self.ssl_cafile!r}: cannot load it: {exc}") from exc
        if self.ssl_certfile:
            try:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=_no_password)
            except OSError as exc:
                files = f"ssl_certfile={self.ssl_certfile!r}, ssl_keyfile={self.ssl_keyfile!r}"
                raise ConfigError(f"{files}: cannot load them (an unencrypted key): {exc}") from exc
        return context


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How a training process ships its events."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    spool_dir: Path = field(default_factory=lambda: Path.home() / ".runstream" / "spool")
    flush_interval: float = 0.05
    heartbeat_interval: float = 10.0
    system_metrics_interval: float = 0.0
    close_timeout: float = 10.0
    memory_events: int = 100_000
    spool_max_bytes: int = 1024**3
    spool_min_free_bytes: int = 64 * 1024**2  # the spool stops before the disk is full
    segment_bytes: int = 16 * 1024**2
    send_timeout: float = 30.0
    courier: str = "process"

    def __post_init__(self) -> None:
        if self.courier not in _COURIERS:
            raise ConfigError(f"courier={self.courier!r}: one of {_COURIERS}")
        _positive("flush_interval", self.flush_interval)
        _positive("heartbeat_interval", self.heartbeat_interval)
        if self.system_metrics_interval < 0:
            raise ConfigError(f"system_metrics_interval={self.system_metrics_interval}: 0 is off")
        _positive("memory_events", self.memory_events)
        _positive("spool_max_bytes", self.spool_max_bytes)
        if self.spool_min_free_bytes < 0:
            raise ConfigError(f"spool_min_free_bytes={self.spool_min_free_bytes}: 0 is none")
        _positive("segment_bytes", self.segment_bytes)
        _positive("send_timeout", self.send_timeout)
        _positive("close_timeout", self.close_timeout)
        if self.flush_interval > 1.0:
            raise ConfigError(f"flush_interval={self.flush_interval}: at most 1 second")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """PostgreSQL: the writer's URL for services, the reader's for queries.

    TLS goes in the URL, as libpq spells it and asyncpg reads it:
    `postgresql://user:password@host:5432/runstream?sslmode=verify-full&sslrootcert=/path/ca.pem`
    (`verify-full` checks the server's certificate against that CA and its name against `host`).
    The URL is never shown by `repr` nor put in an error message.
    """

    url: str = field(default=_local.database_url(_local.WRITER_ROLE), repr=False)
    min_connections: int = 1
    max_connections: int = 4

    def __post_init__(self) -> None:
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("database url: expected postgresql://user@host:port/db")
        sslmode = parse_qs(urlsplit(self.url).query).get("sslmode", ["prefer"])[-1]
        if sslmode not in _SSLMODES:
            raise ConfigError(f"database url: sslmode={sslmode!r}: one of {_SSLMODES}")
        _positive("max_connections", self.max_connections)


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """What the exporter keeps on /metrics.

    `ranks_limit`: a run with at most this many ranks logging metrics has every rank's
    `runstream_metric_value`/`_step` series; a larger run only rank 0's and its straggling ranks'
    (at most `ranks_limit` ranks). The cross-rank aggregates always cover every rank.
    """

    finished_ttl: float = 600.0
    idle_ttl: float = 86400.0
    ranks_limit: int = 8

    def __post_init__(self) -> None:
        _positive("finished_ttl", self.finished_ttl)
        _positive("idle_ttl", self.idle_ttl)
        if self.ranks_limit < 1:
            raise ConfigError(f"ranks_limit={self.ranks_limit!r}: expected 1 or more")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Persist's upkeep of metric storage (`runstream.consumers._maintenance`).

    `compact_interval`: seconds between rounds merging the small chunks of the runs written;
    `retention`: how long metric values are kept (whole months past it are dropped), or None
    to keep them until their run is deleted.
    """

    compact_interval: float = 60.0
    retention: timedelta | None = None

    def __post_init__(self) -> None:
        _positive("compact_interval", self.compact_interval)
        if self.retention is not None and self.retention <= timedelta(0):
            raise ConfigError(f"retention={self.retention!r}: expected a positive duration")


def _no_password() -> bytes:
    """OpenSSL's key-password callback: never prompt on a terminal (a service has none)."""
    return b""


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value!r}: expected a number above 0")

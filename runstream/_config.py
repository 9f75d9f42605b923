"""Frozen configuration objects that library code takes. Only entry points read the environment
(see `runstream._settings`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstream._errors import ConfigError

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL = (None, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the events go and how to reach the brokers."""

    bootstrap_servers: str = "127.0.0.1:19092"
    topic: str = "runstream.events"
    dlq_topic: str = "runstream.events.dlq"
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
        if self.security_protocol.startswith("SASL") and not self.sasl_username:
            raise ConfigError(f"security_protocol={self.security_protocol}: needs sasl_username")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (secrets included, never logged)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            options["ssl_context"] = context
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How a training process ships its events."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    spool_dir: Path = field(default_factory=lambda: Path.home() / ".runstream" / "spool")
    flush_interval: float = 0.1
    heartbeat_interval: float = 10.0
    system_metrics_interval: float = 0.0
    close_timeout: float = 10.0
    memory_events: int = 100_000
    spool_max_bytes: int = 1024**3
    segment_bytes: int = 16 * 1024**2
    send_timeout: float = 30.0

    def __post_init__(self) -> None:
        _positive("flush_interval", self.flush_interval)
        _positive("heartbeat_interval", self.heartbeat_interval)
        if self.system_metrics_interval < 0:
            raise ConfigError(f"system_metrics_interval={self.system_metrics_interval}: 0 is off")
        _positive("memory_events", self.memory_events)
        _positive("spool_max_bytes", self.spool_max_bytes)
        _positive("segment_bytes", self.segment_bytes)
        _positive("send_timeout", self.send_timeout)
        _positive("close_timeout", self.close_timeout)
        if self.flush_interval > 1.0:
            raise ConfigError(f"flush_interval={self.flush_interval}: at most 1 second")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """PostgreSQL: the writer's URL for services, the reader's for queries."""

    url: str = field(
        default="postgresql://runstream_writer:runstream-writer-local@127.0.0.1:15432/runstream",
        repr=False,
    )
    min_connections: int = 1
    max_connections: int = 4

    def __post_init__(self) -> None:
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("database url: expected postgresql://user@host:port/db")
        _positive("max_connections", self.max_connections)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value!r}: expected a number above 0")

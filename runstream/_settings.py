"""Every environment variable runstream reads, declared in one place (prefix `RUNSTREAM_`).

Only entry points (the CLI, the services, `get_run()`) call `Settings()`; library code takes the
frozen config objects built here. Defaults point at the local stack (`runstream stack up`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runstream import _local
from runstream._config import (
    EXPORT_GROUP,
    PERSIST_GROUP,
    WATCHDOG_GROUP,
    DatabaseConfig,
    ExportConfig,
    KafkaConfig,
    ProducerConfig,
    StorageConfig,
)

# Each default is declared once: by the frozen config it ends up in, or by `runstream._local`.
_KAFKA = KafkaConfig()
_PRODUCER = ProducerConfig()
_EXPORT = ExportConfig()
_STORAGE = StorageConfig()
_LOCAL_READER = _local.database_url(_local.READER_ROLE)


class Settings(BaseSettings):
    """runstream's settings, read from `RUNSTREAM_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="RUNSTREAM_", frozen=True, extra="ignore")

    # Kafka
    bootstrap_servers: str = Field(_KAFKA.bootstrap_servers, description="Kafka bootstrap servers")
    topic: str = Field(_KAFKA.topic, description="Topic the events travel on")
    dlq_topic: str = Field(_KAFKA.dlq_topic, description="Dead-letter topic")
    verdict_topic: str = Field(
        _KAFKA.verdict_topic, description="Topic of the watchdog's verdicts (only it writes there)"
    )
    kafka_security_protocol: str = Field(
        _KAFKA.security_protocol, description="PLAINTEXT, SSL, SASL_SSL…"
    )
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256/512")
    kafka_sasl_username: str | None = Field(None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for Kafka TLS")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate for Kafka TLS")
    kafka_ssl_keyfile: str | None = Field(None, description="Client key for Kafka TLS")
    # PostgreSQL
    database_url: SecretStr = Field(SecretStr(DatabaseConfig().url), description="Writer role URL")
    database_read_url: SecretStr = Field(SecretStr(_LOCAL_READER), description="Read-only URL")
    # Training side
    experiment: str = Field("default", description="Experiment of runs started without one")
    run_id: str | None = Field(None, description="Run every process (and rank) joins")
    run_name: str | None = Field(None, description="Display name of the run")
    spool_dir: Path = Field(_PRODUCER.spool_dir, description="Write-ahead spool")
    flush_interval: float = Field(
        _PRODUCER.flush_interval, description="Seconds between spool flushes (≤ 1)"
    )
    spool_min_free_bytes: int = Field(
        _PRODUCER.spool_min_free_bytes,
        description="Free disk space below which the spool drops events (0: none)",
    )
    heartbeat_interval: float = Field(
        _PRODUCER.heartbeat_interval, description="Seconds between heartbeats"
    )
    close_timeout: float = Field(
        _PRODUCER.close_timeout,
        description="Seconds closing a run waits for Kafka; the rest stays in the spool",
    )
    send_timeout: float = Field(
        _PRODUCER.send_timeout,
        description="Seconds a courier's send to Kafka may take before it is retried",
    )
    system_metrics_interval: float = Field(
        _PRODUCER.system_metrics_interval,
        description="Seconds between CPU/memory/GPU samples (0: off)",
    )
    courier: Literal["process", "thread"] = Field(
        "process",  # ProducerConfig's default; Literal needs the value spelled here
        description="Where Kafka sending runs: its own process, or a thread",
    )
    # Watchdog
    stall_after: float = Field(300.0, description="Seconds without progress before `stalled`")
    lost_after: float = Field(60.0, description="Seconds without heartbeat before `lost`")
    straggler_steps: int = Field(100, description="Steps behind the leading rank for a straggler")
    straggler_window: float = Field(120.0, description="Seconds over which step rates compare")
    straggler_rate: float = Field(
        0.5, description="A rank below this fraction of the others' median step rate straggles"
    )
    # Services
    exporter_address: str = Field(_local.EXPORTER_ADDRESS, description="Bind address of /metrics")
    finished_run_ttl: float = Field(
        _EXPORT.finished_ttl, description="Seconds a finished run stays on /metrics"
    )
    export_ranks_limit: int = Field(
        _EXPORT.ranks_limit,
        description="Ranks of a run with per-rank metric series on /metrics (beyond: rank 0 and "
        "straggling ranks only; every rank is in the cross-rank aggregates)",
    )
    compact_interval: float = Field(
        _STORAGE.compact_interval,
        description="Seconds between persist's rounds merging small metric chunks",
    )
    retention_days: float | None = Field(
        None,
        description="Days metric values are kept (whole months past it are dropped by persist); "
        "unset: until the run is deleted",
    )
    # Local stack
    stack_dir: Path = Field(Path(".stack"), description="State folder of the local stack")
    # Consumers (persist, export, watchdog)
    watchdog_interval: float = Field(5.0, description="Seconds between watchdog checks")
    idle_run_ttl: float = Field(
        _EXPORT.idle_ttl, description="Seconds a silent unfinished run stays on /metrics"
    )
    shutdown_timeout: float = Field(10.0, description="Seconds a service gets to finish on SIGTERM")
    persist_group: str = Field(PERSIST_GROUP, description="Consumer group of persist")
    export_group: str = Field(EXPORT_GROUP, description="Consumer group of export")
    watchdog_group: str = Field(WATCHDOG_GROUP, description="Consumer group of the watchdog")
    stack_kafka_port: int = Field(_local.KAFKA_PORT, description="Local stack: Kafka client port")
    stack_kafka_controller_port: int = Field(
        _local.KAFKA_CONTROLLER_PORT, description="Local stack: KRaft controller"
    )
    stack_postgres_port: int = Field(
        _local.POSTGRES_PORT, description="Local stack: PostgreSQL port"
    )
    stack_prometheus_port: int = Field(
        _local.PROMETHEUS_PORT, description="Local stack: Prometheus port"
    )
    stack_alertmanager_port: int = Field(
        _local.ALERTMANAGER_PORT, description="Local stack: Alertmanager port"
    )
    stack_alertmanager_webhook_port: int | None = Field(
        None, description="Local stack: where Alertmanager posts alerts (its port + 85 if unset)"
    )
    persist_health_address: str = Field(
        _local.PERSIST_HEALTH_ADDRESS, description="Persist /metrics bind"
    )
    watchdog_health_address: str = Field(
        _local.WATCHDOG_HEALTH_ADDRESS, description="Watchdog /metrics bind"
    )
    prometheus_url: str = Field(
        _local.http_url(_local.PROMETHEUS_PORT), description="Prometheus HTTP API"
    )
    alertmanager_url: str = Field(
        _local.http_url(_local.ALERTMANAGER_PORT), description="Alertmanager HTTP API"
    )
    database_admin_url: SecretStr | None = Field(None, description="Admin URL (local stack, tests)")
    stack_secure: bool = Field(
        False, description="Local stack: SASL_SSL Kafka, TLS-only PostgreSQL, random passwords"
    )
    stack_brokers: int | None = Field(
        None, description="Local stack: Kafka nodes, 1 or 3 (default: what the stack was made with)"
    )

    # Grafana (`runstream grafana push`)
    grafana_url: str | None = Field(None, description="Grafana base URL for `grafana push`")
    grafana_token: SecretStr | None = Field(None, description="Grafana service account token")
    grafana_user: str | None = Field(None, description="Grafana basic-auth user")
    grafana_password: SecretStr | None = Field(None, description="Grafana basic-auth password")
    grafana_postgres_url: SecretStr | None = Field(
        None, description="Read-only PostgreSQL URL as Grafana reaches it"
    )

    def kafka(self) -> KafkaConfig:
        """The Kafka part as a frozen config."""
        password = self.kafka_sasl_password
        return KafkaConfig(
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            dlq_topic=self.dlq_topic,
            verdict_topic=self.verdict_topic,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password else None,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
        )

    def producer(self) -> ProducerConfig:
        """The training side's config."""
        return ProducerConfig(
            kafka=self.kafka(),
            spool_dir=self.spool_dir,
            flush_interval=self.flush_interval,
            spool_min_free_bytes=self.spool_min_free_bytes,
            heartbeat_interval=self.heartbeat_interval,
            system_metrics_interval=self.system_metrics_interval,
            close_timeout=self.close_timeout,
            send_timeout=self.send_timeout,
            courier=self.courier,
        )

    def export(self) -> ExportConfig:
        """What the exporter keeps on /metrics."""
        return ExportConfig(
            finished_ttl=self.finished_run_ttl,
            idle_ttl=self.idle_run_ttl,
            ranks_limit=self.export_ranks_limit,
        )

    def storage(self) -> StorageConfig:
        """Persist's upkeep of metric storage: compaction and retention."""
        days = self.retention_days
        return StorageConfig(
            compact_interval=self.compact_interval,
            retention=None if days is None else timedelta(days=days),
        )

    def database(self, *, read_only: bool = False) -> DatabaseConfig:
        """The writer's (services) or the reader's (queries) database config."""
        url = self.database_read_url if read_only else self.database_url
        return DatabaseConfig(url=url.get_secret_value())

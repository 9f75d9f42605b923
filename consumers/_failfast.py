"""What retrying cannot fix: Kafka refusing the service's credentials or rights, a topic or a
database that does not exist, PostgreSQL refusing the login.

Each becomes a `ServiceMisconfigured` whose message names the user and the setting to check
(never a password). The services let it through their retry loops; `runstream consume` prints it
and exits with `EXIT_CONFIG` (78), which tells the stack's supervisor not to restart the service.

aiokafka's bootstrap swallows a refused SASL login (it logs it and says only "Unable to
bootstrap"), so when a client cannot bootstrap, `explain_bootstrap_failure` opens one connection
of its own to each bootstrap address and keeps what the broker said.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from runstream._config import KafkaConfig
from runstream._errors import ConfigError

_PROBE_SECONDS = 10.0
_CREDENTIALS = "RUNSTREAM_KAFKA_SASL_USERNAME / RUNSTREAM_KAFKA_SASL_PASSWORD"


class ServiceMisconfigured(ConfigError):
    """A service cannot work with the configuration it was given; retrying will not help."""


async def explain_bootstrap_failure(kafka: KafkaConfig) -> ServiceMisconfigured | None:
    """Why no client of `kafka` could bootstrap, if a broker refused the login (else None)."""
    options = kafka.client_options()
    del options["bootstrap_servers"]
    for address in kafka.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with asyncio.timeout(_PROBE_SECONDS):
                connection = await create_conn(host, int(port), **options)
        except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
            return authentication_failed(kafka, str(exc))
        except (KafkaError, OSError, TimeoutError, ValueError):
            continue
        connection.close()
    return None


def authentication_failed(kafka: KafkaConfig, said: str) -> ServiceMisconfigured:
    """The error for a refused Kafka login, naming the user and the settings."""
    mechanism = kafka.sasl_mechanism or kafka.security_protocol
    return ServiceMisconfigured(
        f"Kafka authentication failed for user {kafka.sasl_username!r} ({mechanism}) at "
        f"{kafka.bootstrap_servers}: {said.strip() or 'refused'}; check {_CREDENTIALS}"
    )


def refused_right(
    kafka: KafkaConfig, exc: BaseException, group: str
) -> ServiceMisconfigured | None:
    """The error for a Kafka authorization failure (`exc`), or None if `exc` is not one."""
    user = repr(kafka.sasl_username) if kafka.sasl_username else "the anonymous user"
    if isinstance(exc, TopicAuthorizationFailedError) and kafka.verdict_topic in str(exc):
        what = f"topic {kafka.verdict_topic!r} (RUNSTREAM_VERDICT_TOPIC)"
    elif isinstance(exc, TopicAuthorizationFailedError):
        what = f"topic {kafka.topic!r} (RUNSTREAM_TOPIC)"
    elif isinstance(exc, GroupAuthorizationFailedError):
        what = f"consumer group {group!r} (the service's RUNSTREAM_*_GROUP)"
    elif isinstance(exc, ClusterAuthorizationFailedError):
        what = "the cluster"
    else:
        return None
    return ServiceMisconfigured(
        f"Kafka authorization failed: user {user} may not use {what} at "
        f"{kafka.bootstrap_servers}; grant the role's ACLs or check {_CREDENTIALS}"
    )


def missing_topic(kafka: KafkaConfig, topic: str, setting: str) -> ServiceMisconfigured:
    """The error for a topic the brokers do not have (or do not show this user)."""
    user = f" to user {kafka.sasl_username!r}" if kafka.sasl_username else ""
    return ServiceMisconfigured(
        f"Kafka topic {topic!r} does not exist at {kafka.bootstrap_servers} (or is not "
        f"visible{user}): check {setting}, or create it (`runstream stack up` does)"
    )


async def check_topic(
    consumer: Any, kafka: KafkaConfig, *, verdicts: bool = False, within: float = 3.0
) -> None:
    """Raise `missing_topic` unless the brokers know `kafka.topic` (`kafka.verdict_topic` with
    `verdicts`) within `within` seconds.
    """
    wanted = kafka.verdict_topic if verdicts else kafka.topic
    topics: set[str] = set()
    deadline = asyncio.get_running_loop().time() + within
    while True:
        with contextlib.suppress(KafkaError, TimeoutError):
            topics = await asyncio.wait_for(consumer.topics(), within)
        if wanted in topics or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    if wanted not in topics:
        setting = "RUNSTREAM_VERDICT_TOPIC" if verdicts else "RUNSTREAM_TOPIC"
        raise missing_topic(kafka, wanted, setting)

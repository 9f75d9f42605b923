"""Stacks of a test's own (a Kafka cluster, a secure stack) beside the session's: ports from the
OS, jars borrowed from the developers' stack, stopped by pid and deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from runstream._settings import Settings
from runstream.deploy import local

_PORTS = 8


def ports_from_the_os(count: int) -> list[int]:
    """`count` distinct TCP ports that the kernel hands out as free right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def own_config(*, brokers: int = 1, secure: bool = False) -> local.StackConfig:
    """A stack config in a new folder under /tmp, every port from the OS."""
    state = Path(tempfile.mkdtemp(prefix="runstream-own-", dir="/tmp"))  # 0700
    ports = ports_from_the_os(_PORTS + 2 * (brokers - 1))
    kafka, controller, postgres, prometheus, alertmanager, exporter, persist, watchdog = ports[:8]
    extra = ports[_PORTS:]
    config = local.StackConfig(
        state_dir=state,
        kafka_port=kafka,
        kafka_controller_port=controller,
        postgres_port=postgres,
        prometheus_port=prometheus,
        alertmanager_port=alertmanager,
        exporter_address=f"127.0.0.1:{exporter}",
        persist_health_address=f"127.0.0.1:{persist}",
        watchdog_health_address=f"127.0.0.1:{watchdog}",
        secure=secure,
        brokers=brokers,
        broker_ports=tuple(zip(extra[::2], extra[1::2], strict=True)),
    )
    borrow_kafka_jars(config)
    return config


def borrow_kafka_jars(config: local.StackConfig) -> None:
    """Link the developers' stack's Kafka jars, when it has them, instead of a Maven download."""
    source = Settings().stack_dir.absolute() / "kafka" / "libs"
    if any(source.glob("kafka_2.13-*.jar")):
        (config.state_dir / "kafka").mkdir(parents=True)
        (config.state_dir / "kafka" / "libs").symlink_to(source, target_is_directory=True)


def failure_report(config: local.StackConfig, error: local.StackError) -> str:
    """The error plus the end of each service's log."""
    parts = [f"the test's own stack did not come up: {error}"]
    for name, tail in local.log_tails(config).items():
        parts.append(f"----- {name} log (end) -----\n{tail}")
    return "\n".join(parts)


@contextlib.contextmanager
def running(config: local.StackConfig, names: Sequence[str] = ()) -> Iterator[local.StackConfig]:
    """`config`'s stack (only the services `names`, when given) while the block runs."""
    try:
        try:
            if names:
                asyncio.run(local.start(config, names))
            else:
                asyncio.run(local.up(config))
        except local.StackError as exc:
            pytest.fail(failure_report(config, exc), pytrace=False)
        yield config
    finally:
        try:
            asyncio.run(local.purge(config))  # also PostgreSQL's folder outside a 0700 state
        finally:
            asyncio.run(local.down(config))
            shutil.rmtree(config.state_dir, ignore_errors=True)

"""A Kafka producer stopped while its broker does not answer closes its connections all the same.

The courier's sender stops its aiokafka producer within a bounded wait; a broker paused with
SIGSTOP (its kernel still holds the connection) keeps that stop waiting on the batch it holds.
Past the wait the sender must still close the producer's connections: a socket left open outlives
the courier (and, with the courier as a task of the trainer's own loop, lingers in the trainer).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import _process as process
from runstream.deploy.local._kafka import KafkaBroker
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender


def connections_to(port: int) -> list[str]:
    """This process's open TCP connections to `port` on loopback."""
    return [
        f"{c.laddr} -> {c.raddr} {c.status}"
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    ]


async def test_a_sender_stopped_while_its_broker_is_paused_leaves_no_connection_open(
    private_kafka: KafkaBroker, tmp_path: Path
) -> None:
    port = private_kafka.config.kafka_port
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}"),
        spool_dir=tmp_path,
        send_timeout=2.0,
    )
    problems: list[BaseException] = []
    sender = KafkaSender(config, ProblemReporter(problems.append))
    assert await sender.shipment([(b"run", b"first")]).send(), problems
    assert connections_to(port)
    broker = process.recorded_pid(private_kafka.pid_file)
    assert broker is not None
    os.kill(broker, signal.SIGSTOP)
    try:
        assert not await sender.shipment([(b"run", b"held")]).send(), "the paused broker answered"
        await sender.stop()
        await asyncio.sleep(0.2)  # closed transports let go of their sockets on the next turns
        assert connections_to(port) == []
    finally:
        os.kill(broker, signal.SIGCONT)

"""Services of one test's own, for faults that stop them: the developers' stack stays up.

`private_kafka` is a single KRaft broker in a folder of its own, on ports from the OS held for
its lifetime (tests/ports.py), using the stack's Kafka jars. The test stops and restarts it by
its pid with `stop_broker` and `start_broker`; it is stopped and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.deploy import local
from runstream.deploy.local import _process
from runstream.deploy.local._kafka import KafkaBroker
from tests.ports import reserved_ports


@pytest.fixture
def private_kafka(
    stack_config: local.StackConfig, stack: local.StackEndpoints
) -> Iterator[KafkaBroker]:
    """A running broker of this test's own (its topics made as the stack's are)."""
    home = Path(tempfile.mkdtemp(prefix="runstream-kafka-"))
    try:
        with reserved_ports(2) as [port, controller]:
            config = local.StackConfig(
                state_dir=home, kafka_port=port, kafka_controller_port=controller
            )
            (home / "kafka").mkdir()
            libs = stack_config.state_dir.absolute() / "kafka" / "libs"
            (home / "kafka" / "libs").symlink_to(libs, target_is_directory=True)
            broker = KafkaBroker(config)
            broker.prepare()
            start_broker(broker)
            asyncio.run(broker.configure())
            try:
                yield broker
            finally:
                stop_broker(broker)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def start_broker(broker: KafkaBroker) -> int:
    """Launch the broker, record its pid, and wait until it answers."""
    pid = broker.launch()
    _process.write_pid_file(broker.pid_file, pid)
    asyncio.run(broker.wait_ready(pid))
    return pid


def stop_broker(broker: KafkaBroker) -> int | None:
    """Stop the broker by its recorded pid; the pid it had (None if it was not running)."""
    return _process.stop(broker.pid_file, first_signal=broker.stop_signal, grace=broker.stop_grace)

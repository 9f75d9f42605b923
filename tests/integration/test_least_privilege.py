"""A secure stack of the test's own, as a user with the wrong credentials or a local snooper
meets it: a refused Kafka login ends a consumer at once and names the user; `stack env` carries no
admin credential; the state folder and Kafka's data are their owner's only; no Kafka listener,
the controller's included, answers in plaintext; a trainer's credentials write the events topic
and nothing else, so they cannot forge a watchdog verdict (a real watchdog's still lands); the
PostgreSQL reader role cannot write."""

from __future__ import annotations

import asyncio
import os
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from runstream._config import KafkaConfig
from runstream._errors import EXIT_CONFIG
from runstream.consumers._topics import start_producer
from runstream.deploy import local
from runstream.deploy.local._config import READER_ROLE
from runstream.deploy.local._kafka import admin_client
from runstream.schemas import kinds
from tests.harness import EventFactory, ServiceProcess, produce, read_topic, wait_until
from tests.integration.stacks import own_config, ports_from_the_os, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
_EXITS_WITHIN = 30.0
_TOPIC_AUTHORIZATION_FAILED = 29


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[local.StackConfig]:
    with running(own_config(secure=True)) as config:
        yield config


def stack_env(config: local.StackConfig, **overrides: str) -> dict[str, str]:
    """This process's environment without its `RUNSTREAM_*`, plus the stack's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return inherited | config.env() | overrides


@pytest.mark.parametrize("service", ["persist", "export"])
def test_a_wrong_kafka_password_ends_the_consumer_and_names_the_user(
    secure_stack: local.StackConfig, tmp_path: Path, service: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    (health,) = ports_from_the_os(1)
    env = stack_env(
        secure_stack,
        RUNSTREAM_KAFKA_SASL_PASSWORD=wrong,
        RUNSTREAM_PERSIST_GROUP=f"wrong-{uuid.uuid4().hex[:8]}",
        RUNSTREAM_EXPORT_GROUP=f"wrong-{uuid.uuid4().hex[:8]}",
        RUNSTREAM_PERSIST_HEALTH_ADDRESS=f"127.0.0.1:{health}",
        RUNSTREAM_EXPORTER_ADDRESS=f"127.0.0.1:{health}",
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "consume", service],
        env=env,
        capture_output=True,
        text=True,
        timeout=_EXITS_WITHIN + 30,
        check=False,
    )
    took = time.monotonic() - began
    said = done.stdout + done.stderr

    assert done.returncode == EXIT_CONFIG, said[-3000:]
    assert took < _EXITS_WITHIN
    user = secure_stack.kafka().sasl_username
    assert f"Kafka authentication failed for user '{user}'" in said, said[-3000:]
    assert "RUNSTREAM_KAFKA_SASL_PASSWORD" in said
    assert wrong not in said


def test_stack_env_prints_no_admin_credential(secure_stack: local.StackConfig) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "stack", "env"],
        env=stack_env(secure_stack),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    secrets = secure_stack.secrets()
    assert "RUNSTREAM_DATABASE_ADMIN_URL" not in done.stdout
    assert secrets.postgres_admin not in done.stdout
    assert secrets.kafka_admin not in done.stdout


def test_the_state_folder_and_kafkas_data_are_the_owners_only(
    secure_stack: local.StackConfig,
) -> None:
    assert stat.S_IMODE(secure_stack.state_dir.stat().st_mode) == 0o700
    kafka = secure_stack.state_dir / "kafka"
    assert stat.S_IMODE(kafka.stat().st_mode) == 0o700
    segments = list((kafka / "data").rglob("*.log"))
    assert segments, "no log segment written yet"
    readable = [p for p in segments if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not readable, readable


async def answers_in_plaintext(port: int) -> bool:
    """Whether a Kafka ApiVersions request sent in the clear gets its answer on `port`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = b"plaintext-probe"
    request = struct.pack(">hhih", 18, 0, 7, len(client)) + client  # ApiVersions v0, id 7
    try:
        writer.write(struct.pack(">i", len(request)) + request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(8), 10)
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return False
    finally:
        writer.close()
    return bool(struct.unpack(">ii", head)[1] == 7)


async def test_no_kafka_listener_answers_in_plaintext(secure_stack: local.StackConfig) -> None:
    (node,) = secure_stack.kafka_nodes()
    assert not await answers_in_plaintext(node.port)
    assert not await answers_in_plaintext(node.controller_port)


async def test_a_trainer_may_write_the_events_topic_and_nothing_else(
    secure_stack: local.StackConfig,
) -> None:
    trainer = secure_stack.kafka()
    producer = await start_producer(trainer)
    try:
        await (await producer.send(trainer.topic, b"not an event: a dead letter", key=b"t"))
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send(trainer.dlq_topic, b"forged", key=b"t"), 30)
    finally:
        await producer.stop()

    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await read_as(trainer, f"trainer-{uuid.uuid4().hex[:8]}")

    async with admin_client(trainer) as admin:
        created = await admin.create_topics([NewTopic(f"forged-{uuid.uuid4().hex[:8]}", 1, 1)])
        deleted = await admin.delete_topics([trainer.topic])
    assert [error[1] for error in created.topic_errors] == [_TOPIC_AUTHORIZATION_FAILED]
    assert [error[1] for error in deleted.topic_error_codes] == [_TOPIC_AUTHORIZATION_FAILED]


async def read_as(kafka: KafkaConfig, group: str) -> None:
    """Consume `kafka.topic` in `group` for up to 20 seconds (raises what Kafka refuses)."""
    consumer = AIOKafkaConsumer(kafka.topic, group_id=group, **kafka.client_options())
    try:
        await consumer.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=500)
    finally:
        await consumer.stop()


async def test_a_trainers_credentials_cannot_write_the_verdict_topic(
    secure_stack: local.StackConfig,
) -> None:
    trainer = secure_stack.kafka()
    forged = EventFactory(f"forged-{uuid.uuid4().hex[:8]}").event(kinds.STATUS, _STALLED)
    producer = await start_producer(trainer)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send(trainer.verdict_topic, forged, key=b"t"), 30)
    finally:
        await producer.stop()


_STALLED = {"state": "stalled", "reason": "forged", "exit_code": None, "source": "watchdog"}


async def test_a_forged_watchdog_status_on_the_events_topic_changes_nothing(
    secure_stack: local.StackConfig,
) -> None:
    """Written with a trainer's credentials after the run's first step, followed by a tag (not
    progress, which would take a stalled status back): persist dead-letters it
    (`verdict_off_its_topic`) and the run stays running in PostgreSQL.
    """
    trainer = secure_stack.kafka()
    run = EventFactory(f"forged-{uuid.uuid4().hex[:8]}")
    tag = run.event(kinds.TAGS, {"tags": {"after": "forged"}})
    events = [run.run_started(), run.metrics(5, {"x": 1.0}), run.event(kinds.STATUS, _STALLED)]
    await produce(trainer, [(run.key, value) for value in [*events, tag]])

    reader = secure_stack.database_url(READER_ROLE)
    query = f"SELECT tags->>'after' FROM runs WHERE run_id = '{run.run_id}'"
    assert await wait_for_value(reader, query, "forged"), "persist never folded the tag"
    status = await fetch_value(reader, f"SELECT status FROM runs WHERE run_id = '{run.run_id}'")
    assert status == "running"
    admin = secure_stack.kafka(admin=True)
    letters = await read_topic(admin, trainer.dlq_topic, count=50, within=10)
    reasons = [dict(r.headers).get("reason") for r in letters if r.key == run.key]
    assert reasons == [b"verdict_off_its_topic"]


async def test_a_real_watchdog_verdict_reaches_postgresql(
    secure_stack: local.StackConfig, tmp_path: Path
) -> None:
    """A watchdog with the watchdog role's credentials (quick thresholds, a group of its own)
    writes `lost` onto the verdict topic; the stack's persist, as the persist role, applies it.
    """
    (health,) = ports_from_the_os(1)
    env = stack_env(secure_stack) | secure_stack.env(role="watchdog")
    env |= {
        "RUNSTREAM_WATCHDOG_GROUP": f"watchdog-{uuid.uuid4().hex[:8]}",
        "RUNSTREAM_WATCHDOG_HEALTH_ADDRESS": f"127.0.0.1:{health}",
        "RUNSTREAM_LOST_AFTER": "3",
        "RUNSTREAM_WATCHDOG_INTERVAL": "0.5",
    }
    run = EventFactory(f"silent-{uuid.uuid4().hex[:8]}")
    with ServiceProcess(["consume", "watchdog"], env, tmp_path / "watchdog.log") as watchdog:
        await produce(secure_stack.kafka(), [(run.key, run.run_started())])
        reader = secure_stack.database_url(READER_ROLE)
        query = f"SELECT status FROM runs WHERE run_id = '{run.run_id}'"
        lost = await wait_for_value(reader, query, "lost", within=60)
        assert lost, watchdog.log()[-3000:]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO experiments (name) VALUES ('forged')",
        "UPDATE runs SET status = 'failed'",
        "DELETE FROM metric_chunks",
        "CREATE TABLE forged (x int)",
    ],
)
async def test_the_reader_role_may_not_write(
    secure_stack: local.StackConfig, statement: str
) -> None:
    conn = await asyncpg.connect(secure_stack.database_url(READER_ROLE))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def fetch_value(url: str, query: str) -> Any:
    """The first column of the first row of `query` (None when there is none)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def wait_for_value(url: str, query: str, expected: Any, *, within: float = 30.0) -> bool:
    """Whether `query` gives `expected` within `within` seconds."""

    async def check() -> bool:
        return bool(await fetch_value(url, query) == expected)

    return await wait_until(check, within=within)

"""Services that cannot work with their configuration say so and exit 78, instead of retrying.

Against the real stack: a topic that does not exist, a database that does not exist, a password
PostgreSQL refuses. (A refused Kafka login needs SASL: see test_least_privilege.py.)
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from runstream._errors import EXIT_CONFIG
from tests.harness import (
    EventFactory,
    Harness,
    ServiceProcess,
    database_url,
    produce,
)

_WITHIN = 30.0


async def exit_status(process: ServiceProcess) -> int:
    """The exit status of `process`, which must end within `_WITHIN` seconds."""
    try:
        return await asyncio.to_thread(process.wait, _WITHIN)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running after {_WITHIN:.0f}s; log:\n{process.log()[-3000:]}")


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.parametrize("service", ["persist", "export"])
async def test_a_missing_topic_is_named_and_ends_the_service(
    harness: Harness, service: str
) -> None:
    topic = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    process = harness.service(service, RUNSTREAM_TOPIC=topic).start()
    began = time.monotonic()

    assert await exit_status(process) == EXIT_CONFIG
    assert time.monotonic() - began < _WITHIN
    said = process.log()
    assert f"Kafka topic '{topic}' does not exist" in said, said[-2000:]
    assert "RUNSTREAM_TOPIC" in said


async def test_a_missing_database_is_named_and_ends_persist(harness: Harness) -> None:
    missing = f"no_such_database_{uuid.uuid4().hex[:8]}"
    url = database_url(harness.database_url, missing)
    process = harness.service("persist", RUNSTREAM_DATABASE_URL=url).start()
    run = EventFactory(f"failfast-{harness.suffix}")
    await produce(harness.kafka, [(run.key, run.run_started())])  # persist connects to write it

    assert await exit_status(process) == EXIT_CONFIG
    said = process.log()
    assert f'database "{missing}" does not exist' in said, said[-2000:]
    assert "RUNSTREAM_DATABASE_URL" in said


async def test_a_refused_database_password_names_the_user_and_ends_export(
    harness: Harness,
) -> None:
    url = with_password(harness.read_url, "not-the-password")
    process = harness.service("export", RUNSTREAM_DATABASE_READ_URL=url).start()

    assert await exit_status(process) == EXIT_CONFIG
    said = process.log()
    user = urlsplit(url).username
    assert f"refused user '{user}'" in said, said[-2000:]
    assert "not-the-password" not in said

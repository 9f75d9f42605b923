"""Integration fixtures: the real local stack (deploy/local), a fresh topic per test, and the
environment that points a subprocess at the stack.

Every test under tests/integration is marked `integration`. The session's stack is brought up
once (a no-op when it already runs) and left running for the next session; `runstream stack down`
stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from runstream._settings import Settings
from runstream.deploy import local
from runstream.deploy.local._kafka import admin_client
from tests.harness import Harness
from tests.integration.private import private_kafka  # noqa: F401 (a fixture for every test)
from tests.integration.support import Rows

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder `integration`."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_config() -> local.StackConfig:
    """The stack `RUNSTREAM_STACK_*` describes (by default `.stack` on the default ports)."""
    return local.StackConfig.from_settings(Settings())


@pytest.fixture(scope="session")
def stack(stack_config: local.StackConfig) -> local.StackEndpoints:
    """The running local stack's addresses; brings it up unless every service answers already.

    On failure the test fails with the end of every service's log.
    """
    try:
        with _one_at_a_time(stack_config):
            asyncio.run(local.up(stack_config))
    except local.StackError as exc:
        pytest.fail(failure_report(stack_config, exc), pytrace=False)
    return stack_config.endpoints()


@contextlib.contextmanager
def _one_at_a_time(config: local.StackConfig) -> Iterator[None]:
    """Held while one pytest process (of `pytest -n`'s workers) checks or brings the stack up."""
    key = hashlib.sha256(str(config.state_dir).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"runstream-stack-{key}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
async def harness(
    stack: local.StackEndpoints, unique_topic: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """Consumer services of this test's own (topic, groups), run as real processes."""
    async with Harness.create(
        stack.bootstrap_servers,
        stack.admin_url,
        tmp_path,
        topic=unique_topic,
        writer_url=stack.writer_url,
        reader_url=stack.reader_url,
    ) as created:
        yield created


@pytest.fixture
def db(stack: local.StackEndpoints) -> Rows:
    """Blocking reads as the read-only role (the role the CLI and Grafana use)."""
    return Rows(stack.reader_url)


@pytest.fixture
def run_env(stack_config: local.StackConfig, stack: local.StackEndpoints) -> dict[str, str]:
    """A complete environment for a subprocess (`subprocess.run(..., env=run_env)`): this
    process's environment without its own `RUNSTREAM_*`, plus the stack's `RUNSTREAM_*`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return inherited | stack_config.env()


@pytest.fixture
async def unique_topic(
    stack: local.StackEndpoints, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A new topic with 4 partitions for this test only (deleted afterwards)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    name = f"test.{slug}.{uuid.uuid4().hex[:8]}"
    async with admin_client(stack.bootstrap_servers) as admin:
        response = await admin.create_topics([NewTopic(name, 4, 1)])
        assert [error[1] for error in response.topic_errors] == [0], response
    yield name
    async with admin_client(stack.bootstrap_servers) as admin:
        await admin.delete_topics([name])


def failure_report(config: local.StackConfig, error: local.StackError) -> str:
    """The error plus the end of each service's log."""
    parts = [f"the local stack did not come up: {error}"]
    for name, tail in local.log_tails(config).items():
        parts.append(f"----- {name} log (end) -----\n{tail}")
    return "\n".join(parts)

"""The local stack's PostgreSQL starts from a checkout inside a private (0700) home, as root.

PostgreSQL runs as an unprivileged user, who cannot walk into a 0700 folder of root's. The stack
puts the cluster where that user can reach it, links it from the state folder, and leaves the
home's permissions alone; `stack down --purge` removes both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from runstream.deploy import local
from runstream.deploy.local import _process
from runstream.deploy.local._config import READER_ROLE
from runstream.deploy.local._postgres import OUTSIDE, PostgresServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the 0700 home matters as root only")


@pytest.fixture
def private_home() -> Iterator[Path]:
    """A folder only root may enter, as root's home is."""
    home = Path(tempfile.mkdtemp(prefix="runstream-home-"))
    home.chmod(0o700)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start(server: PostgresServer) -> None:
    """What `stack up` does for one service: prepare, launch, wait until it answers, configure."""
    await asyncio.to_thread(server.prepare)
    pid = await asyncio.to_thread(server.launch)
    _process.write_pid_file(server.pid_file, pid)
    await server.wait_ready(pid)
    await server.configure()


async def current_user(url: str) -> str:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        user: str = await connection.fetchval("SELECT current_user")
        return user
    finally:
        await connection.close()


def test_postgres_serves_from_a_checkout_in_a_0700_home(private_home: Path) -> None:
    config = local.StackConfig(
        state_dir=private_home / "checkout" / ".stack", postgres_port=free_port()
    )
    server = PostgresServer(config)
    try:
        asyncio.run(start(server))
        assert asyncio.run(current_user(config.database_url(READER_ROLE))) == READER_ROLE
        link = config.state_dir / "postgres"
        assert link.is_symlink()
        assert OUTSIDE in link.resolve().parents
        assert stat.S_IMODE(private_home.stat().st_mode) == 0o700
    finally:
        _process.stop(server.pid_file, first_signal=signal.SIGINT, grace=30)
        outside = server.home
        (config.state_dir / ".runstream-stack").touch()
        asyncio.run(local.purge(config))
    assert not outside.exists()
    assert not config.state_dir.exists()

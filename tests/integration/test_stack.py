"""The local stack itself: idempotent `up`, truthful `status`, usable `env`, real services that
answer, least-privilege database roles, and a `down` that leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runstream._settings import Settings
from runstream.deploy import local
from runstream.deploy.local._kafka import admin_client

CORE = ("kafka", "postgres", "prometheus", "alertmanager")
CONSUMERS = ("persist", "export", "watchdog")


def cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "runstream.cli", *args]
    return subprocess.run(
        argv, check=False, env=env, capture_output=True, text=True, timeout=timeout
    )


async def test_second_up_starts_nothing(stack_config: local.StackConfig) -> None:
    before = {s.name: s.pid for s in await local.status(stack_config)}
    started = await local.up(stack_config)
    after = {s.name: s.pid for s in await local.status(stack_config)}
    assert started == []
    assert after == before
    assert all(before[name] for name in CORE)


async def test_status_reports_every_service_healthy(stack_config: local.StackConfig) -> None:
    health = {s.name: s.health for s in await local.status(stack_config)}
    assert {name: health[name] for name in CORE} == dict.fromkeys(CORE, "healthy")
    assert {name: health[name] for name in CONSUMERS} == dict.fromkeys(CONSUMERS, "healthy")


def test_status_json_and_exit_code(run_env: dict[str, str]) -> None:
    done = cli("stack", "status", "--json", env=run_env)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {*CORE, *CONSUMERS}
    assert rows["kafka"]["address"] == run_env["RUNSTREAM_BOOTSTRAP_SERVERS"]
    assert all(rows[name]["pid"] for name in CORE)


def test_env_lines_evaluate_to_declared_settings(
    run_env: dict[str, str], stack_config: local.StackConfig
) -> None:
    script = 'eval "$1" && env'
    printed = cli("stack", "env", env=run_env).stdout
    assert printed.splitlines()
    assert all(line.startswith("export RUNSTREAM_") for line in printed.splitlines())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    shell = subprocess.run(  # only what the printed lines set, not this session's RUNSTREAM_*
        ["bash", "-c", script, "bash", printed], capture_output=True, text=True, check=True,
        env=clean,
    )  # fmt: skip
    evaluated = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    exported = {k: v for k, v in evaluated.items() if k.startswith("RUNSTREAM_")}
    assert exported == stack_config.env()
    declared = {f"RUNSTREAM_{name.upper()}" for name in Settings.model_fields}
    assert set(exported) <= declared


async def test_env_points_at_answering_services(stack_config: local.StackConfig) -> None:
    env = stack_config.env()
    async with admin_client(env["RUNSTREAM_BOOTSTRAP_SERVERS"]) as admin:
        assert {env["RUNSTREAM_TOPIC"], env["RUNSTREAM_DLQ_TOPIC"]} <= set(
            await admin.list_topics()
        )
    for name in ("RUNSTREAM_DATABASE_URL", "RUNSTREAM_DATABASE_READ_URL"):
        connection = await asyncpg.connect(env[name])
        assert await connection.fetchval("SELECT current_database()") == "runstream"
        await connection.close()
    async with httpx.AsyncClient(trust_env=False) as client:
        for name in ("RUNSTREAM_PROMETHEUS_URL", "RUNSTREAM_ALERTMANAGER_URL"):
            assert (await client.get(f"{env[name]}/-/ready")).status_code == 200


async def test_exporter_answers_when_export_runs(
    stack: local.StackEndpoints, stack_config: local.StackConfig
) -> None:
    export = {s.name: s for s in await local.status(stack_config)}["export"]
    assert export.health == "healthy", export
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"{stack.exporter_url}/metrics")
    assert response.status_code == 200
    assert "runstream_consumer_events_total" in response.text, "the exporter's own health"


async def test_events_topics_have_their_partitions(
    stack: local.StackEndpoints, stack_config: local.StackConfig
) -> None:
    async with admin_client(stack.bootstrap_servers) as admin:
        topics = await admin.describe_topics([stack_config.topic, stack_config.dlq_topic])
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in topics}
    assert partitions == {stack_config.topic: 8, stack_config.dlq_topic: 2}


async def test_kafka_round_trips_a_message(stack: local.StackEndpoints, unique_topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(unique_topic, b"hello", key=b"run-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        unique_topic, bootstrap_servers=stack.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        received = await consumer.getone()
    finally:
        await consumer.stop()
    assert (received.key, received.value, received.partition) == (
        b"run-1",
        b"hello",
        sent.partition,
    )


async def test_reader_role_reads_but_cannot_write(stack: local.StackEndpoints) -> None:
    table = f"stack_test_{uuid.uuid4().hex[:8]}"
    writer = await asyncpg.connect(stack.writer_url)
    reader = await asyncpg.connect(stack.reader_url)
    try:
        await writer.execute(f"CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (1)")
        assert await reader.fetchval(f"SELECT x FROM {table}") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute(f"INSERT INTO {table} VALUES (2)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute(f"CREATE TABLE {table}_reader (x int)")
    finally:
        await writer.execute(f"DROP TABLE IF EXISTS {table}")
        await reader.close()
        await writer.close()


async def test_prometheus_scrapes_the_services_and_knows_alertmanager(
    stack: local.StackEndpoints,
) -> None:
    async with httpx.AsyncClient(base_url=stack.prometheus_url, trust_env=False) as client:
        targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
        jobs = {target["labels"]["job"] for target in targets}
        assert {"runstream-export", "runstream-persist", "runstream-watchdog"} <= jobs
        deadline = time.monotonic() + 30
        while True:
            found = (await client.get("/api/v1/alertmanagers")).json()["data"]
            urls = [am["url"] for am in found["activeAlertmanagers"]]
            if any(stack.alertmanager_url in url for url in urls) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert any(stack.alertmanager_url in url for url in urls), found


@pytest.mark.slow
def test_down_stops_every_process_of_a_second_stack(
    stack: local.StackEndpoints, run_env: dict[str, str]
) -> None:
    with ExitStack() as cleanup:
        state = cleanup.enter_context(_state_folder())
        env = run_env | _second_stack_env(state)
        cleanup.callback(cli, "stack", "down", "--purge", env=env)

        up = cli("stack", "up", env=env)
        assert up.returncode == 0, up.stderr
        pids = _healthy_pids(env)
        assert set(pids) >= set(CORE)
        assert cli("stack", "down", env=env).returncode == 0
        assert all(local_process_gone(pid) for pid in pids.values())
        assert not any(_port_open(int(v)) for k, v in env.items() if k.endswith("_PORT"))

        again = cli("stack", "up", env=env)  # restarts from the kept state
        assert again.returncode == 0, again.stderr
        restarted = _healthy_pids(env)
        assert cli("stack", "down", "--purge", env=env).returncode == 0
        assert all(local_process_gone(pid) for pid in restarted.values())
        assert not state.exists()
    main = cli("stack", "status", "--json", env=run_env)
    assert main.returncode == 0, main.stdout  # the session's stack is untouched


def _healthy_pids(env: dict[str, str]) -> dict[str, int]:
    done = cli("stack", "status", "--json", env=env)
    rows = json.loads(done.stdout)
    assert done.returncode == 0, rows
    return {row["name"]: row["pid"] for row in rows if row["pid"]}


def _second_stack_env(state: Path) -> dict[str, str]:
    ports = _ports_from_the_os(8)
    stack = ["KAFKA", "KAFKA_CONTROLLER", "POSTGRES", "PROMETHEUS", "ALERTMANAGER"]
    services = ["EXPORTER", "PERSIST_HEALTH", "WATCHDOG_HEALTH"]
    env = {"RUNSTREAM_STACK_DIR": str(state)}
    for name, port in zip(stack + services, ports, strict=True):
        key = f"RUNSTREAM_STACK_{name}_PORT" if name in stack else f"RUNSTREAM_{name}_ADDRESS"
        env[key] = str(port) if name in stack else f"127.0.0.1:{port}"
    return env


def _ports_from_the_os(count: int) -> list[int]:
    with ExitStack() as sockets:
        bound = [sockets.enter_context(socket.socket()) for _ in range(count)]
        for sock in bound:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in bound]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def local_process_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in "ZX":
            return True
        time.sleep(0.1)
    return False


@contextmanager
def _state_folder() -> Iterator[Path]:
    # The PostgreSQL owner (an unprivileged user) must be able to enter it: not under pytest's
    # private (0700) temporary folder.
    path = Path(tempfile.mkdtemp(prefix="runstream-stack-"))
    path.chmod(0o755)
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)

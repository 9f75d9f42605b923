"""Guarantees 2 and 3 on a three-node Kafka cluster of the test's own (KRaft, three replicas,
min.insync.replicas=2): brokers are SIGKILLed or restarted one by one while four trainer
processes log through the real SDK and persist writes to the session stack's PostgreSQL.

What is checked is what a user would: every value logged is in PostgreSQL exactly once, and every
`flush()` that returned True was already safe (its values are all there at the end).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from runstream.deploy import local
from runstream.deploy.local._kafka import admin_client
from tests.harness import Harness, wait_until
from tests.integration.stacks import own_config, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

_BROKERS = ("kafka", "kafka-2", "kafka-3")
_TRAINER = Path(__file__).with_name("cluster_trainer.py")
_TRAINERS = 4
_VALUES = 50_000  # per trainer: 200,000 in all
_CHUNK = 500
_PAUSE = 0.6  # 100 chunks of 500: about a minute of logging, long enough for the faults


@pytest.fixture(scope="module")
def cluster() -> Iterator[local.StackConfig]:
    """Three Kafka nodes of this module's own (no other service)."""
    with running(own_config(brokers=3), _BROKERS) as config:
        yield config


@pytest.fixture
async def cluster_harness(
    cluster: local.StackConfig, stack: local.StackEndpoints, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A topic on the cluster (8 partitions, 3 replicas, 2 in sync) and a database of its own."""
    async with Harness.create(
        cluster.bootstrap_servers,
        stack.admin_url,
        tmp_path,
        writer_url=stack.writer_url,
        reader_url=stack.reader_url,
        replicas=(3, 2),
    ) as harness:
        yield harness


@dataclass
class Trainer:
    """One trainer process and the report it writes after each chunk."""

    run_id: str
    process: subprocess.Popen[bytes]
    report: Path
    log: Path

    def lines(self) -> list[dict[str, float]]:
        text = self.report.read_text() if self.report.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def acknowledged(self) -> int:
        """Values logged before the last flush that returned True."""
        return max((int(line["logged"]) for line in self.lines() if line["flushed"]), default=0)


def start_trainers(harness: Harness, workdir: Path) -> list[Trainer]:
    trainers = []
    for number in range(_TRAINERS):
        run_id = f"cluster-{harness.suffix}-{number}"
        report, log = workdir / f"{run_id}.jsonl", workdir / f"{run_id}.log"
        env = {**os.environ, **harness.env(RUNSTREAM_SPOOL_DIR=str(workdir / f"spool-{number}"))}
        argv = [sys.executable, str(_TRAINER), run_id, str(_VALUES), str(_CHUNK), str(_PAUSE)]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*argv, str(report)], env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        trainers.append(Trainer(run_id, process, report, log))
    return trainers


async def finish(trainers: list[Trainer]) -> None:
    for trainer in trainers:
        try:
            code = await asyncio.to_thread(trainer.process.wait, 300)
        except subprocess.TimeoutExpired:
            trainer.process.kill()
            code = -9
        assert code == 0, trainer.log.read_text()[-3000:]


async def assert_every_value_once(harness: Harness, trainers: list[Trainer]) -> None:
    total = _TRAINERS * _VALUES
    count = await harness.wait_for_rows("SELECT count(*) FROM metrics", total, within=300)
    assert count == total
    distinct = await harness.fetchval("SELECT count(DISTINCT (run_id, step)) FROM metrics")
    assert distinct == total
    for trainer in trainers:
        acknowledged = trainer.acknowledged()
        assert acknowledged == _VALUES, f"{trainer.run_id}: last flush=True at {acknowledged}"
        stored = await harness.fetchval(
            "SELECT count(*) FROM metrics WHERE run_id = $1 AND step < $2",
            trainer.run_id,
            acknowledged,
        )
        assert stored == acknowledged


async def busiest_leader(cluster: local.StackConfig, topic: str) -> str:
    """The service name of the node leading the partition with the most records."""
    kafka = cluster.kafka(admin=True)
    async with admin_client(kafka) as admin:
        (described,) = await admin.describe_topics([topic])
    leaders = {p["partition"]: p["leader"] for p in described["partitions"]}
    consumer = AIOKafkaConsumer(**kafka.client_options())
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in leaders])
    finally:
        await consumer.stop()
    busiest = max(ends, key=lambda tp: ends[tp]).partition
    return _BROKERS[leaders[busiest] - 1]


async def fully_replicated(cluster: local.StackConfig, topic: str) -> bool:
    try:
        async with admin_client(cluster.kafka(admin=True)) as admin:
            (described,) = await admin.describe_topics([topic])
    except (OSError, TimeoutError):
        return False
    return all(len(p["isr"]) == len(p["replicas"]) for p in described["partitions"])


async def pid_of(cluster: local.StackConfig, name: str) -> int:
    statuses = {s.name: s for s in await local.status(cluster)}
    pid = statuses[name].pid
    assert pid is not None, statuses[name]
    return pid


async def test_the_busiest_partitions_leader_sigkilled_five_times_loses_and_doubles_nothing(
    cluster: local.StackConfig, cluster_harness: Harness, tmp_path: Path
) -> None:
    harness = cluster_harness
    harness.service("persist").start()
    trainers = start_trainers(harness, tmp_path)
    killed = []
    for _ in range(5):
        await asyncio.sleep(3.0)
        victim = await busiest_leader(cluster, harness.kafka.topic)
        os.kill(await pid_of(cluster, victim), signal.SIGKILL)
        killed.append(victim)
        await asyncio.sleep(2.0)
        await local.start(cluster, [victim])
    print(f"SIGKILLed, in turn: {killed}")

    await finish(trainers)
    await assert_every_value_once(harness, trainers)


async def test_a_rolling_restart_of_every_broker_loses_nothing_and_log_stays_fast(
    cluster: local.StackConfig, cluster_harness: Harness, tmp_path: Path
) -> None:
    harness = cluster_harness
    topic = harness.kafka.topic
    harness.service("persist").start()
    trainers = start_trainers(harness, tmp_path)
    await asyncio.sleep(8.0)  # chunks logged while every broker runs: the baseline
    began = time.time()
    for name in _BROKERS:
        await local.stop(cluster, [name])
        await local.start(cluster, [name])
        assert await wait_until(lambda: fully_replicated(cluster, topic), within=120)
    ended = time.time()

    await finish(trainers)
    await assert_every_value_once(harness, trainers)
    for trainer in trainers:
        lines = trainer.lines()
        before = [line["p99"] for line in lines if line["t"] < began]
        during = [line["p99"] for line in lines if began <= line["t"] <= ended]
        print(
            f"{trainer.run_id}: log() p99 per chunk, median over chunks: "
            f"before the restarts {statistics.median(before):.1f} µs ({len(before)} chunks), "
            f"during them {statistics.median(during):.1f} µs ({len(during)} chunks)"
        )

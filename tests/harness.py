"""Drive the consumers from integration tests and benchmarks: real topics, databases and processes.

Nothing here imitates Kafka or PostgreSQL. `EventFactory` encodes events as a producer session
would; `ServiceProcess` runs `python -m runstream.cli consume …` as a child process (stopped by its
pid) and reads the address it serves from the file its `--address-file` names (written once the
service listens); `create_database` makes a database of its own for one test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from runstream._config import DatabaseConfig, KafkaConfig
from runstream.consumers._migrate import upgrade
from runstream.consumers._topics import delete_topics, ensure_topics
from runstream.schemas import default_codec, event_record, kinds


def unique_name(prefix: str) -> str:
    """`prefix-<10 hex digits>`: topic, group, run and database names no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class EventFactory:
    """Encodes the events of one producer session of one (run, rank), seq counting from 0."""

    def __init__(
        self, run_id: str, experiment: str = "tests", *, rank: int = 0, world_size: int = 1
    ) -> None:
        self.run_id = run_id
        self.experiment = experiment
        self.rank = rank
        self.world_size = world_size
        self.producer_id = str(uuid.uuid4())
        self.seq = 0
        self._codec = default_codec()

    @property
    def key(self) -> bytes:
        """The Kafka key of this run's events."""
        return self.run_id.encode()

    def event(self, kind: str, body: Mapping[str, Any], *, time_us: int | None = None) -> bytes:
        """One encoded event of this session."""
        record = event_record(
            run_id=self.run_id,
            experiment=self.experiment,
            rank=self.rank,
            world_size=self.world_size,
            producer_id=self.producer_id,
            seq=self.seq,
            kind=kind,
            body=dict(body),
            time_us=time_us,
        )
        self.seq += 1
        return self._codec.encode_record(record)

    def run_started(
        self, name: str | None = None, params: Mapping[str, str] | None = None
    ) -> bytes:
        """`RunStarted` (rank 0)."""
        body = {"name": name, "params": dict(params or {}), "tags": {}, "host": "test-host"}
        return self.event(kinds.RUN_STARTED, body | {"pid": os.getpid(), "command": "pytest"})

    def metrics(self, step: int, values: Mapping[str, float]) -> bytes:
        """`Metrics` at `step`."""
        items = [{"name": name, "value": value} for name, value in values.items()]
        return self.event(kinds.METRICS, {"step": step, "values": items})

    def heartbeat(
        self,
        step: int | None = None,
        *,
        progress: bool = False,
        expect_next_in: float | None = None,
    ) -> bytes:
        """`Heartbeat`."""
        body = {"step": step, "progress": progress, "expect_next_in": expect_next_in}
        return self.event(kinds.HEARTBEAT, body)

    def rank_finished(self, state: str = "completed", reason: str | None = None) -> bytes:
        """`RankFinished`."""
        return self.event(
            kinds.RANK_FINISHED, {"state": state, "reason": reason, "exit_code": None}
        )


async def produce(
    kafka: KafkaConfig,
    messages: Iterable[tuple[bytes | None, bytes]],
    *,
    topic: str | None = None,
) -> list[int]:
    """Send `(key, value)` messages to `topic` (`kafka.topic` by default) and wait until all are
    acknowledged; return their offsets.
    """
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, linger_ms=5, **kafka.client_options()
    )
    await producer.start()
    try:
        to = topic or kafka.topic
        futures = [await producer.send(to, value, key=key) for key, value in messages]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [metadata.offset for metadata in sent]


async def read_topic(kafka: KafkaConfig, topic: str, *, count: int, within: float) -> list[Any]:
    """Read `topic` from the beginning (no group) until `count` records or `within` seconds."""
    consumer = AIOKafkaConsumer(
        topic, enable_auto_commit=False, auto_offset_reset="earliest", **kafka.client_options()
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + within
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def end_offsets(kafka: KafkaConfig, topic: str) -> dict[int, int]:
    """`{partition: end offset}` of `topic`: how many records each partition holds (ever)."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka.client_options())
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def committed_offsets(kafka: KafkaConfig, group: str) -> dict[int, int]:
    """`{partition: committed offset}` of consumer group `group` on `kafka.topic`."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == kafka.topic}


async def reset_offsets(kafka: KafkaConfig, group: str, offsets: Mapping[int, int]) -> None:
    """Commit `{partition: offset}` of `kafka.topic` for `group` (whose members are stopped)."""
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **kafka.client_options())
    await consumer.start()
    try:
        partitions = {TopicPartition(kafka.topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(partitions))
        await consumer.commit(partitions)
    finally:
        await consumer.stop()


def database_url(url: str, database: str) -> str:
    """`url` pointing at another database of the same server, same credentials."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database(admin_url: str, name: str, *, owner: str | None = None) -> str:
    """Create database `name` (owned by `owner` when given); return its URL with admin's login."""
    conn = await asyncpg.connect(admin_url)
    try:
        suffix = f' OWNER "{owner}"' if owner else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()
    return database_url(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever still uses it."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, interval: float = 0.2
) -> bool:
    """Poll `check` until it returns true (True) or `within` seconds pass (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return bool(await check())


class ServiceProcess:
    """`python -m runstream.cli <args> --address-file …` as a child process, its output in
    `log_path` and the address it serves in `log_path` with the suffix `.address`."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.address_file = log_path.with_suffix(".address")
        self.args = [sys.executable, "-m", "runstream.cli", *args]
        self.args += ["--address-file", str(self.address_file)]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start the process (its log is appended to, so restarts keep one log)."""
        self.address_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None, "not started"
        return self._process.pid

    def log(self) -> str:
        """Everything the process (and its earlier incarnations) wrote."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics_url(self, timeout: float = 60.0) -> str:
        """The /metrics URL the service reports serving (the latest start's address file)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.address_file.exists():
                return f"http://{self.address_file.read_text().strip()}/metrics"
            if self._process is not None and self._process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.args} did not report its address; log:\n{self.log()[-3000:]}")

    def signal(self, number: signal.Signals) -> None:
        """Send a signal to the child, by its pid."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, number)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; return its exit code."""
        assert self._process is not None, "not started"
        return self._process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self._process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self._process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, and reap the child."""
        if self._process is not None:
            self.signal(signal.SIGKILL)
            self._process.wait(30)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class Harness:
    """One test's own topic, dead-letter topic, consumer groups and database, on real services."""

    kafka: KafkaConfig
    admin_url: str
    database: str
    database_url: str
    workdir: Path
    suffix: str
    partitions: int = 8
    processes: list[ServiceProcess] = field(default_factory=list)
    read_url: str = ""

    @classmethod
    @asynccontextmanager
    async def create(
        cls,
        bootstrap_servers: str,
        admin_url: str,
        workdir: Path,
        *,
        topic: str | None = None,
        writer_url: str | None = None,
        reader_url: str | None = None,
        partitions: int = 8,
        replicas: tuple[int, int] = (1, 1),
    ) -> AsyncIterator[Harness]:
        """Make the topics (`topic` may exist already) and a migrated database of its own.

        `replicas` is each topic's (replication factor, `min.insync.replicas`).

        The database is owned by the writer role of `writer_url` when given. Afterwards every
        process is stopped, the database dropped and the dead-letter topic deleted.
        """
        suffix = uuid.uuid4().hex[:10]
        topic = topic or f"runstream.test-{suffix}"
        kafka = KafkaConfig(
            bootstrap_servers,
            topic=topic,
            dlq_topic=f"{topic}.dlq",
            verdict_topic=f"{topic}.verdicts",
        )
        replication, min_insync = replicas
        await ensure_topics(
            kafka, partitions=partitions, replication=replication, min_insync=min_insync
        )
        name = f"runstream_test_{suffix}"
        owner = urlsplit(writer_url).username if writer_url else None
        url = await create_database(admin_url, name, owner=owner)
        url = database_url(writer_url, name) if writer_url else url
        harness = cls(kafka, admin_url, name, url, workdir, suffix, partitions)
        harness.read_url = database_url(reader_url, name) if reader_url else url
        try:
            await upgrade(DatabaseConfig(url))
            yield harness
        finally:
            for process in harness.processes:
                process.stop()
            await drop_database(admin_url, name)
            await delete_topics(kafka, [kafka.dlq_topic, kafka.verdict_topic])

    def env(self, **extra: str) -> dict[str, str]:
        """`RUNSTREAM_*` variables pointing a service or a producer at this harness."""
        base = {
            "RUNSTREAM_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "RUNSTREAM_TOPIC": self.kafka.topic,
            "RUNSTREAM_DLQ_TOPIC": self.kafka.dlq_topic,
            "RUNSTREAM_VERDICT_TOPIC": self.kafka.verdict_topic,
            "RUNSTREAM_DATABASE_URL": self.database_url,
            "RUNSTREAM_DATABASE_READ_URL": self.read_url or self.database_url,
            "RUNSTREAM_PERSIST_GROUP": f"persist-{self.suffix}",
            "RUNSTREAM_EXPORT_GROUP": f"export-{self.suffix}",
            "RUNSTREAM_WATCHDOG_GROUP": f"watchdog-{self.suffix}",
            "RUNSTREAM_PERSIST_HEALTH_ADDRESS": "127.0.0.1:0",
            "RUNSTREAM_EXPORTER_ADDRESS": "127.0.0.1:0",
            "RUNSTREAM_WATCHDOG_HEALTH_ADDRESS": "127.0.0.1:0",
            "RUNSTREAM_SPOOL_DIR": str(self.workdir / "spool"),
            "RUNSTREAM_SHUTDOWN_TIMEOUT": "10",
        }
        return base | extra

    def service(self, name: str, **extra: str) -> ServiceProcess:
        """A `runstream consume <name>` process for this harness (not started yet)."""
        log_path = self.workdir / f"{name}-{len(self.processes)}.log"
        process = ServiceProcess(["consume", name], self.env(**extra), log_path)
        self.processes.append(process)
        return process

    async def fetchval(self, query: str, *args: Any) -> Any:
        """One value from this harness's database."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows from this harness's database."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def wait_for_rows(self, query: str, expected: Any, *, within: float) -> Any:
        """Poll `query` until it returns `expected` (or `within` seconds pass); return the last."""
        last: list[Any] = [None]

        async def check() -> bool:
            last[0] = await self.fetchval(query)
            return bool(last[0] == expected)

        await wait_until(check, within=within)
        return last[0]


Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape_until(url: str, check: Callable[[Samples], bool], *, within: float) -> Samples:
    """Scrape `url` until `check(samples)` holds or `within` seconds pass; return the last."""
    last: list[Samples] = [{}]

    async def scraped() -> bool:
        last[0] = await asyncio.to_thread(scrape, url)
        return check(last[0])

    await wait_until(scraped, within=within)
    return last[0]


def scrape(url: str, *, timeout: float = 30.0) -> Samples:
    """GET a /metrics page; return `{sample name: [(labels, value), ...]}`."""
    response = httpx.get(url, timeout=timeout)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples

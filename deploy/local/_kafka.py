"""Apache Kafka 4 in KRaft mode: one node that is broker and controller, jars from Maven Central."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from runstream.deploy.local import _process
from runstream.deploy.local._config import HOST
from runstream.deploy.local._probes import tcp_open
from runstream.deploy.local._service import Service, StackError, render

_JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
_TOPIC_ALREADY_EXISTS = 36
_ADMIN_TIMEOUT_MS = 5000


class KafkaBroker(Service):
    """The Kafka node: storage in `<state>/kafka/data`, jars in `<state>/kafka/libs`."""

    name = "kafka"
    startup_timeout = 120.0

    @property
    def address(self) -> str:
        """The bootstrap address."""
        return self.config.bootstrap_servers

    @property
    def ports(self) -> tuple[int, ...]:
        """The client and the controller port."""
        return (self.config.kafka_port, self.config.kafka_controller_port)

    @property
    def libs(self) -> Path:
        """Folder of the broker's jars (`runstream stack install` fills it)."""
        return self.home / "libs"

    def prepare(self) -> None:
        """Write `server.properties` and the log4j2 config; format the storage the first time."""
        data = self.home / "data"
        render(
            "kafka-server.properties",
            self.home / "server.properties",
            port=self.config.kafka_port,
            controller_port=self.config.kafka_controller_port,
            data_dir=data,
        )
        render("kafka-log4j2.properties", self.home / "log4j2.properties")
        if not (data / "meta.properties").exists():
            self._format()

    def launch(self) -> int:
        """Start `kafka.Kafka server.properties` in the background."""
        argv = self._java("kafka.Kafka", str(self.home / "server.properties"))
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home)

    async def probe(self) -> bool:
        """Whether the broker answers a metadata request."""
        if not await tcp_open(HOST, self.config.kafka_port):
            return False
        try:
            async with admin_client(self.address) as admin:
                await admin.list_topics()
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def configure(self) -> None:
        """Create the events topic (8 partitions) and the dead-letter topic (2) if missing."""
        topics = {self.config.topic: 8, self.config.dlq_topic: 2}
        try:
            await ensure_topics(self.address, topics)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self.fail(f"could not create topics {sorted(topics)}: {exc!r}") from exc

    def _format(self) -> None:
        argv = self._java("kafka.tools.StorageTool", "format", "-t", self._cluster_id())
        argv += ["-c", str(self.home / "server.properties")]
        with self.log_file.open("ab") as log:
            done = subprocess.run(
                argv, check=False, cwd=self.home, stdout=log, stderr=log, timeout=180
            )
        if done.returncode:
            raise self.fail(f"formatting the storage failed (exit {done.returncode})")

    def _cluster_id(self) -> str:
        """This stack's KRaft cluster id, made once and kept in `<state>/kafka/cluster-id`."""
        path = self.home / "cluster-id"
        if not path.exists():
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def _java(self, main: str, *args: str) -> list[str]:
        log4j = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        classpath = f"{self.libs}/*"
        return ["java", *_JVM_OPTIONS, log4j, "-cp", classpath, main, *args]


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (not starting '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@asynccontextmanager
async def admin_client(bootstrap_servers: str) -> AsyncIterator[Any]:
    """A started `AIOKafkaAdminClient`, closed on exit."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=_ADMIN_TIMEOUT_MS
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(bootstrap_servers: str, topics: Mapping[str, int]) -> list[str]:
    """Create each missing topic of `topics` (name → partitions, one replica).

    A topic that exists already is left as it is. Return the names created.
    """
    async with admin_client(bootstrap_servers) as admin:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if not missing:
            return []
        requests = [NewTopic(name, topics[name], 1) for name in missing]
        response = await admin.create_topics(requests)
    for topic, code, *message in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise StackError("kafka", f"creating topic {topic!r} failed: {code} {message}")
    return missing

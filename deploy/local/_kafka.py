"""Apache Kafka 4 in KRaft mode: one node that is broker and controller, or three such nodes
(`StackConfig(brokers=3)`), jars from Maven Central.

Each node is a service of its own (`kafka`, `kafka-2`, `kafka-3`) with its storage and log under
its home; all share the first node's jars and the stack's KRaft cluster id, and each names every
node as a voter. The first node creates the topics: one replica per node (at most three) and
`min.insync.replicas` 2 on a cluster, so an acknowledged (acks=all) write survives any one node.

On a secure stack the client listener is SASL_SSL (SCRAM-SHA-512): the SCRAM users are created
when the storage is formatted, from an argument file (0600) rather than the command line, and the
broker's own password sits in `server.properties` (0600).
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from runstream._config import KafkaConfig
from runstream.deploy.local import _process
from runstream.deploy.local._acls import grant_roles
from runstream.deploy.local._config import HOST, KafkaNode, StackConfig
from runstream.deploy.local._probes import tcp_open
from runstream.deploy.local._secure import (
    KAFKA_ADMIN_USER,
    KAFKA_ROLE_USERS,
    write_private,
)
from runstream.deploy.local._service import Service, ServiceStatus, StackError, fill, render

_JVM_OPTIONS = ("-XX:+UseG1GC", "-Djava.awt.headless=true")
_HEAP = {1: ("-Xms256m", "-Xmx1g"), 3: ("-Xms128m", "-Xmx384m")}
"""Heap per node: three JVMs share a small machine."""
_TOPIC_ALREADY_EXISTS = 36
_SHARED_FILES = threading.Lock()
_ADMIN_TIMEOUT_MS = 5000


class KafkaBroker(Service):
    """One Kafka node: storage in `<home>/data`, jars in `<state>/kafka/libs`."""

    name = "kafka"
    startup_timeout = 120.0

    def __init__(self, config: StackConfig, node: KafkaNode | None = None) -> None:
        super().__init__(config)
        self.node = node or config.kafka_nodes()[0]
        self.name = self.node.name

    @property
    def address(self) -> str:
        """The node's client address."""
        return f"{HOST}:{self.node.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        """The client and the controller port."""
        return (self.node.port, self.node.controller_port)

    @property
    def libs(self) -> Path:
        """Folder of the jars every node runs (`runstream stack install` fills it)."""
        return self.config.state_dir / "kafka" / "libs"

    def prepare(self) -> None:
        """Write `server.properties` and the log4j2 config; format the storage the first time.

        The nodes of a cluster prepare at once (in threads): what they share (the cluster id, the
        recorded size) is settled under one lock, so all format with the same cluster id.
        """
        with _SHARED_FILES:
            self._record_cluster_size()
            self._cluster_id()
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)  # the event data: its owner's only
        write_private(self.home / "server.properties", self.server_properties().encode())
        render("kafka-log4j2.properties", self.home / "log4j2.properties")
        if not (self.home / "data" / "meta.properties").exists():
            self._format()

    def server_properties(self) -> str:
        """This node's `server.properties` (with the secure listener's on a secure stack)."""
        config = self.config
        ports = {"port": self.node.port, "controller_port": self.node.controller_port}
        nodes = config.kafka_nodes()
        text = fill(
            "kafka-server.properties",
            data_dir=self.home / "data",
            node_id=self.node.node_id,
            nodes=len(nodes),
            voters=",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes),
            replication=config.replication,
            min_isr=config.min_insync_replicas,
            **ports,
        )
        if config.secure:
            text = merge_properties(text, self._secure_properties(ports))
        return text

    def launch(self) -> int:
        """Start `kafka.Kafka server.properties` in the background."""
        argv = self._java("kafka.Kafka", str(self.home / "server.properties"))
        return _process.spawn(argv, log_file=self.log_file, cwd=self.home)

    async def probe(self) -> bool:
        """Whether this node answers a metadata request."""
        if not await tcp_open(HOST, self.node.port):
            return False
        kafka = replace(self.config.kafka(admin=True), bootstrap_servers=self.address)
        try:
            async with admin_client(kafka) as admin:
                await admin.list_topics()
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def configure(self) -> None:
        """First node: create the events and verdict topics (8 partitions each: a run's verdicts
        sit on the partition number of its events) and the DLQ (2) if missing.
        """
        if self.node.index:
            return
        topics = {self.config.topic: 8, self.config.verdict_topic: 8, self.config.dlq_topic: 2}
        replicas = (self.config.replication, self.config.min_insync_replicas)
        try:
            await self._wait_for_every_node()
            await ensure_topics(self.config.kafka(admin=True), topics, replicas=replicas)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self.fail(f"could not create topics {sorted(topics)}: {exc!r}") from exc
        if self.config.secure:
            try:
                await grant_roles(self.config.kafka(admin=True))
            except (KafkaError, OSError, TimeoutError) as exc:
                raise self.fail(f"could not grant the roles their ACLs: {exc!r}") from exc

    async def status(self) -> ServiceStatus:
        """As for every service; on a cluster, the partitions this node leads and follows."""
        status = await super().status()
        if self.config.broker_count() == 1 or status.health != "healthy":
            return status
        try:
            async with admin_client(self.config.kafka(admin=True)) as admin:
                described = await admin.describe_topics([self.config.topic])
        except (KafkaError, OSError, TimeoutError) as exc:
            return replace(status, detail=f"partitions unknown: {exc!r}")
        return replace(status, detail=partition_roles(described, self.node.node_id))

    async def _wait_for_every_node(self) -> None:
        """Wait until every node of the cluster has registered (topics need all their replicas)."""
        wanted = self.config.broker_count()
        deadline = asyncio.get_running_loop().time() + self.startup_timeout
        registered = 0
        while True:
            async with admin_client(self.config.kafka(admin=True)) as admin:
                registered = len((await admin.describe_cluster())["brokers"])
            if registered >= wanted:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise self.fail(f"only {registered} of {wanted} Kafka nodes registered")
            await asyncio.sleep(0.5)

    def _record_cluster_size(self) -> None:
        """Say how many nodes the storage is for; refuse to change that on a formatted stack."""
        wanted = self.config.broker_count()
        recorded = self.config.cluster_size_file
        first = self.config.state_dir / "kafka" / "data" / "meta.properties"
        if recorded.exists() and int(recorded.read_text()) != wanted and first.exists():
            raise self.fail(
                f"this stack's Kafka was made with {recorded.read_text().strip()} node(s), not "
                f"{wanted}: `runstream stack down --purge` first (it deletes the stack's data)"
            )
        recorded.parent.mkdir(parents=True, exist_ok=True)
        recorded.write_text(f"{wanted}\n")

    def _secure_properties(self, ports: Mapping[str, int]) -> str:
        """The SASL_SSL listener's settings; writes the broker's PEM key store (0600)."""
        folder = self.config.secure_folder.ensure()
        keystore = self.home / "keystore.pem"
        write_private(keystore, folder.key.read_bytes() + folder.certificate.read_bytes())
        return fill(
            "kafka-server-secure.properties",
            admin_user=KAFKA_ADMIN_USER,
            admin_password=self.config.secrets().kafka_admin,
            keystore=keystore,
            truststore=folder.ca,
            **ports,
        )

    def _format(self) -> None:
        args = ["kafka.tools.StorageTool", "format", "-t", self._cluster_id()]
        args += ["-c", str(self.home / "server.properties"), *self._scram_users()]
        with (
            argument_file(self.home / "format.args", args) as arguments,
            self.log_file.open("ab") as log,
        ):
            argv = self._java(f"@{arguments}")
            done = subprocess.run(
                argv,
                check=False,
                cwd=self.home,
                stdout=log,
                stderr=log,
                timeout=180,
                umask=_process.PRIVATE_UMASK,
            )
        if done.returncode:
            raise self.fail(f"formatting the storage failed (exit {done.returncode})")

    def _scram_users(self) -> list[str]:
        """`--add-scram` arguments for the broker's and the clients' users (secure stack)."""
        if not self.config.secure:
            return []
        secrets = self.config.secrets()
        users = {KAFKA_ADMIN_USER: secrets.kafka_admin}
        users |= {user: secrets.kafka_password(role) for role, user in KAFKA_ROLE_USERS.items()}
        arguments = []
        for user, password in users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return arguments

    def _cluster_id(self) -> str:
        """This stack's KRaft cluster id, made once and kept in `<state>/kafka/cluster-id`."""
        path = self.config.state_dir / "kafka" / "cluster-id"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def _java(self, main: str, *args: str) -> list[str]:
        log4j = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        classpath = f"{self.libs}/*"
        heap = _HEAP[self.config.broker_count()]
        return ["java", *heap, *_JVM_OPTIONS, log4j, "-cp", classpath, main, *args]


def merge_properties(base: str, overrides: str) -> str:
    """`base` without the keys that `overrides` sets, followed by `overrides`."""
    keys = {line.partition("=")[0] for line in overrides.splitlines() if _is_setting(line)}
    kept = [line for line in base.splitlines() if line.partition("=")[0] not in keys]
    return "\n".join(kept) + "\n\n" + overrides


def _is_setting(line: str) -> bool:
    return "=" in line and not line.lstrip().startswith(("#", "!"))


@contextmanager
def argument_file(path: Path, arguments: Sequence[str]) -> Iterator[Path]:
    """A `java @file` argument file (0600) holding `arguments`, deleted afterwards.

    What the file holds never shows in any process's command line (`/proc/<pid>/cmdline`).
    """
    quoted = ['"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"' for arg in arguments]
    write_private(path, ("\n".join(quoted) + "\n").encode())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64 without padding (not starting '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@asynccontextmanager
async def admin_client(kafka: KafkaConfig | str) -> AsyncIterator[Any]:
    """A started `AIOKafkaAdminClient`, closed on exit.

    `kafka` says how to connect (a plain `host:port` list means PLAINTEXT).
    """
    if isinstance(kafka, str):
        kafka = KafkaConfig(bootstrap_servers=kafka)
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=_ADMIN_TIMEOUT_MS)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    kafka: KafkaConfig | str, topics: Mapping[str, int], *, replicas: tuple[int, int] = (1, 1)
) -> list[str]:
    """Create each missing topic of `topics` (name → partitions) with `replicas`:
    (replication factor, `min.insync.replicas`).

    A topic that exists already is left as it is. Return the names created.
    """
    factor, min_isr = replicas
    configs = {"min.insync.replicas": str(min_isr)}
    async with admin_client(kafka) as admin:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if not missing:
            return []
        requests = [NewTopic(name, topics[name], factor, topic_configs=configs) for name in missing]
        response = await admin.create_topics(requests)
    for topic, code, *message in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise StackError("kafka", f"creating topic {topic!r} failed: {code} {message}")
    return missing


def partition_roles(described: Sequence[Mapping[str, Any]], node_id: int) -> str:
    """`node 2 · leads p1,p4 · in the ISR of 8/8` from `describe_topics` of the events topic."""
    leads, in_sync, total, short = [], 0, 0, []
    for topic in described:
        for partition in sorted(topic.get("partitions", []), key=lambda p: p["partition"]):
            total += 1
            number = partition["partition"]
            if partition["leader"] == node_id:
                leads.append(f"p{number}")
            if node_id in partition["isr"]:
                in_sync += 1
            if len(partition["isr"]) < len(partition["replicas"]):
                short.append(f"p{number} isr={sorted(partition['isr'])}")
    text = (
        f"node {node_id} · leads {','.join(leads) or 'nothing'} · in the ISR of {in_sync}/{total}"
    )
    return text + (f" · under-replicated: {'; '.join(short)}" if short else "")

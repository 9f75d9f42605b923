"""Apache Kafka 4 in KRaft mode: one node that is broker and controller, jars from Maven Central.

On a secure stack the client listener is SASL_SSL (SCRAM-SHA-512): the SCRAM users are created
when the storage is formatted, from an argument file (0600) rather than the command line, and the
broker's own password sits in `server.properties` (0600).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from runstream._config import KafkaConfig
from runstream.deploy.local import _process
from runstream.deploy.local._config import HOST
from runstream.deploy.local._probes import tcp_open
from runstream.deploy.local._secure import (
    KAFKA_ADMIN_USER,
    KAFKA_CLIENT_USER,
    write_private,
)
from runstream.deploy.local._service import Service, StackError, fill, render

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
        config = self.config
        ports = {"port": config.kafka_port, "controller_port": config.kafka_controller_port}
        text = fill("kafka-server.properties", data_dir=data, **ports)
        if config.secure:
            text = merge_properties(text, self._secure_properties(ports))
        self.home.mkdir(parents=True, exist_ok=True)
        write_private(self.home / "server.properties", text.encode())
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
            async with admin_client(self.config.kafka(admin=True)) as admin:
                await admin.list_topics()
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def configure(self) -> None:
        """Create the events topic (8 partitions) and the dead-letter topic (2) if missing."""
        topics = {self.config.topic: 8, self.config.dlq_topic: 2}
        try:
            await ensure_topics(self.config.kafka(admin=True), topics)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self.fail(f"could not create topics {sorted(topics)}: {exc!r}") from exc

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
                argv, check=False, cwd=self.home, stdout=log, stderr=log, timeout=180
            )
        if done.returncode:
            raise self.fail(f"formatting the storage failed (exit {done.returncode})")

    def _scram_users(self) -> list[str]:
        """`--add-scram` arguments for the broker's and the clients' users (secure stack)."""
        if not self.config.secure:
            return []
        secrets = self.config.secrets()
        users = {KAFKA_ADMIN_USER: secrets.kafka_admin, KAFKA_CLIENT_USER: secrets.kafka_client}
        arguments = []
        for user, password in users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return arguments

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


async def ensure_topics(kafka: KafkaConfig | str, topics: Mapping[str, int]) -> list[str]:
    """Create each missing topic of `topics` (name → partitions, one replica).

    A topic that exists already is left as it is. Return the names created.
    """
    async with admin_client(kafka) as admin:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if not missing:
            return []
        requests = [NewTopic(name, topics[name], 1) for name in missing]
        response = await admin.create_topics(requests)
    for topic, code, *message in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise StackError("kafka", f"creating topic {topic!r} failed: {code} {message}")
    return missing

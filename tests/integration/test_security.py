"""Guarantee 7, against real services: a secure local stack of its own (SASL_SSL + SCRAM-SHA-512
Kafka, TLS-only PostgreSQL checked with verify-full, random passwords) in a /tmp state folder on
ports from the OS, beside (never instead of) the developers' stack.

The module's fixture brings that stack up once and stops it, by the pids it recorded, whatever the
tests did. One test makes traffic of its own, then scans every process's command line and every
file the stack wrote for each password while the stack and its consumer services run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from runstream._config import KafkaConfig, ProducerConfig
from runstream._settings import Settings
from runstream.deploy import local
from runstream.deploy.local._config import ADMIN_ROLE, READER_ROLE, WRITER_ROLE
from runstream.deploy.local._secure import SecureFolder
from runstream.producer import Run, RunContext
from tests.ports import reserved_ports

pytestmark = pytest.mark.timeout(600)  # the first test also waits for the secure stack to come up

_SERVICE_PORTS = 8
_WAIT = 90.0
_SECRET_FILES = ("secure/passwords.json", "secure/server.key", "kafka/server.properties")
"""Files meant to hold a secret (each must be 0600); every other file the stack wrote may not."""


# -- the secure stack ----------------------------------------------------------------------------


def borrow_kafka_jars(config: local.StackConfig) -> None:
    """Link the developers' stack's Kafka jars, when it has them, instead of a Maven download."""
    source = Settings().stack_dir.absolute() / "kafka" / "libs"
    if any(source.glob("kafka_2.13-*.jar")):
        (config.state_dir / "kafka").mkdir(parents=True)
        (config.state_dir / "kafka" / "libs").symlink_to(source, target_is_directory=True)


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[local.StackConfig]:
    """A running secure stack; stopped (by pid) and deleted afterwards, even after a failure."""
    state = Path(tempfile.mkdtemp(prefix="runstream-secure-", dir="/tmp"))
    state.chmod(0o711)  # PostgreSQL's unprivileged owner must walk into it
    with reserved_ports(_SERVICE_PORTS) as ports:
        yield from _secure_stack_on(state, ports)


def _secure_stack_on(state: Path, ports: list[int]) -> Iterator[local.StackConfig]:
    kafka, controller, postgres, prometheus, alertmanager, exporter, persist, watchdog = ports
    config = local.StackConfig(
        state_dir=state,
        kafka_port=kafka,
        kafka_controller_port=controller,
        postgres_port=postgres,
        prometheus_port=prometheus,
        alertmanager_port=alertmanager,
        exporter_address=f"127.0.0.2:{exporter}",  # not the default host: the setting is obeyed
        persist_health_address=f"127.0.0.1:{persist}",
        watchdog_health_address=f"127.0.0.1:{watchdog}",
        secure=True,
    )
    borrow_kafka_jars(config)
    try:
        try:
            asyncio.run(local.up(config))
        except local.StackError as exc:
            pytest.fail(failure_report(config, exc), pytrace=False)
        yield config
    finally:
        asyncio.run(local.down(config))
        shutil.rmtree(state, ignore_errors=True)


def failure_report(config: local.StackConfig, error: local.StackError) -> str:
    parts = [f"the secure stack did not come up: {error}"]
    for name, tail in local.log_tails(config).items():
        parts.append(f"----- {name} log (end) -----\n{tail}")
    return "\n".join(parts)


def secure_env(config: local.StackConfig, **overrides: str) -> dict[str, str]:
    """This process's environment without its `RUNSTREAM_*`, plus the secure stack's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return inherited | config.env() | overrides


@pytest.fixture
async def reader(secure_stack: local.StackConfig) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(secure_stack.database_url(READER_ROLE))
    yield connection
    await connection.close()


async def wait_for_count(
    db: asyncpg.Connection, query: str, *args: object, expected: int, within: float = _WAIT
) -> int:
    deadline = time.monotonic() + within
    count = -1
    while time.monotonic() < deadline:
        count = int(await db.fetchval(query, *args))
        if count >= expected:
            return count
        await asyncio.sleep(0.25)
    return count


def new_run(kafka: KafkaConfig, spool: Path) -> Run:
    config = ProducerConfig(kafka=kafka, spool_dir=spool, close_timeout=5.0)
    context = RunContext(run_id=f"secure-{uuid.uuid4().hex[:12]}", experiment="security")
    return Run(context, config)


def wrong_password() -> str:
    return f"wrong-{uuid.uuid4().hex}"


def secrets_of(config: local.StackConfig, **more: str) -> dict[str, str]:
    """The stack's passwords (and `more`) by name."""
    return dataclasses.asdict(config.secrets()) | more


def leaked(text: str | bytes, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets that `text` contains (names only: a failure never shows one;
    assert on a variable holding the result, so pytest does not show the arguments either)."""
    data = text.encode() if isinstance(text, str) else text
    return [name for name, secret in secrets.items() if secret.encode() in data]


_METRICS = "SELECT count(*) FROM metrics WHERE run_id = $1"


# -- the happy path: SASL_SSL in, verify-full out --------------------------------------------------


def process_of(pid: int) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment of a running process."""
    proc = Path("/proc") / str(pid)
    argv = proc.joinpath("cmdline").read_bytes().decode().split("\0")[:-1]
    pairs = [
        item.partition("=") for item in proc.joinpath("environ").read_bytes().decode().split("\0")
    ]
    return argv, {name: value for name, _, value in pairs if name}


@pytest.mark.slow
async def test_sdk_events_travel_sasl_ssl_and_persist_stores_them_over_verify_full(
    secure_stack: local.StackConfig, reader: asyncpg.Connection, tmp_path: Path
) -> None:
    persist = {s.name: s for s in await local.status(secure_stack)}["persist"]
    assert persist.health == "healthy", persist
    assert persist.pid is not None
    argv, env = process_of(persist.pid)
    assert argv[-4:] == ["-m", "runstream.cli", "consume", "persist"]
    assert env["RUNSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["RUNSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "sslmode=verify-full" in urlsplit(env["RUNSTREAM_DATABASE_URL"]).query

    run = new_run(secure_stack.kafka(), tmp_path / "spool")
    for step in range(20):
        run.log("loss", 1 / (step + 1), step=step)
    report = run.complete(timeout=30)

    assert report.delivered, report
    assert await wait_for_count(reader, _METRICS, run.run_id, expected=20) == 20
    admin = await asyncpg.connect(secure_stack.database_url(ADMIN_ROLE))
    try:
        writers = await admin.fetch(
            "SELECT s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.usename = $1 AND a.application_name <> 'psql'",
            WRITER_ROLE,
        )
    finally:
        await admin.close()
    assert writers, "persist is connected as the writer role"
    assert all(w["ssl"] and w["version"].startswith("TLS") for w in writers), writers


# -- refused: wrong password, another CA, no TLS or no SASL ---------------------------------------


_TRAINER = """
import sys
from runstream.producer import start_run
with start_run(experiment="security", run_id=sys.argv[1]) as run:
    for step in range(5):
        run.log("acc", step / 10, step=step)
"""


@pytest.mark.slow
async def test_wrong_password_is_refused_and_the_events_wait_in_the_spool(
    secure_stack: local.StackConfig, reader: asyncpg.Connection, tmp_path: Path
) -> None:
    run_id = f"secure-{uuid.uuid4().hex[:12]}"
    spool = tmp_path / "spool"
    wrong = wrong_password()
    trainer_env = secure_env(
        secure_stack,
        RUNSTREAM_KAFKA_SASL_PASSWORD=wrong,
        RUNSTREAM_SPOOL_DIR=str(spool),
        RUNSTREAM_CLOSE_TIMEOUT="3",
    )
    trained = await run_python(["-c", _TRAINER, run_id], trainer_env)

    assert trained.returncode == 0, trained.stderr
    said = trained.stderr
    assert "Authentication failed" in said, said
    assert "SCRAM-SHA-512" in said
    assert "runstream sync" in said  # where the events are and how they get out
    names = leaked(said + trained.stdout, secrets_of(secure_stack, wrong=wrong))
    assert not names, "the trainer printed a password"
    assert any(spool.rglob("*.seg")), "the events wait on disk"

    synced = await run_python(  # the right password delivers what waited on disk
        ["-m", "runstream.cli", "sync", "--spool", str(spool)], secure_env(secure_stack)
    )
    assert synced.returncode == 0, synced.stderr
    names = leaked(synced.stdout + synced.stderr, secrets_of(secure_stack))
    assert not names, "`runstream sync` printed a password"
    assert await wait_for_count(reader, _METRICS, run_id, expected=5) == 5


async def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in a child process with `env`, bounded in time."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=_WAIT,
    )


@pytest.mark.slow
def test_persist_with_a_wrong_password_says_so_without_the_password(
    secure_stack: local.StackConfig, tmp_path: Path
) -> None:
    wrong = wrong_password()
    env = secure_env(
        secure_stack,
        RUNSTREAM_KAFKA_SASL_PASSWORD=wrong,
        RUNSTREAM_PERSIST_GROUP=f"security-{uuid.uuid4().hex[:8]}",
        RUNSTREAM_PERSIST_HEALTH_ADDRESS="127.0.0.1:0",
    )
    stderr = tmp_path / "persist.stderr"
    with stderr.open("wb") as sink:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "runstream.cli", "consume", "persist"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        said = wait_for_text(stderr, "Authentication failed", consumer)
    finally:
        stop(consumer)

    assert "Authentication failed" in said, said
    assert "SCRAM-SHA-512" in said
    names = leaked(said, secrets_of(secure_stack, wrong=wrong))
    assert not names, "persist printed a password"


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline and process.poll() is None:
        if text in path.read_text(errors="replace"):
            break
        time.sleep(0.25)
    return path.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, by its pid (SIGTERM, then SIGKILL)."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def connect_and_close(url: str) -> None:
    """Connect to PostgreSQL and leave again; raises what refused the connection."""
    connection = await asyncpg.connect(url, timeout=10)
    await connection.close()


_REQUEST_TIMEOUT = 5.0


async def start_producer(kafka: KafkaConfig) -> None:
    """Connect a producer with `kafka` and stop it again; raises what refused it."""
    timeout_ms = int(_REQUEST_TIMEOUT * 1000)
    producer = AIOKafkaProducer(**kafka.client_options(), request_timeout_ms=timeout_ms)
    try:
        async with asyncio.timeout(30):
            await producer.start()
    finally:
        await producer.stop()


async def test_a_client_trusting_another_ca_is_refused(
    secure_stack: local.StackConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_ca = str(SecureFolder(tmp_path / "other").ensure().ca)

    with pytest.raises(KafkaError):
        await start_producer(replace(secure_stack.kafka(), ssl_cafile=other_ca))
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)

    url = secure_stack.database_url(WRITER_ROLE).replace(
        str(secure_stack.secure_folder.ca), other_ca
    )
    assert other_ca in url
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_and_close(url)


@contextlib.asynccontextmanager
async def forwarder(target_port: int) -> AsyncIterator[tuple[str, int]]:
    """A TCP forwarder on 127.0.0.3 (port from the OS) to 127.0.0.1:`target_port`: the real
    service, reached under a name its certificate does not carry. Every connection it made is
    closed when it stops."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writers.append(up_writer)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.3", 0)
    try:
        async with server:
            yield "127.0.0.3", server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_a_server_reached_under_another_name_fails_host_name_verification(
    secure_stack: local.StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    right = secure_stack.kafka()
    await start_producer(right)
    async with forwarder(secure_stack.kafka_port) as (host, port):
        with pytest.raises(KafkaConnectionError):
            await start_producer(replace(right, bootstrap_servers=f"{host}:{port}"))
    said = [r.getMessage() for r in caplog.records]
    assert any("CERTIFICATE_VERIFY_FAILED" in m and "127.0.0.3" in m for m in said), said

    url = secure_stack.database_url(WRITER_ROLE)
    await connect_and_close(url)
    async with forwarder(secure_stack.postgres_port) as (host, port):
        moved = url.replace(f"127.0.0.1:{secure_stack.postgres_port}", f"{host}:{port}")
        assert moved != url
        with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.3"):
            await connect_and_close(moved)


@pytest.mark.parametrize(
    "protocol",
    [
        pytest.param("PLAINTEXT", id="plaintext"),
        pytest.param("SSL", id="tls-without-sasl"),
        pytest.param("SASL_PLAINTEXT", id="sasl-without-tls"),
    ],
)
async def test_kafka_refuses_clients_without_tls_and_scram(
    secure_stack: local.StackConfig, protocol: str
) -> None:
    right = secure_stack.kafka()
    uses_sasl = protocol.startswith("SASL")
    kafka = replace(
        right,
        security_protocol=protocol,
        sasl_mechanism=right.sasl_mechanism if uses_sasl else None,
        sasl_username=right.sasl_username if uses_sasl else None,
        sasl_password=right.sasl_password if uses_sasl else None,
        ssl_cafile=right.ssl_cafile if protocol == "SSL" else None,
    )
    await start_producer(right)  # the same broker at the same address takes the right settings
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await start_producer(kafka)
    # The broker closed the connection itself: well within the client's 5 s request timeout.
    assert time.monotonic() - started < _REQUEST_TIMEOUT / 2


async def test_postgres_refuses_tcp_without_tls(secure_stack: local.StackConfig) -> None:
    url = secure_stack.database_url(WRITER_ROLE).partition("?")[0] + "?sslmode=disable"
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await connect_and_close(url)


# -- least privilege ------------------------------------------------------------------------------


async def runstream_tables(connection: asyncpg.Connection) -> dict[str, str]:
    """Every table of the runstream schema → one of its columns."""
    rows = await connection.fetch(
        """SELECT c.relname, (SELECT attname FROM pg_attribute
                              WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped
                              ORDER BY attnum LIMIT 1) AS col
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"""
    )
    return {row["relname"]: row["col"] for row in rows}


async def test_the_reader_cannot_change_any_table(
    secure_stack: local.StackConfig, reader: asyncpg.Connection
) -> None:
    tables = await runstream_tables(reader)
    assert {"runs", "metric_chunks", "metric_marks"} <= set(tables)
    refused = []
    for table, column in sorted(tables.items()):
        for statement in (
            f'INSERT INTO "{table}" DEFAULT VALUES',
            f'UPDATE "{table}" SET "{column}" = "{column}"',
            f'DELETE FROM "{table}"',
            f'TRUNCATE "{table}"',
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
            refused.append(statement)
    assert len(refused) == 4 * len(tables)


async def test_the_writer_cannot_create_roles_or_read_password_hashes(
    secure_stack: local.StackConfig,
) -> None:
    writer = await asyncpg.connect(secure_stack.database_url(WRITER_ROLE))
    try:
        attributes = await writer.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user"
        )
        assert attributes is not None
        assert tuple(attributes) == (False, False, False, False)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.execute(f"CREATE ROLE intruder_{uuid.uuid4().hex[:8]} LOGIN")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.fetch("SELECT rolname, rolpassword FROM pg_authid")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.execute(f"ALTER ROLE {READER_ROLE} PASSWORD 'changed'")
    finally:
        await writer.close()


# -- bind addresses -------------------------------------------------------------------------------


async def refused(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_every_service_listens_only_on_its_configured_address(
    secure_stack: local.StackConfig,
) -> None:
    exporter_host, _, exporter_port = secure_stack.exporter_address.rpartition(":")
    assert exporter_host == "127.0.0.2"
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        response = await client.get(f"http://{secure_stack.exporter_address}/metrics")
    assert response.status_code == 200
    assert await refused("127.0.0.1", int(exporter_port))

    on_loopback = [
        secure_stack.kafka_port,
        secure_stack.kafka_controller_port,
        secure_stack.postgres_port,
        secure_stack.prometheus_port,
        secure_stack.alertmanager_port,
        int(secure_stack.persist_health_address.rpartition(":")[2]),
        int(secure_stack.watchdog_health_address.rpartition(":")[2]),
    ]
    for port in on_loopback:
        assert not await refused("127.0.0.1", port), port
        assert await refused("127.0.0.2", port), port


def test_clients_get_their_own_credentials_never_the_brokers(
    secure_stack: local.StackConfig,
) -> None:
    env = secure_stack.env()
    assert env["RUNSTREAM_DATABASE_URL"].startswith(f"postgresql://{WRITER_ROLE}:")
    assert env["RUNSTREAM_DATABASE_READ_URL"].startswith(f"postgresql://{READER_ROLE}:")
    assert "RUNSTREAM_DATABASE_ADMIN_URL" not in env
    assert secure_stack.secrets().postgres_admin not in "".join(env.values())
    assert secure_stack.secrets().kafka_admin not in "".join(env.values())


# -- secrets never in argv or logs ----------------------------------------------------------------


def command_lines() -> dict[int, bytes]:
    """Every running process's command line, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = entry.joinpath("cmdline").read_bytes()
    return found


def files_under(folder: Path) -> Iterator[Path]:
    """Every regular file below `folder`, not following symbolic links."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


async def test_no_password_in_any_command_line_or_any_file_the_stack_wrote(
    secure_stack: local.StackConfig, reader: asyncpg.Connection, tmp_path: Path
) -> None:
    # Traffic of its own first (stored events, a refused login), so it runs in any order.
    run = new_run(secure_stack.kafka(), tmp_path / "spool")
    run.log("loss", 1.0, step=0)
    assert (await asyncio.to_thread(run.complete, 30)).delivered
    assert await wait_for_count(reader, _METRICS, run.run_id, expected=1) == 1
    refused_env = secure_env(
        secure_stack,
        RUNSTREAM_KAFKA_SASL_PASSWORD=wrong_password(),
        RUNSTREAM_SPOOL_DIR=str(tmp_path / "refused"),
        RUNSTREAM_CLOSE_TIMEOUT="3",
    )
    refused = await run_python(["-c", _TRAINER, f"refused-{uuid.uuid4().hex[:8]}"], refused_env)
    assert "Authentication failed" in refused.stderr
    secrets = secrets_of(secure_stack)
    statuses = await local.status(secure_stack)
    pids = {s.name: s.pid for s in statuses if s.pid is not None}
    assert len(pids) == len(statuses), statuses

    cmdlines = command_lines()
    assert all(cmdlines.get(pid) for pid in pids.values())  # we did read the stack's processes
    leaks = {pid: leaked(line, secrets) for pid, line in cmdlines.items()}
    assert not {pid: names for pid, names in leaks.items() if names}, "password in a command line"

    _, persist_env = process_of(pids["persist"])  # the secret is there, in the environment
    names = leaked(persist_env["RUNSTREAM_KAFKA_SASL_PASSWORD"], secrets)
    assert names == ["kafka_persist"]  # its own role's, not the trainers' (see _acls)

    scanned = 0
    for path in files_under(secure_stack.state_dir):
        relative = str(path.relative_to(secure_stack.state_dir))
        if relative in _SECRET_FILES:
            assert path.stat().st_mode & 0o077 == 0, f"{relative} is readable by others"
            continue
        with contextlib.suppress(FileNotFoundError):  # a file rotated away while we looked
            content = path.read_bytes()
            scanned += 1
            names = leaked(content, secrets)
            assert not names, f"a password is in {relative}"
    logs = {path.name for path in files_under(secure_stack.state_dir) if path.suffix == ".log"}
    assert {"kafka.log", "postgres.log", "persist.log", "export.log", "watchdog.log"} <= logs
    assert scanned > len(_SECRET_FILES)

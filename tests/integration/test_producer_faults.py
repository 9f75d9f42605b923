"""The producer under the faults real training hosts throw, against the real stack.

Oversized events, spools left for another destination, full disks, exhausted file descriptors,
SIGTERM at any moment, a broker that never answers: each test injects its fault itself (a tmpfs
it mounts, an rlimit, a signal by pid, a socket that never reads, a broker of its own stopped:
tests/integration/private.py; the stack's broker is never stopped).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka.admin import NewTopic

from runstream import ValidationError
from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.deploy.local._kafka import KafkaBroker, admin_client
from runstream.producer import CloseReport, Run, RunContext
from runstream.producer._deadletter import DEAD_LETTERS
from runstream.producer._spool import Destination, SegmentWriter, SpoolFolder
from runstream.schemas import Body, EventRecord, Metrics, Params, default_codec, event_record
from tests.harness import Harness, read_topic
from tests.integration.private import start_broker, stop_broker
from tests.ports import REFUSED, blackholed


@pytest.fixture
async def admin_db(stack: StackEndpoints) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(stack.admin_url)
    yield connection
    await connection.close()


@contextlib.asynccontextmanager
async def topics_a_and_b(servers: str) -> AsyncIterator[tuple[str, str]]:
    """Two new topics (A and B) on the broker at `servers`, deleted afterwards."""
    names = tuple(f"test.faults.{side}.{uuid.uuid4().hex[:8]}" for side in "ab")
    async with admin_client(servers) as admin:
        response = await admin.create_topics([NewTopic(name, 2, 1) for name in names])
        assert [error[1] for error in response.topic_errors] == [0, 0], response
    yield names[0], names[1]
    async with admin_client(servers) as admin:
        await admin.delete_topics(list(names))


@pytest.fixture
async def two_topics(stack: StackEndpoints) -> AsyncIterator[tuple[str, str]]:
    """Two new topics (A and B) of this test only on the stack's broker, deleted afterwards."""
    async with topics_a_and_b(stack.bootstrap_servers) as names:
        yield names


async def count_rows(
    admin_db: asyncpg.Connection, query: str, *args: object, expected: int, within: float = 60
) -> int:
    """Poll the count `query` until it reaches `expected`, then once more after a second (so that
    a duplicate would show); the last count seen.
    """
    deadline = time.monotonic() + within
    count = -1
    while time.monotonic() < deadline:
        count = int(await admin_db.fetchval(query, *args))
        if count >= expected:
            await asyncio.sleep(1.0)
            return int(await admin_db.fetchval(query, *args))
        await asyncio.sleep(0.2)
    return count


async def topic_events(
    servers: str, topic: str, count: int, within: float = 30
) -> list[EventRecord]:
    """The events on `topic`, decoded: read from the start until `count` arrived (at most
    `within` seconds), then a little longer, so that one too many would show.
    """
    kafka = KafkaConfig(bootstrap_servers=servers)
    records = await read_topic(kafka, topic, count=count, within=within)
    records += await read_topic(kafka, topic, count=count + 1, within=2) if records else []
    unique = {(r.partition, r.offset): r for r in records}
    return [default_codec().decode(r.value) for r in unique.values()]


def sync(spool: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    """`runstream sync --spool SPOOL …`, as a user runs it."""
    command = [sys.executable, "-m", "runstream.cli", "sync", "--spool", str(spool), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=60)


def new_run(servers: str | KafkaConfig, spool: Path, **options: object) -> Run:
    kafka = servers if isinstance(servers, KafkaConfig) else KafkaConfig(bootstrap_servers=servers)
    config = ProducerConfig(
        kafka=kafka,
        spool_dir=spool,
        heartbeat_interval=3600.0,
        **options,  # type: ignore[arg-type]
    )
    return Run(RunContext(run_id=f"faults-{uuid.uuid4().hex[:12]}", experiment="faults"), config)


@pytest.mark.parametrize("call", ["log_params", "log_row", "log_metrics", "log_record"])
async def test_calls_over_the_size_limit_raise_and_the_good_events_after_them_arrive(
    stack: StackEndpoints, admin_db: asyncpg.Connection, tmp_path: Path, call: str
) -> None:
    run = new_run(stack.bootstrap_servers, tmp_path / "spool")
    oversized: Callable[[], None] = {
        "log_params": lambda: run.log_params({f"p{i}": "v" * 6000 for i in range(400)}),
        "log_row": lambda: run.log_row("wide", **{f"c{i}": "v" * 6000 for i in range(400)}),
        "log_metrics": lambda: run.log_metrics({f"m{i}.{'x' * 240}": 1.0 for i in range(3000)}),
        "log_record": lambda: run.log_record("INFO", "x" * 200_000, "too long a logger name"),
    }[call]
    with pytest.raises(ValidationError, match=r"at most \d+ bytes"):
        oversized()
    for step in range(100):
        run.log("loss", float(step), step=step)
    report = await asyncio.to_thread(run.complete, 60)
    assert report.delivered, report
    count = await count_rows(
        admin_db, "SELECT count(*) FROM metrics WHERE run_id = $1", run.run_id, expected=100
    )
    assert count == 100
    status = await admin_db.fetchval("SELECT status FROM runs WHERE run_id = $1", run.run_id)
    assert status == "completed"


def seeded_spool(spool: Path, destination: Destination, run_id: str) -> tuple[int, bytes]:
    """A dead session's folder written directly in the spool format: 50 metrics, a Params event
    too large for the topic, 50 more metrics. Returns (good events, the oversized event).
    """
    codec = default_codec()
    producer_id = str(uuid.uuid4())
    folder = SpoolFolder.create(spool / producer_id, destination)
    writer = SegmentWriter(folder, segment_bytes=16 * 1024**2)

    def event(seq: int, body: Body) -> bytes:
        record = event_record(
            run_id=run_id,
            experiment="faults",
            rank=0,
            world_size=1,
            producer_id=producer_id,
            seq=seq,
            kind=body.KIND,
            body=body,
            time_us=1_000_000 + seq,
        )
        return codec.encode_record(record)

    def metric(seq: int) -> bytes:
        return event(seq, Metrics(step=seq, values=[("loss", float(seq))]))

    oversized = event(50, Params(params={f"p{i}": "v" * 6000 for i in range(400)}))
    writer.append(run_id.encode(), [metric(seq) for seq in range(50)])
    writer.append(run_id.encode(), [oversized])
    writer.append(run_id.encode(), [metric(seq) for seq in range(51, 101)])
    writer.close()
    folder.unlock()
    return 100, oversized


async def test_sync_moves_an_oversized_spooled_event_aside_and_delivers_the_rest(
    stack: StackEndpoints, run_env: dict[str, str], tmp_path: Path, unique_topic: str
) -> None:
    spool = tmp_path / "spool"
    run_id = f"faults-{uuid.uuid4().hex[:12]}"
    good, oversized = seeded_spool(
        spool, Destination(stack.bootstrap_servers, unique_topic), run_id
    )
    started = time.monotonic()
    synced = await asyncio.to_thread(sync, spool, run_env, "--timeout", "30")
    assert time.monotonic() - started < 30
    assert synced.returncode == 0, synced.stderr
    assert f"delivered {good} events from 1 spool folders" in synced.stderr
    assert "skipped 1 events over their size limit" in synced.stderr
    [line] = (spool / DEAD_LETTERS).read_text().splitlines()
    record = json.loads(line)
    assert "Params event" in record["reason"]
    assert "over its limit" in record["reason"]
    assert base64.b64decode(record["value"]) == oversized
    events = await topic_events(stack.bootstrap_servers, unique_topic, good)
    assert sorted(e.seq for e in events) == [s for s in range(101) if s != 50]
    assert [p for p in spool.iterdir() if p.is_dir()] == [], "the delivered folder is gone"


_KILLED_TRAINER = """
import os, signal, sys, time
from runstream.producer import start_run
run = start_run(experiment="faults", run_id=sys.argv[1])
for step in range(2_000):
    run.log("loss", float(step), step=step)
time.sleep(0.5)  # more than one flush interval: everything is on disk
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
async def test_a_dead_sessions_spool_goes_to_its_own_topic_never_to_the_next_runs(
    private_kafka: KafkaBroker, run_env: dict[str, str], tmp_path: Path
) -> None:
    async with topics_a_and_b(private_kafka.address) as (topic_a, topic_b):
        await _a_dead_session_then_the_next_run(private_kafka, run_env, tmp_path, topic_a, topic_b)


async def _a_dead_session_then_the_next_run(
    broker: KafkaBroker, run_env: dict[str, str], tmp_path: Path, topic_a: str, topic_b: str
) -> None:
    """Trainer A dies while the test's own broker is stopped; run B then logs to topic B on the
    same spool; `runstream sync` sends A's dead session to topic A."""
    servers = broker.address
    spool = tmp_path / "spool"
    env = {**run_env, "RUNSTREAM_SPOOL_DIR": str(spool), "RUNSTREAM_BOOTSTRAP_SERVERS": servers}
    run_a, run_b = (f"faults-{side}-{uuid.uuid4().hex[:8]}" for side in "ab")
    async with broker_stopped(broker):
        trainer_a = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _KILLED_TRAINER, run_a],
            env={**env, "RUNSTREAM_TOPIC": topic_a},
            check=False,
            capture_output=True,
        )
        assert trainer_a.returncode == -9
    run = Run(
        RunContext(run_id=run_b, experiment="faults"),
        ProducerConfig(
            kafka=KafkaConfig(bootstrap_servers=servers, topic=topic_b), spool_dir=spool
        ),
    )
    for step in range(100):
        run.log("loss", float(step), step=step)
    await asyncio.sleep(3.0)  # B's courier has had time to look at the spool's dead sessions
    report = await asyncio.to_thread(run.complete, 60)
    assert report.delivered, report
    on_b = await topic_events(servers, topic_b, 102)
    assert {e.run_id for e in on_b} == {run_b}, "none of A's events reached topic B"
    assert await topic_events(servers, topic_a, 1, within=5) == []
    synced = await asyncio.to_thread(sync, spool, env)
    assert synced.returncode == 0, synced.stderr
    assert "delivered 2001 events from 1 spool folders" in synced.stderr  # RunStarted too
    on_a = await topic_events(servers, topic_a, 2001)
    assert len(on_a) == 2001
    assert {e.run_id for e in on_a} == {run_a}


async def test_sync_to_sends_a_folder_elsewhere_on_purpose(
    stack: StackEndpoints, run_env: dict[str, str], tmp_path: Path, two_topics: tuple[str, str]
) -> None:
    recorded, chosen = two_topics
    spool = tmp_path / "spool"
    run_id = f"faults-{uuid.uuid4().hex[:12]}"
    seeded_spool(spool, Destination(REFUSED, recorded), run_id)  # a cluster long gone
    to = f"{stack.bootstrap_servers}/{chosen}"
    synced = await asyncio.to_thread(sync, spool, run_env, "--to", to, "--timeout", "30")
    assert synced.returncode == 0, synced.stderr
    assert "delivered 100 events from 1 spool folders" in synced.stderr
    assert len(await topic_events(stack.bootstrap_servers, chosen, 100)) == 100
    assert await topic_events(stack.bootstrap_servers, recorded, 1, within=5) == []


async def test_sync_ends_when_the_destination_never_answers_and_says_what_it_left(
    stack: StackEndpoints, run_env: dict[str, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    seeded_spool(spool, Destination(REFUSED, "gone.topic"), f"faults-{uuid.uuid4().hex[:8]}")
    synced = await asyncio.to_thread(sync, spool, run_env, "--timeout", "3")
    assert synced.returncode == 6  # Kafka did not take the events
    assert "delivered 0 events from 0 spool folders" in synced.stderr
    assert "left 101 events on disk" in synced.stderr  # the oversized one was not reached
    assert any(spool.rglob("*.seg")), "what was not sent stays in the spool"


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (the tests run as root), unmounted afterwards."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


@contextlib.asynccontextmanager
async def broker_stopped(broker: KafkaBroker) -> AsyncIterator[None]:
    """The test's own broker stopped (by its pid) for the block, started again after it."""
    assert await asyncio.to_thread(stop_broker, broker) is not None, "it was running"
    try:
        yield
    finally:
        await asyncio.to_thread(start_broker, broker)


@pytest.mark.slow
@pytest.mark.parametrize("floor", [0, 1024**2], ids=["disk-full", "free-space-floor"])
async def test_a_full_disk_drops_counted_events_and_loses_nothing_it_took(
    stack: StackEndpoints, private_kafka: KafkaBroker, tmp_path: Path, floor: int
) -> None:
    """The test's own broker is stopped while the run logs onto a 3 MB tmpfs; a persist of the
    test's own stores what the run kept."""
    async with Harness.create(
        private_kafka.address, stack.admin_url, tmp_path, writer_url=stack.writer_url
    ) as harness:
        harness.service("persist").start()
        with small_disk(tmp_path / "disk", "3m") as disk:
            run, report = await _log_past_a_full_disk(harness.kafka, private_kafka, disk, floor)
        assert report.dropped > 0, report
        assert not report.delivered, report
        assert report.remaining == 0, report
        kept = run.events_logged - report.dropped - 1  # RunStarted is no metrics row
        query = f"SELECT count(*) FROM metrics WHERE run_id = '{run.run_id}'"
        assert await harness.wait_for_rows(query, kept, within=120) == kept
        await asyncio.sleep(1.0)  # a duplicate would show now
        assert await harness.fetchval(query) == kept
    assert run.problems.counts["spool_full" if floor else "spool_write"] > 0


async def _log_past_a_full_disk(
    kafka: KafkaConfig, broker: KafkaBroker, disk: Path, floor: int
) -> tuple[Run, CloseReport]:
    async with broker_stopped(broker):
        run = new_run(
            kafka,
            disk / "spool",
            memory_events=2_000,
            segment_bytes=256 * 1024,
            spool_min_free_bytes=floor,
        )
        for step in range(120_000):  # about three times what the disk holds
            run.log("loss", float(step), step=step)
            if step % 5_000 == 0:
                await asyncio.sleep(0.1)  # rounds write, the disk fills
    # The broker is back: the courier drains the spool and frees the disk while the run
    # goes on logging, so writes succeed again after those that failed.
    for step in range(120_000, 200_000):
        run.log("loss", float(step), step=step)
        if step % 2_000 == 0:
            await asyncio.sleep(0.1)
    assert run.events_logged == 200_001  # RunStarted and every metric: no call refused
    return run, await asyncio.to_thread(run.close, 120)


_FEW_DESCRIPTORS = """
import json, os, resource, sys, time
from pathlib import Path
from runstream._settings import Settings
from runstream.producer import Run, RunContext
from dataclasses import replace
config = replace(Settings().producer(), segment_bytes=64 * 1024, heartbeat_interval=3600.0)
run = Run(RunContext(run_id=sys.argv[1], experiment="faults"), config)
here = Path(sys.argv[2])
step = 0
def train(seconds):
    global step
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for _ in range(500):
            run.log("loss", float(step), step=step)
            step += 1
        time.sleep(0.01)
train(0.5)
[segment] = [  # the spool's open segment
    int(n) for n in os.listdir("/proc/self/fd")
    if os.path.realpath(f"/proc/self/fd/{n}").endswith(".seg")
]
spare = []
for n in range(segment):  # every free number below it taken, then no new one at all
    try:
        os.fstat(n)
    except OSError:
        spare.append(os.open(os.devnull, os.O_RDONLY))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (segment, hard))
train(2.0)  # segment rolls fail all along
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
for n in spare:
    os.close(n)
flags = os.O_WRONLY | os.O_CREAT
checkpoints = [os.open(here / f"checkpoint-{n}", flags, 0o600) for n in range(20)]
for n in checkpoints:
    os.write(n, b"model weights")
train(1.0)
report = run.complete(60)
print(json.dumps({"submitted": run.events_logged, "dropped": report.dropped,
                  "delivered": report.delivered, "metrics": step}))
"""


def checkpoint_contents(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in folder.glob("checkpoint-*")]


async def test_no_file_descriptor_at_a_segment_roll_puts_no_spool_byte_in_another_file(
    stack: StackEndpoints, run_env: dict[str, str], admin_db: asyncpg.Connection, tmp_path: Path
) -> None:
    run_id = f"faults-fd-{uuid.uuid4().hex[:8]}"
    env = {**run_env, "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    trainer = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _FEW_DESCRIPTORS, run_id, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert trainer.returncode == 0, trainer.stderr
    outcome = json.loads(trainer.stdout)
    checkpoints = checkpoint_contents(tmp_path)
    assert len(checkpoints) == 20
    assert set(checkpoints) == {b"model weights"}, "no spool byte in them"
    kept = outcome["submitted"] - outcome["dropped"] - 2  # RunStarted, RankFinished
    assert outcome["delivered"] == (outcome["dropped"] == 0)
    count = await count_rows(
        admin_db, "SELECT count(*) FROM metrics WHERE run_id = $1", run_id, expected=kept
    )
    assert count == kept == outcome["metrics"] - outcome["dropped"]


_TERMINATED_TRAINER = """
import sys
from dataclasses import replace
from runstream._settings import Settings
from runstream.producer import start_run
config = replace(Settings().producer(), memory_events=64, heartbeat_interval=0.2)
run = start_run(experiment="faults", run_id=sys.argv[1], config=config)
print("ready", flush=True)
step = 0
while True:
    run.log("loss", float(step), step=step)
    run.log_metrics({"acc": 0.5, "lr": 0.1}, step=step)
    if step % 50 == 0:
        run.log_row("evals", step=step, score=0.5)
    step += 1
"""


def terminate_at_random(run_id: str, env: dict[str, str], delay: float) -> tuple[int, float]:
    """Start a trainer, SIGTERM it `delay` seconds into its loop; (exit code, seconds to exit)."""
    with subprocess.Popen(
        [sys.executable, "-c", _TERMINATED_TRAINER, run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as trainer:
        assert trainer.stdout is not None
        assert trainer.stdout.readline() == "ready\n"
        time.sleep(delay)
        trainer.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = trainer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            trainer.kill()
            code = -signal.SIGKILL
        return code, time.monotonic() - sent


@pytest.mark.slow
async def test_sigterm_at_random_moments_of_a_logging_loop_always_ends_the_run_canceled(
    stack: StackEndpoints, run_env: dict[str, str], admin_db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {**run_env, "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    chance = random.Random(13)
    run_ids = [f"faults-term-{n}-{uuid.uuid4().hex[:6]}" for n in range(50)]
    for run_id in run_ids:
        code, took = await asyncio.to_thread(
            terminate_at_random, run_id, env, chance.uniform(0.0, 0.6)
        )
        assert code == -signal.SIGTERM, (run_id, code, took)
        assert took < 10
    query = "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[]) AND status = 'canceled'"
    canceled = await count_rows(admin_db, query, run_ids, expected=len(run_ids))
    assert canceled == len(run_ids)


_STEADY_TRAINER = """
import sys, time
from runstream.producer import start_run
run = start_run(experiment="faults", run_id=sys.argv[1])
step = 0
until = time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    for _ in range(200):
        run.log("loss", float(step), step=step)
        step += 1
    time.sleep(0.05)
print("done", flush=True)
"""


def courier_of(trainer: subprocess.Popen[str], within: float = 20) -> int:
    """The pid of the trainer's courier process, once it runs."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for child in psutil.Process(trainer.pid).children():
            with contextlib.suppress(psutil.Error):
                if "_courier" in " ".join(child.cmdline()):
                    return child.pid
        time.sleep(0.1)
    raise AssertionError("no courier started")


def sync_times(courier: int, seconds: float, trace: Path) -> list[float]:
    """When the courier called fdatasync during `seconds` (strace attached to all its threads)."""
    command = [
        "strace",
        "-f",
        "-ttt",
        "-e",
        "trace=fdatasync",
        "-o",
        str(trace),
        "-p",
        str(courier),
    ]
    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as tracer:
        time.sleep(seconds)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
    times = []
    for line in trace.read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2].startswith("fdatasync("):
            times.append(float(fields[1]))
    return times


def blackholed_trainer(env: dict[str, str], run_id: str, trace: Path) -> list[float]:
    with subprocess.Popen(
        [sys.executable, "-c", _STEADY_TRAINER, run_id, "75"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as trainer:
        try:
            courier = courier_of(trainer)
            time.sleep(2.0)  # connected to the broker that never answers
            return sync_times(courier, 60.0, trace)
        finally:
            trainer.kill()


@pytest.mark.slow
async def test_a_blackholed_broker_does_not_stop_the_spool_being_synced_every_second(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    with blackholed() as broker:  # connections are accepted by the kernel, never answered
        env = {
            **run_env,
            "RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool"),
            "RUNSTREAM_BOOTSTRAP_SERVERS": broker,
        }
        times = await asyncio.to_thread(
            blackholed_trainer, env, f"faults-hole-{uuid.uuid4().hex[:8]}", tmp_path / "trace"
        )
    assert times, "the courier synced the spool"
    assert times[-1] - times[0] > 58
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) <= 1.0, f"the longest time without a sync: {max(gaps):.1f} s"

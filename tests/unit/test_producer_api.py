"""The SDK's caller side: bad input fails where it was written and logs nothing partial.

No broker is needed: events wait in the spool (the broker address points at a closed port).
"""

from __future__ import annotations

import io
import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from runstream import ClosedError, TransportError, ValidationError
from runstream._config import KafkaConfig, ProducerConfig
from runstream.producer import Run, RunContext
from runstream.producer._courier import RepeatFilter
from runstream.producer._couriers import CourierProcess
from runstream.producer._problems import ProblemReporter
from runstream.producer._rounds import RoundScheduler
from runstream.producer._shipper import Shipper
from runstream.producer._spool import SegmentCursor, SpoolFolder
from runstream.schemas import Metrics, default_codec
from tests.ports import REFUSED, blackholed
from tests.spooled import bodies, spooled_events


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    handle = Run(RunContext(run_id="unit-run", experiment="unit"), config)
    yield handle
    handle.close(timeout=0.5)


def submitted(run: Run) -> int:
    return run.events_logged


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("", 1.0),
        ("x" * 251, 1.0),
        ("loss\n", 1.0),
        ("tab\tname", 1.0),
        ("loss", object()),
        ("loss", [1.0]),
        ("loss", None),
        ("loss", True),
    ],
)
def test_bad_scalars_raise_and_log_nothing(run: Run, name: str, value: object) -> None:
    before = submitted(run)
    with pytest.raises(ValidationError):
        run.log(name, value)
    assert submitted(run) == before


def test_bad_step_raises(run: Run) -> None:
    with pytest.raises(ValidationError, match="step"):
        run.log("loss", 1.0, step=-1)
    with pytest.raises(ValidationError, match="step"):
        run.log("loss", 1.0, step=1.5)  # type: ignore[arg-type]


def test_log_metrics_is_all_or_nothing(run: Run) -> None:
    before = submitted(run)
    with pytest.raises(ValidationError):
        run.log_metrics({"good": 1.0, "bad": "nope"})
    assert submitted(run) == before


def test_non_finite_values_are_accepted(run: Run) -> None:
    before = submitted(run)
    run.log("loss", float("nan"))
    run.log("loss", float("inf"))
    assert submitted(run) == before + 2


def test_implicit_steps_count_per_name(tmp_path: Path) -> None:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    run = Run(RunContext(run_id="steps", experiment="unit"), config)
    run.log("a", 1.0)
    run.log("a", 2.0)
    run.log("b", 1.0)
    run.log("a", 3.0, step=10)
    run.log("a", 4.0)
    run.log_metrics({"a": 5.0, "b": 2.0})
    run.close(timeout=0.2)
    steps = [(body.values[0][0], body.step) for body in bodies(spooled_events(tmp_path), Metrics)]
    assert steps == [("a", 0), ("a", 1), ("b", 0), ("a", 10), ("a", 11), ("a", 12)]


def test_events_handed_over_from_many_threads_are_never_counted_short(tmp_path: Path) -> None:
    """`flush` waits for the count read when it is called. A count two threads keep can go back
    (one's older number stored after the other's newer one): `flush` would then return before
    the other thread's event was acknowledged.
    """
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    shipper = Shipper(config, ProblemReporter(None), b"key")
    done = 0
    done_lock = threading.Lock()
    behind: list[tuple[int, int]] = []

    def submit_and_count() -> None:
        nonlocal done
        for _ in range(20_000):
            shipper.submit(b"event")
            with done_lock:
                done += 1
                floor = done
            if (seen := shipper.submitted) < floor:
                behind.append((seen, floor))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes
    try:
        threads = [threading.Thread(target=submit_and_count) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
        shipper.close(0.1)
    assert behind == [], f"{len(behind)} reads counted fewer than were handed over"
    assert shipper.submitted == 6 * 20_000


def test_spool_full_drops_are_counted_and_reported(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=REFUSED),
        spool_dir=tmp_path,
        spool_max_bytes=20_000,
    )
    run = Run(RunContext(run_id="full", experiment="unit"), config, on_error=errors.append)
    for step in range(2_000):
        run.log("loss", 1.0, step=step)
        if step % 500 == 0:
            run.flush(timeout=0.2)
    report = run.close(timeout=0.2)
    assert run.problems.counts["spool_full"] >= 1
    assert any("spool is full" in str(e) for e in errors)
    on_disk = spooled_events(tmp_path)
    assert report.remaining == len(on_disk), "the report counts what the spool kept"
    assert run.events_logged - report.remaining > 0, "the rest was dropped, not kept in memory"
    kept = [body.step for body in bodies(on_disk, Metrics)]
    assert 0 < len(kept) < 2_000
    assert kept == list(range(len(kept))), "drops come once the spool is full: a gapless prefix"


def test_images_must_be_png(run: Run, tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a not a png")
    with pytest.raises(ValidationError, match="PNG"):
        run.log_image("fake", path=fake)


def test_files_over_the_limit_are_refused(run: Run, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"0" * (600 * 1024))
    with pytest.raises(ValidationError, match="at most"):
        run.upload_file("big", big)


def test_table_columns_must_have_equal_lengths(run: Run) -> None:
    with pytest.raises(ValidationError, match="equal length"):
        run.log_table("t", {"a": [1, 2], "b": [1]})


def test_calls_after_close_raise(run: Run) -> None:
    run.close(timeout=0.5)
    with pytest.raises(ClosedError):
        run.log("loss", 1.0)


def test_plot_without_savefig_is_refused(run: Run) -> None:
    with pytest.raises(ValidationError, match="matplotlib"):
        run.log_image("x", plot=io.BytesIO())


def test_close_with_a_dead_broker_returns_and_says_what_is_left(tmp_path: Path) -> None:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    run = Run(RunContext(run_id="dead-broker", experiment="unit"), config)
    for step in range(100):
        run.log("loss", 1.0, step=step)
    started = time.monotonic()
    report = run.close(timeout=1.0)
    assert time.monotonic() - started < 1.0 + 5.0, "bounded by its timeout (plus shutdown grace)"
    assert not report.delivered
    assert report.remaining == 101  # RunStarted + 100 values
    assert Path(report.spool_path).is_dir()
    assert len(bodies(spooled_events(tmp_path), Metrics)) == 100


def test_a_full_memory_queue_spills_to_disk_and_loses_nothing(tmp_path: Path) -> None:
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path, memory_events=10
    )
    run = Run(RunContext(run_id="spill", experiment="unit"), config)
    for step in range(5_000):
        run.log("loss", float(step), step=step)
    run.close(timeout=0.2)
    steps = [body.step for body in bodies(spooled_events(tmp_path), Metrics)]
    assert steps == list(range(5_000)), "in order, none lost, none twice"


def metrics_on_disk(spool: Path) -> int:
    """Metrics events in the spool's segments, read without moving or removing anything."""
    count = 0
    for path in spool.iterdir():
        folder = SpoolFolder(path)
        for segment in folder.segments():
            cursor = SegmentCursor(segment)
            while True:
                end, frames = folder.read_from(cursor, 1024**2)
                if not frames:
                    break
                decoded = (default_codec().decode(value) for _, value in frames)
                count += sum(isinstance(e.body, Metrics) for e in decoded)
                cursor = SegmentCursor(segment, end)
    return count


@pytest.mark.parametrize("courier", ["process", "thread"])
def test_log_never_waits_on_a_blackholed_broker(
    tmp_path: Path, courier: Literal["process", "thread"]
) -> None:
    """Guarantee 1: the broker accepts connections and never answers; the queue spills to disk
    in the caller's thread. No `log()` waits: any wait on Kafka lasts a request timeout (seconds),
    while the slowest call here is bounded by ten flush intervals (0.5 s). That leaves room for
    what a busy 2-core host does to any call (10-60 ms seen, as against a refused port)."""
    with blackholed() as address:
        config = ProducerConfig(
            kafka=KafkaConfig(bootstrap_servers=address),
            spool_dir=tmp_path,
            memory_events=10_000,
            courier=courier,
        )
        run = Run(RunContext(run_id=f"blackholed-{courier}", experiment="unit"), config)
        try:
            slowest = 0.0
            for step in range(200_000):
                started = time.perf_counter()
                run.log("loss", 1.0, step=step)
                slowest = max(slowest, time.perf_counter() - started)
            assert slowest < 10 * config.flush_interval, f"a log() took {slowest * 1e3:.1f} ms"
            assert not run.flush(timeout=0.1), "nothing is acknowledged: the broker is silent"
        finally:
            run.close(timeout=0.2)


def test_memory_holds_at_most_memory_events_while_the_broker_is_silent(tmp_path: Path) -> None:
    """Logged faster than a flush interval, all but `memory_events` events are already on disk:
    the caller spilled them; memory never held more."""
    memory = 1_000
    with blackholed() as address:
        config = ProducerConfig(
            kafka=KafkaConfig(bootstrap_servers=address),
            spool_dir=tmp_path,
            memory_events=memory,
            flush_interval=1.0,
        )
        run = Run(RunContext(run_id="bounded", experiment="unit"), config)
        try:
            started = time.monotonic()
            for step in range(5 * memory):
                run.log("loss", 1.0, step=step)
            assert time.monotonic() - started < config.flush_interval / 2, "within one round"
            assert metrics_on_disk(tmp_path) >= 5 * memory - memory
        finally:
            run.close(timeout=0.2)
    assert metrics_on_disk(tmp_path) == 5 * memory, "closing wrote the rest"


def test_kafka_problems_in_the_courier_reach_the_callback_and_the_counter(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    context = RunContext(run_id="courier-errors", experiment="unit")
    run = Run(context, config, on_error=errors.append)
    run.log("loss", 1.0)
    deadline = time.monotonic() + 20
    while not run.problems.counts["kafka"] and time.monotonic() < deadline:
        time.sleep(0.1)
    run.close(timeout=0.5)
    assert run.problems.counts["kafka"] >= 1
    assert any("127.0.0.1" in str(e) and isinstance(e, TransportError) for e in errors), errors


def record_calls(monkeypatch: pytest.MonkeyPatch, owner: type, method: str) -> list[float]:
    """When each call of `owner.method` was made from now on (the calls still happen)."""
    calls: list[float] = []
    real = getattr(owner, method)

    def recorded(self: object) -> None:
        calls.append(time.monotonic())
        real(self)

    monkeypatch.setattr(owner, method, recorded)
    return calls


def offline_run(tmp_path: Path, run_id: str, flush_interval: float) -> Run:
    """A run whose broker is a closed port: everything it logs stays in its spool."""
    kafka = KafkaConfig(bootstrap_servers=REFUSED)
    config = ProducerConfig(kafka=kafka, spool_dir=tmp_path, flush_interval=flush_interval)
    return Run(RunContext(run_id=run_id, experiment="unit"), config)


def test_the_courier_is_read_once_a_second_unless_someone_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read of the courier's pipe is a system call of the training process: rounds read it
    once a second, and every round while `flush` waits for acknowledgements.
    """
    reads = record_calls(monkeypatch, CourierProcess, "_on_output")
    rounds = record_calls(monkeypatch, RoundScheduler, "round")
    run = offline_run(tmp_path, "quiet", flush_interval=0.02)
    try:
        time.sleep(0.5)  # the courier's start is not what this measures
        logging_from = time.monotonic()
        step = 0
        while time.monotonic() < logging_from + 2.5:  # a round every 20 ms, each writing a block
            run.log("loss", 1.0, step=step)
            step += 1
            time.sleep(0.005)
        logging = [t for t in reads if t >= logging_from]
        # A loaded machine can only stretch the gaps; reading in every round would shrink them
        # to one flush interval.
        gaps = [later - earlier for earlier, later in itertools.pairwise(logging)]
        assert gaps, f"{len(logging)} reads in 2.5 s of logging"
        assert min(gaps) >= 0.9, f"{len(logging)} reads, as close as {min(gaps):.3f} s apart"
        assert len([t for t in rounds if t >= logging_from]) > 2 * len(logging)
        waiting_from = time.monotonic()
        assert not run.flush(timeout=0.3)  # the broker is away: it waits the whole time
        waiting = [t for t in reads if t >= waiting_from]
        waiting_rounds = [t for t in rounds if t >= waiting_from]
        assert len(waiting) >= len(waiting_rounds) >= 2, "while flush waits, every round reads"
    finally:
        run.close(timeout=0.2)


def test_quiet_rounds_doze_and_the_next_event_wakes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing logged: rounds come once a second. The first event after that still reaches the
    spool within about one flush interval, not at the end of the doze.
    """
    rounds = record_calls(monkeypatch, RoundScheduler, "round")
    run = offline_run(tmp_path, "dozing", flush_interval=0.05)
    try:
        time.sleep(0.3)
        quiet_from = time.monotonic()
        time.sleep(1.5)
        quiet = [t for t in rounds if t >= quiet_from]
        assert 1 <= len(quiet) <= 3, f"{len(quiet)} rounds in 1.5 quiet seconds"
        seen = len(rounds)
        while len(rounds) == seen:  # just after a round: the next doze ends a second from now
            time.sleep(0.005)
        logged = time.monotonic()
        run.log("loss", 0.25, step=7)
        while not bodies(spooled_events(tmp_path), Metrics):
            time.sleep(0.005)
        took = time.monotonic() - logged
        # Promised within a flush interval; one more for this poll and a busy core. The doze
        # it must not wait out is twenty intervals.
        assert took < 2 * 0.05, f"the event reached the spool after {took * 1e3:.0f} ms"
    finally:
        run.close(timeout=0.2)


def test_the_couriers_log_says_a_repeated_message_once_then_counts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    quiet = RepeatFilter(every=30.0)
    shown: list[str] = []

    def say(name: str, template: str, *args: object) -> None:
        record = logging.LogRecord(name, logging.WARNING, __file__, 1, template, args, None)
        if quiet.filter(record):
            shown.append(record.getMessage())

    for n in range(50):
        say("aiokafka.cluster", "Topic %s not found in cluster metadata", f"t{n % 2}")
        now[0] += 0.1
    say("aiokafka", "Unable connect to %r", "127.0.0.1:9")  # another message goes through
    now[0] += 30.0
    say("aiokafka.cluster", "Topic %s not found in cluster metadata", "t0")
    assert shown == [
        "Topic t0 not found in cluster metadata",
        "Unable connect to '127.0.0.1:9'",
        "Topic t0 not found in cluster metadata (49 more like it in the last 35 s)",
    ]

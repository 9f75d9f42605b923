"""The write-ahead spool: frames survive, torn tails are cut, dead sessions are found."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from runstream._config import KafkaConfig, ProducerConfig
from runstream.producer._courier import Courier
from runstream.producer._deadletter import DEAD_LETTERS, DeadLetterFile, oversize_reason
from runstream.producer._problems import ProblemReporter
from runstream.producer._spool import (
    Destination,
    SegmentCursor,
    SegmentWriter,
    SpoolFolder,
    SpoolReader,
    encode_block,
    orphaned_folders,
    read_frames,
)
from runstream.schemas import default_codec, kinds
from tests.ports import REFUSED

HERE = Destination(REFUSED, "runstream.events")


def values(n: int, start: int = 0) -> list[bytes]:
    return [f"event-{i}".encode() * 3 for i in range(start, start + n)]


def frames(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"run", value) for value in values(n, start)]


def test_blocks_round_trip_and_a_torn_or_corrupt_block_ends_the_data() -> None:
    first, second = encode_block(b"run", values(3)), encode_block(b"run", values(2, 3))
    data = first + second
    assert read_frames(data) == (len(data), frames(5))
    assert read_frames(data[:-2]) == (len(first), frames(3)), "a torn last block is cut"
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    assert read_frames(bytes(corrupted)) == (len(first), frames(3)), "its CRC fails"
    assert read_frames(b"") == (0, [])


def test_empty_values_and_big_writes_split_into_blocks_keep_every_frame() -> None:
    many = [b""] + [b"%d" % i for i in range(25_000)]
    data = encode_block(b"k", many)
    assert read_frames(data) == (len(data), [(b"k", v) for v in many])


def test_reader_follows_writer_across_segments(tmp_path: Path) -> None:
    folder = SpoolFolder.create(tmp_path / "session", HERE)
    writer = SegmentWriter(folder, segment_bytes=200)
    reader = SpoolReader(folder, max_bytes=100)
    got: list[tuple[bytes, bytes]] = []
    for chunk in range(5):
        writer.append(b"run", values(7, chunk * 7))
        while batch := reader.next_batch():
            got.extend(batch)
            reader.commit()
    writer.close()
    folder.unlock()
    assert got == frames(35)
    assert len(folder.segments()) <= 2, "delivered sealed segments are deleted"


def test_uncommitted_batch_is_read_again(tmp_path: Path) -> None:
    folder = SpoolFolder.create(tmp_path / "s", HERE)
    writer = SegmentWriter(folder, segment_bytes=10_000)
    writer.append(b"run", values(4))
    reader = SpoolReader(folder)
    first = reader.next_batch()
    second = reader.next_batch()
    writer.close()
    folder.unlock()
    assert second == first, "a batch Kafka did not acknowledge is resent"


def test_live_folder_is_not_an_orphan_but_dead_one_is(tmp_path: Path) -> None:
    live = SpoolFolder.create(tmp_path / "live", HERE)
    dead = tmp_path / "dead"
    code = (
        "import sys; from pathlib import Path; from runstream.producer._spool import *;"
        "f = SpoolFolder.create(Path(sys.argv[1]), Destination('127.0.0.1:1', 't'));"
        "w = SegmentWriter(f, 10**6);"
        "w.append(b'k', [b'v%d' % i for i in range(10)]); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(dead)], check=True)
    found = list(orphaned_folders(tmp_path))
    assert [f.path for f in found] == [dead]
    reader = SpoolReader(found[0])
    assert reader.next_batch() == [(b"k", b"v%d" % i) for i in range(10)]
    found[0].unlock()
    live.unlock()
    assert os.path.isdir(live.path)


def test_two_runs_in_one_process_and_a_dead_session_do_not_collide(tmp_path: Path) -> None:
    first = SpoolFolder.create(tmp_path / "first", HERE)
    second = SpoolFolder.create(tmp_path / "second", HERE)
    (tmp_path / ".half-made.new").mkdir()  # a folder still being created is nobody's orphan
    assert list(orphaned_folders(tmp_path)) == []
    first.unlock()
    assert [f.path for f in orphaned_folders(tmp_path)] == [first.path]
    second.unlock()


def test_frames_written_between_a_read_and_a_roll_are_not_deleted(tmp_path: Path) -> None:
    folder = SpoolFolder.create(tmp_path / "race", HERE)
    writer = SegmentWriter(folder, segment_bytes=10)
    reader = SpoolReader(folder)
    real_read = folder.read_from

    def read_then_writer_finishes(cursor: SegmentCursor, max_bytes: int) -> Any:
        folder.read_from = real_read  # type: ignore[method-assign]
        found = real_read(cursor, max_bytes)
        writer.append(b"run", values(3))  # lands in segment 1, which then rolls to segment 2
        return found

    folder.read_from = read_then_writer_finishes  # type: ignore[method-assign]
    assert reader.next_batch() == frames(3)
    writer.close()
    folder.unlock()


def record_syncs(monkeypatch: Any) -> list[str]:
    """Paths of the files fdatasync is called on from now on (the calls still happen)."""
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


def test_sync_forces_every_unsealed_segment_to_disk(tmp_path: Path, monkeypatch: Any) -> None:
    """The writer's calls only reach the kernel's cache; `sync` fdatasyncs from the last synced
    segment to the newest, skips segments deleted meanwhile, and says where to start next time.
    """
    folder = SpoolFolder.create(tmp_path / "session", HERE)
    writer = SegmentWriter(folder, segment_bytes=200)
    for n in range(6):
        writer.append(b"run", values(3, n * 3))
    segments = folder.segments()
    assert len(segments) >= 3
    synced = record_syncs(monkeypatch)
    assert folder.sync(segments[1]) == segments[-1]
    assert synced == [str(folder.segment_path(n)) for n in segments[1:]]
    folder.remove_segment(segments[-1])  # delivered and deleted while syncing
    synced.clear()
    assert folder.sync(segments[-2]) == segments[-2]
    assert synced == [str(folder.segment_path(segments[-2]))]


def test_the_courier_syncs_the_spool_even_while_the_broker_is_away(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """With nothing to send to, the courier still forces what the trainer wrote to disk."""
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path, flush_interval=0.02
    )
    folder = SpoolFolder.create(tmp_path / "session", HERE)
    writer = SegmentWriter(folder, segment_bytes=1024**2)
    writer.append(b"run", values(3))
    synced = record_syncs(monkeypatch)
    courier = Courier(folder, config, ProblemReporter(), lambda cursor: None)

    async def synced_while_running() -> list[str]:
        task = asyncio.create_task(courier.run())
        await asyncio.sleep(0.5)
        seen = list(synced)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen

    assert str(folder.segment_path(1)) in asyncio.run(synced_while_running())


def test_a_folder_records_its_destination_and_only_that_destination_takes_it(
    tmp_path: Path,
) -> None:
    elsewhere = Destination(REFUSED, "another.topic")
    for name, destination in (("mine", HERE), ("theirs", elsewhere)):
        SpoolFolder.create(tmp_path / name, destination).unlock()
    (tmp_path / "older").mkdir()  # an older version's folder: no destination recorded
    assert SpoolFolder(tmp_path / "mine").destination() == HERE
    assert SpoolFolder(tmp_path / "older").destination() is None
    same = Destination(f" {REFUSED} ", "runstream.events")
    found = list(orphaned_folders(tmp_path, bound_for=same))
    assert [f.path.name for f in found] == ["mine"]
    for folder in found:
        folder.unlock()
    everything = list(orphaned_folders(tmp_path))
    assert sorted(f.path.name for f in everything) == ["mine", "older", "theirs"]


def test_frames_over_their_limit_are_moved_to_the_dead_letter_file(tmp_path: Path) -> None:
    codec = default_codec()
    event = {
        "run_id": "r",
        "experiment": "e",
        "rank": 0,
        "world_size": 1,
        "producer_id": "6f1c2b9e-8a1d-4a57-9d0e-2c3b4a5d6e7f",
        "seq": 0,
        "time": 0,
        "body": (kinds.PARAMS, {"params": {f"p{i}": "v" * 6000 for i in range(400)}}),
    }
    big = codec.encode(event)
    small = codec.encode({**event, "seq": 1, "body": (kinds.PARAMS, {"params": {"a": "b"}})})
    dead_letters = DeadLetterFile(tmp_path)
    sendable, reasons = dead_letters.sieve("session", [(b"r", small), (b"r", big), (b"r", small)])
    assert sendable == [(b"r", small), (b"r", small)]
    assert len(reasons) == 1
    assert "Params event of" in reasons[0]
    assert oversize_reason(small) is None
    [line] = (tmp_path / DEAD_LETTERS).read_text().splitlines()
    record = json.loads(line)
    assert record["reason"] == reasons[0]
    assert record["folder"] == "session"
    assert base64.b64decode(record["value"]) == big


_FILE_SIZE_LIMIT = """
import os, resource, signal, sys
from pathlib import Path
from runstream.producer._spool import Destination, SegmentWriter, SpoolFolder
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
folder = SpoolFolder.create(Path(sys.argv[1]), Destination("127.0.0.1:9", "t"))
writer = SegmentWriter(folder, segment_bytes=10**9)
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, resource.RLIM_INFINITY))
failed = 0
for n in range(80):
    try:
        writer.append(b"k", [b"v%04d" % n * 20])
    except OSError:
        failed += 1
print(failed, writer.offset)
"""


def test_a_block_the_disk_cannot_take_whole_is_cut_off_again(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the write short, then fail, as a full disk does."""
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path / "s")],
        check=True,
        capture_output=True,
        text=True,
    )
    failed, offset = map(int, done.stdout.split())
    assert failed > 0
    data = (tmp_path / "s" / "000000000001.seg").read_bytes()
    assert len(data) == offset < 5000
    consumed, found = read_frames(data)
    assert consumed == len(data), "only whole blocks are left"
    assert len(found) == 80 - failed


_NO_DESCRIPTORS = """
import os, resource, sys
from pathlib import Path
from runstream.producer._spool import Destination, SegmentWriter, SpoolFolder
here = Path(sys.argv[1])
folder = SpoolFolder.create(here / "s", Destination("127.0.0.1:9", "t"))
writer = SegmentWriter(folder, segment_bytes=100)
segment = str(folder.segment_path(1))
[fd] = [
    int(n) for n in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{n}") == segment
]
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(fd)]  # every number below it taken
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (fd, hard))  # no new descriptor can be had
def append(letter):
    try:
        writer.append(b"k", [letter * 200])
    except OSError as exc:
        print("append failed:", exc)
append(b"a")  # the roll after it cannot open the next segment
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
for n in spare:
    os.close(n)
checkpoints = [
    os.open(here / f"checkpoint-{n}", os.O_WRONLY | os.O_CREAT, 0o600) for n in range(fd + 2)
]
for n in checkpoints:
    os.write(n, b"model weights")
append(b"b")  # into the old segment, which rolls now
append(b"c")
"""


def test_a_roll_without_a_file_descriptor_never_writes_into_another_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _NO_DESCRIPTORS, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    checkpoints = list(tmp_path.glob("checkpoint-*"))
    assert checkpoints
    assert {c.read_bytes() for c in checkpoints} == {b"model weights"}, "no spool byte in them"
    assert "append failed" not in done.stdout
    folder = SpoolFolder(tmp_path / "s")
    reader = SpoolReader(folder)
    got = []
    while batch := reader.next_batch():
        got += [value[:1] for _, value in batch]
        reader.commit()
    assert got == [b"a", b"b", b"c"]

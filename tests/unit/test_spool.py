"""The write-ahead spool: frames survive, torn tails are cut, dead sessions are found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runstream.producer._spool import (
    SegmentWriter,
    SpoolFolder,
    SpoolReader,
    encode_frame,
    encode_frames,
    orphaned_folders,
    read_frames,
)


def frames(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"run", f"event-{i}".encode() * 3) for i in range(start, start + n)]


def test_frames_round_trip_and_torn_tail_is_cut() -> None:
    data = b"".join(encode_frame(k, v) for k, v in frames(3))
    assert encode_frames(frames(3)) == data
    assert read_frames(data) == (len(data), frames(3))
    assert read_frames(data[:-2])[1] == frames(2)
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    assert read_frames(bytes(corrupted))[1] == frames(2)


def test_reader_follows_writer_across_segments(tmp_path: Path) -> None:
    folder = SpoolFolder.create(tmp_path / "session")
    writer = SegmentWriter(folder, segment_bytes=200)
    reader = SpoolReader(folder, max_bytes=100)
    got: list[tuple[bytes, bytes]] = []
    for chunk in range(5):
        writer.append(frames(7, chunk * 7))
        writer.sync()
        while batch := reader.next_batch(writer.segment):
            got.extend(batch)
            reader.commit()
    writer.close()
    folder.unlock()
    assert got == frames(35)
    assert len(folder.segments()) <= 2, "delivered sealed segments are deleted"


def test_uncommitted_batch_is_read_again(tmp_path: Path) -> None:
    folder = SpoolFolder.create(tmp_path / "s")
    writer = SegmentWriter(folder, segment_bytes=10_000)
    writer.append(frames(4))
    writer.sync()
    reader = SpoolReader(folder)
    first = reader.next_batch(writer.segment)
    second = reader.next_batch(writer.segment)
    writer.close()
    folder.unlock()
    assert second == first, "a batch Kafka did not acknowledge is resent"


def test_live_folder_is_not_an_orphan_but_dead_one_is(tmp_path: Path) -> None:
    live = SpoolFolder.create(tmp_path / "live")
    dead = tmp_path / "dead"
    code = (
        "import sys; from pathlib import Path; from runstream.producer._spool import *;"
        "f = SpoolFolder.create(Path(sys.argv[1])); w = SegmentWriter(f, 10**6);"
        "w.append([(b'k', b'v%d' % i) for i in range(10)]); w.sync(); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(dead)], check=True)
    found = list(orphaned_folders(tmp_path))
    assert [f.path for f in found] == [dead]
    reader = SpoolReader(found[0])
    assert reader.next_batch(None) == [(b"k", b"v%d" % i) for i in range(10)]
    found[0].unlock()
    live.unlock()
    assert os.path.isdir(live.path)


def test_two_runs_in_one_process_and_a_dead_session_do_not_collide(tmp_path: Path) -> None:
    first = SpoolFolder.create(tmp_path / "first")
    second = SpoolFolder.create(tmp_path / "second")
    (tmp_path / ".half-made.new").mkdir()  # a folder still being created is nobody's orphan
    assert list(orphaned_folders(tmp_path)) == []
    first.unlock()
    assert [f.path for f in orphaned_folders(tmp_path)] == [first.path]
    second.unlock()

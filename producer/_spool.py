"""The write-ahead spool: every event reaches local disk before it is sent to Kafka.

A spool directory holds one folder per producer session, `<producer_id>/`, with a `lock` file that
its owner holds (flock) while alive, a `destination` file (JSON: the bootstrap servers and topic its
events are for; no credentials) and numbered segment files `000000000001.seg`. A segment is a
run of blocks, one per write: `length u32 | crc32 u32 | count u32 | key length u16` then the body
(`key | count lengths u32 | the values`, all little-endian) whose size and CRC the header gives.
Every frame of a block shares the block's key (a session ships one run, so one key), which lets a
block be built with a few C-level calls, whatever its count. The writer appends one block per flush
interval with one write call: from then on the block survives the writer's death (it is in the
kernel's cache). The courier makes it survive the machine's too: it syncs the segments to disk
each time it is woken (`SpoolFolder.sync`; during a backlog, every half flush interval), before it
reads them, so the sync's cost falls outside the training process and a crash of the machine loses
at most what was written since the courier's last sync, normally one flush interval. It reads
frames back in order, and a segment is deleted once a later one exists (the writer seals a segment
before it starts the next) and every frame in it was acknowledged by Kafka. A torn last block (the
writer died mid-write) fails its length or CRC check and ends the segment.

Folders whose lock can be taken belong to dead sessions: their frames are delivered to their own
destination only, by the next process of that spool sending there, or by `runstream sync`
(`--to` sends elsewhere on purpose). A folder without a `destination` file (written by an older
version) is left to `runstream sync`. Events carry their own identity, so a frame delivered twice
is stored once.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import shutil
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<IIIH")
_SUFFIX = ".seg"
_BLOCK_EVENTS = 10_000  # frames per block at most, so that one block is one reasonable send

Frame = tuple[bytes, bytes]
_DESTINATION = "destination"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a session's events go: the Kafka cluster (its bootstrap servers) and the topic."""

    bootstrap_servers: str
    topic: str

    def same_as(self, other: Destination) -> bool:
        """One topic on one cluster (the servers compared as a set: order and spaces aside)."""
        return self.topic == other.topic and _servers(self) == _servers(other)

    def __str__(self) -> str:
        return f"{self.topic} on {self.bootstrap_servers}"


def _servers(destination: Destination) -> frozenset[str]:
    return frozenset(s.strip() for s in destination.bootstrap_servers.split(",") if s.strip())


def _segment_name(number: int) -> str:
    return f"{number:012d}{_SUFFIX}"


def _lengths(values: list[bytes]) -> bytes:
    lengths = array.array("I", map(len, values))
    if sys.byteorder != "little":
        lengths.byteswap()
    return lengths.tobytes()


def encode_block(key: bytes, values: list[bytes]) -> bytes:
    """Frames sharing `key`, as blocks ready to append to a segment (one per `_BLOCK_EVENTS`)."""
    blocks: list[bytes] = []
    for start in range(0, len(values), _BLOCK_EVENTS):
        chunk = values[start : start + _BLOCK_EVENTS]
        body = b"".join((key, _lengths(chunk), *chunk))
        blocks += (_HEADER.pack(len(body), zlib.crc32(body), len(chunk), len(key)), body)
    return b"".join(blocks)


def read_frames(data: bytes) -> tuple[int, list[Frame]]:
    """Every whole, intact block at the start of `data` as frames, and the offset past them."""
    view, size = memoryview(data), _HEADER.size
    frames: list[Frame] = []
    offset, total = 0, len(data)
    while offset + size <= total:
        length, crc, count, key_length = _HEADER.unpack_from(data, offset)
        begin, end = offset + size, offset + size + length
        index = begin + key_length
        values_at = index + 4 * count
        if end > total or values_at > end or zlib.crc32(view[begin:end]) != crc:
            break
        lengths = array.array("I", data[index:values_at])
        if sys.byteorder != "little":
            lengths.byteswap()
        if values_at + sum(lengths) != end:
            break
        key = data[begin:index]
        at = values_at
        for n in lengths:
            frames.append((key, data[at : at + n]))
            at += n
        offset = end
    return offset, frames


@dataclass(slots=True)
class SegmentCursor:
    """A position in a spool folder: segment number and byte offset inside it."""

    segment: int
    offset: int = 0


class SpoolFolder:
    """The segments of one producer session (ours, or a dead one's being delivered)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd = -1

    @classmethod
    def create(cls, path: Path, destination: Destination) -> SpoolFolder:
        """A new folder for `destination`, locked before it appears under its name (so no other
        process can take it for a dead session's): made, described and locked as `.NAME.new`,
        then renamed.
        """
        staging = path.with_name(f".{path.name}.new")
        staging.mkdir(parents=True)
        folder = cls(staging)
        if not folder.try_lock():
            raise OSError(f"cannot lock the new spool folder {staging}")
        record = {"bootstrap_servers": destination.bootstrap_servers, "topic": destination.topic}
        (staging / _DESTINATION).write_text(json.dumps(record))
        staging.rename(path)  # the lock is on the file, which keeps it across the rename
        folder.path = path
        return folder

    def destination(self) -> Destination | None:
        """Where this folder's events go; None when it does not say (an older version's)."""
        try:
            record = json.loads((self.path / _DESTINATION).read_text())
            return Destination(str(record["bootstrap_servers"]), str(record["topic"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def try_lock(self) -> bool:
        """Take the folder's lock; False when a live process holds it or the folder is gone."""
        try:
            fd = os.open(self.path / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        """Release the lock (the process's death does the same)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def segments(self) -> list[int]:
        """Segment numbers present, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        stems = (name.removesuffix(_SUFFIX) for name in names if name.endswith(_SUFFIX))
        return sorted(int(stem) for stem in stems if stem.isdigit())

    def segment_path(self, number: int) -> Path:
        """Where segment `number` lives."""
        return self.path / _segment_name(number)

    def read_from(self, cursor: SegmentCursor, max_bytes: int) -> tuple[int, list[Frame]]:
        """About `max_bytes` of frames after `cursor` in its segment, and the offset past them."""
        try:
            with open(self.segment_path(cursor.segment), "rb") as file:
                file.seek(cursor.offset)
                data = file.read(max_bytes)
                if len(data) >= _HEADER.size:
                    whole = _HEADER.size + _HEADER.unpack_from(data)[0]
                    if whole > len(data):
                        data += file.read(whole - len(data))
        except FileNotFoundError:
            return cursor.offset, []
        consumed, frames = read_frames(data)
        return cursor.offset + consumed, frames

    def sync(self, first: int) -> int:
        """Force segments `first` and later to disk (fdatasync); return the newest segment's number,
        from which the next sync starts (the older ones are sealed).
        """
        newest = first
        for number in self.segments():
            if number < first:
                continue
            try:
                fd = os.open(self.segment_path(number), os.O_RDONLY)
            except FileNotFoundError:  # delivered and deleted meanwhile
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            newest = number
        return newest

    def count_frames(self, start: SegmentCursor | None = None) -> int:
        """Frames held from `start` (the beginning without one) to the end; nothing is deleted."""
        total = 0
        for number in self.segments():
            if start is not None and number < start.segment:
                continue
            offset = start.offset if start is not None and number == start.segment else 0
            cursor = SegmentCursor(number, offset)
            while True:
                end, frames = self.read_from(cursor, 1024**2)
                if not frames:
                    break
                total += len(frames)
                cursor = SegmentCursor(number, end)
        return total

    def size(self) -> int:
        """Bytes held on disk by this folder's segments."""
        total = 0
        for number in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += self.segment_path(number).stat().st_size
        return total

    def free_bytes(self) -> int:
        """Space left on the folder's file system for an unprivileged writer."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def remove_segment(self, number: int) -> None:
        """Delete a fully delivered segment."""
        self.segment_path(number).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the whole folder once everything in it was delivered."""
        self.unlock()
        shutil.rmtree(self.path, ignore_errors=True)


class SegmentWriter:
    """Appends blocks to the newest segment of a locked folder, rolling at `segment_bytes`.

    Each `append` is one write call; syncing to disk is the courier's (`SpoolFolder.sync`). A block
    that cannot be written whole (a full disk, a quota) is cut off again, so a segment holds only
    whole blocks; where even that fails, the segment is sealed and the next block starts a new one.
    A roll that cannot open the next segment (no file descriptor, no space) keeps writing the
    current one and tries again at the next append: the writer never writes to a descriptor it
    closed.
    """

    def __init__(self, folder: SpoolFolder, segment_bytes: int) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        existing = folder.segments()
        self.segment = (existing[-1] + 1) if existing else 1
        self._fd = self._open(self.segment)
        self.offset = 0
        self.roll_error: OSError | None = None  # why the last roll failed, until one succeeds

    def _open(self, number: int) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.folder.segment_path(number), flags, 0o600)

    def append(self, key: bytes, values: list[bytes]) -> tuple[int, int]:
        """Write frames sharing `key` (one write call); return where they end (segment,
        offset). A segment that reached `segment_bytes` is sealed then, and the next one started.

        Raises `OSError` when the block could not be written whole: nothing of it stays.
        """
        blob = encode_block(key, values)
        if self._fd < 0:  # the last segment was sealed torn: this block starts the next
            self._fd = self._open(self.segment + 1)
            self.segment, self.offset = self.segment + 1, 0
        view, written = memoryview(blob), 0
        try:
            while written < len(blob):
                written += os.write(self._fd, view[written:])
        except OSError:
            if written:
                self._cut_back()
            raise
        self.offset += written
        end = (self.segment, self.offset)
        if self.offset >= self.segment_bytes:
            self.roll()
        return end

    def _cut_back(self) -> None:
        """Remove the part of a block that a failed write left; seal the segment if that fails."""
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError:
            os.close(self._fd)
            self._fd = -1  # the torn tail ends this segment; the next append opens another

    def roll(self) -> None:
        """Seal the current segment and start the next (whose existence says this one is sealed).

        When the next cannot be opened, the current one stays open and `roll_error` says why.
        """
        try:
            fd = self._open(self.segment + 1)
        except OSError as exc:
            self.roll_error = exc
            return
        self.roll_error = None
        os.close(self._fd)
        self._fd = fd
        self.segment += 1
        self.offset = 0

    def close(self) -> None:
        """Close the current segment."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def orphaned_folders(
    spool_dir: Path, own: Path | None = None, bound_for: Destination | None = None
) -> Iterator[SpoolFolder]:
    """Folders of dead sessions, each returned locked (so only one process delivers it); with
    `bound_for`, only those whose recorded destination is that one.
    """
    if not spool_dir.is_dir():
        return
    for path in sorted(spool_dir.iterdir()):
        if path == own or path.name.startswith(".") or not path.is_dir():
            continue
        folder = SpoolFolder(path)
        if bound_for is not None:
            recorded = folder.destination()
            if recorded is None or not recorded.same_as(bound_for):
                continue
        if folder.try_lock():
            yield folder


class SpoolReader:
    """Reads a folder's frames in order; `commit()` after Kafka's acknowledgement moves past them.

    A segment is sealed once a later one exists: the writer finishes a segment before it creates
    the next, so a segment read to its end after a later one appeared holds nothing more.
    """

    def __init__(self, folder: SpoolFolder, max_bytes: int = 1024**2) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        existing = folder.segments()
        self.cursor = SegmentCursor(existing[0] if existing else 1)
        self._staged = self.cursor

    def next_batch(self) -> list[Frame]:
        """The next frames to send (empty when everything written so far was read)."""
        while True:
            end, frames = self.folder.read_from(self.cursor, self.max_bytes)
            if frames:
                self._staged = SegmentCursor(self.cursor.segment, end)
                return frames
            later = [n for n in self.folder.segments() if n > self.cursor.segment]
            if not later:
                return []
            # The writer may have finished this segment between the read and the listing.
            end, frames = self.folder.read_from(self.cursor, self.max_bytes)
            if frames:
                self._staged = SegmentCursor(self.cursor.segment, end)
                return frames
            self.folder.remove_segment(self.cursor.segment)
            self.cursor = self._staged = SegmentCursor(later[0])

    def commit(self) -> SegmentCursor:
        """The last batch was acknowledged: move past it. Returns the new position."""
        self.cursor = self._staged
        return self.cursor

    def drained(self) -> bool:
        """True when no frame is left after the cursor in any segment (sealed folders only)."""
        return not self.next_batch()

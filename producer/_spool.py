"""The write-ahead spool: every event reaches local disk before it is sent to Kafka.

A spool directory holds one folder per producer session, `<producer_id>/`, with a `lock` file that
its owner holds (flock) while alive and numbered segment files `000000000001.seg`. A segment is a
run of frames, each `length u32 | crc32 u32 | key length u16 | key | value`. The writer appends and
fsyncs once per flush interval; the sender reads frames back from the files in order, and a segment
is deleted once it is sealed and every frame in it was acknowledged by Kafka. A torn last frame
(the writer died mid-write) fails its length or CRC check and ends the segment.

Folders whose lock can be taken belong to dead sessions: their frames are delivered by the next
process that opens the same spool, or by `runstream sync`. Events carry their own identity, so a
frame delivered twice is stored once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<IIH")
_SUFFIX = ".seg"

Frame = tuple[bytes, bytes]


def _segment_name(number: int) -> str:
    return f"{number:012d}{_SUFFIX}"


def encode_frame(key: bytes, value: bytes) -> bytes:
    """One frame as it is written to a segment."""
    crc = zlib.crc32(value, zlib.crc32(key))
    return b"".join((_HEADER.pack(len(key) + len(value), crc, len(key)), key, value))


def encode_frames(frames: list[Frame]) -> bytes:
    """Frames as they are written to a segment, in order."""
    pack, crc32 = _HEADER.pack, zlib.crc32
    parts: list[bytes] = []
    for key, value in frames:
        parts += (pack(len(key) + len(value), crc32(value, crc32(key)), len(key)), key, value)
    return b"".join(parts)


def read_frames(data: bytes) -> tuple[int, list[Frame]]:
    """Every whole, intact frame at the start of `data`, and the offset just past the last one."""
    view, crc32, unpack, size = memoryview(data), zlib.crc32, _HEADER.unpack_from, _HEADER.size
    frames: list[Frame] = []
    offset, total = 0, len(data)
    while offset + size <= total:
        length, crc, key_length = unpack(data, offset)
        begin = offset + size
        end = begin + length
        if end > total or key_length > length or crc32(view[begin:end]) != crc:
            break
        frames.append((data[begin : begin + key_length], data[begin + key_length : end]))
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
    def create(cls, path: Path) -> SpoolFolder:
        """A new folder, locked before it appears under its name (so no other process can take
        it for a dead session's): made and locked as `.NAME.new`, then renamed.
        """
        staging = path.with_name(f".{path.name}.new")
        staging.mkdir(parents=True)
        folder = cls(staging)
        if not folder.try_lock():
            raise OSError(f"cannot lock the new spool folder {staging}")
        staging.rename(path)  # the lock is on the file, which keeps it across the rename
        folder.path = path
        return folder

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
        names = (p.name for p in self.path.glob("*" + _SUFFIX))
        return sorted(int(n.removesuffix(_SUFFIX)) for n in names)

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

    def size(self) -> int:
        """Bytes held on disk by this folder's segments."""
        total = 0
        for number in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += self.segment_path(number).stat().st_size
        return total

    def remove_segment(self, number: int) -> None:
        """Delete a fully delivered segment."""
        self.segment_path(number).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the whole folder once everything in it was delivered."""
        self.unlock()
        shutil.rmtree(self.path, ignore_errors=True)


class SegmentWriter:
    """Appends frames to the newest segment of a locked folder, rolling at `segment_bytes`."""

    def __init__(self, folder: SpoolFolder, segment_bytes: int) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        existing = folder.segments()
        self.segment = (existing[-1] + 1) if existing else 1
        self._file = open(folder.segment_path(self.segment), "ab")  # noqa: SIM115
        self._dirty = False

    def append(self, frames: list[Frame]) -> int:
        """Write frames (buffered); return the bytes written."""
        blob = encode_frames(frames)
        self._file.write(blob)
        self._dirty = True
        if self._file.tell() >= self.segment_bytes:
            self.roll()
        return len(blob)

    def sync(self) -> None:
        """Flush to the OS and fsync: what is written now survives a crash of the machine."""
        if self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def roll(self) -> None:
        """Seal the current segment and start the next one."""
        self.sync()
        self._file.close()
        self.segment += 1
        self._file = open(self.folder.segment_path(self.segment), "ab")  # noqa: SIM115

    def close(self) -> None:
        """Sync and close the current segment."""
        self.sync()
        self._file.close()


def orphaned_folders(spool_dir: Path, own: Path | None = None) -> Iterator[SpoolFolder]:
    """Folders of dead sessions, each returned locked (so only one process delivers it)."""
    if not spool_dir.is_dir():
        return
    for path in sorted(spool_dir.iterdir()):
        if path == own or path.name.startswith(".") or not path.is_dir():
            continue
        folder = SpoolFolder(path)
        if folder.try_lock():
            yield folder


class SpoolReader:
    """Reads a folder's frames in order; `commit()` after Kafka's acknowledgement moves past them.

    `sealed_below` is the writer's current segment (frames may still be appended to it), or None
    for a dead session's folder, where every segment is sealed.
    """

    def __init__(self, folder: SpoolFolder, max_bytes: int = 1024**2) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        existing = folder.segments()
        self.cursor = SegmentCursor(existing[0] if existing else 1)
        self._staged = self.cursor

    def next_batch(self, sealed_below: int | None) -> list[Frame]:
        """The next frames to send (empty when everything written so far was read)."""
        while True:
            end, frames = self.folder.read_from(self.cursor, self.max_bytes)
            if frames:
                self._staged = SegmentCursor(self.cursor.segment, end)
                return frames
            later = [n for n in self.folder.segments() if n > self.cursor.segment]
            sealed = sealed_below is None or self.cursor.segment < sealed_below
            if not (sealed and later):
                return []
            self.folder.remove_segment(self.cursor.segment)
            self.cursor = self._staged = SegmentCursor(later[0])

    def commit(self) -> None:
        """The last batch was acknowledged: move past it."""
        self.cursor = self._staged

    def drained(self) -> bool:
        """True when no frame is left after the cursor in any segment (sealed folders only)."""
        return not self.next_batch(None)

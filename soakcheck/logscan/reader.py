"""Reading a log file from a byte offset in blocks of complete lines.

The reader never returns a line without its newline: an incomplete last line
stays in the file for the next scan. NUL bytes are dropped before lines are
split, so the hole a copy-truncate rotation leaves costs no memory, and a
line longer than the cap is cut to its first `line_cap` bytes while its end
is still found.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from soakcheck.logscan.classify import LINE_CAP

logger = logging.getLogger(__name__)

HEAD_BYTES = 1024
BLOCK_SIZE = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of complete lines read from a file.

    `data` contains the lines, each ending with a newline, without NUL bytes
    and with over-long lines cut. `start` and `end` are the file offsets of the
    first byte and of the byte after the last newline.
    """

    data: bytes
    start: int
    end: int


def head_fingerprint(head: bytes) -> str:
    """Return the fingerprint (SHA-256, hex) of a file's first bytes."""
    return hashlib.sha256(head).hexdigest()


def read_head(file: BinaryIO, length: int = HEAD_BYTES) -> bytes:
    """Read up to `length` bytes from the start of an open file."""
    file.seek(0)
    parts = []
    remaining = length
    while remaining > 0:
        part = file.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)

    return b"".join(parts)


# By default glibc serves an allocation of more than 128 KiB with fresh pages
# and returns them when it is freed. So every 1 MiB block and each copy of it
# faulted its pages in anew, and a scan measured a fifth slower. These
# thresholds keep such blocks on the heap, where freed memory is reused.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 128 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_allocator_tuned = False


def tune_allocator() -> None:
    """Ask glibc to keep blocks of a few MiB on the heap, and do nothing elsewhere.

    Runs once per process. The setting applies to the whole process, and its
    cost is that up to `_TRIM_THRESHOLD` of freed memory stays reserved.
    """
    global _allocator_tuned
    if _allocator_tuned:
        return
    _allocator_tuned = True
    if not sys.platform.startswith("linux"):
        return

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        logger.debug("mallopt not found; the C library is not glibc")
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _without_nul(data: bytes) -> bytes:
    if b"\x00" in data:
        return data.replace(b"\x00", b"")
    return data


class BlockReader:
    """Iterates over `Chunk`s of a file from `start` up to at most `stop`.

    After iteration, `end` is the offset after the last complete line and
    `pending` the number of bytes after it (an incomplete line).
    `holes_skipped` counts the NUL bytes jumped over without reading, and
    `lines_cut` the lines longer than `line_cap` whose tail after the first
    `line_cap` bytes was dropped.
    """

    def __init__(
        self,
        file: BinaryIO,
        start: int,
        stop: int,
        *,
        block_size: int = BLOCK_SIZE,
        line_cap: int = LINE_CAP,
    ) -> None:
        tune_allocator()
        self.file = file
        self.start = start
        self.stop = stop
        self.block_size = block_size
        self.line_cap = line_cap
        self.end = start
        self.pending = 0
        self.holes_skipped = 0
        self.lines_cut = 0

    def __iter__(self) -> Iterator[Chunk]:
        position = self.start
        self.file.seek(position)
        carry = b""
        carry_start = position
        overflow = False

        while position < self.stop:
            raw = self.file.read(min(self.block_size, self.stop - position))
            if not raw:
                break

            block_start = position
            position += len(raw)
            if raw[0] == 0 and raw[-1] == 0 and not raw.strip(b"\x00"):
                position = self._skip_hole(position)
                continue

            newline = raw.rfind(b"\n")
            if newline == -1:
                if not overflow:
                    carry += _without_nul(raw)
                    overflow = self._cap(carry)
                    carry = carry[: self.line_cap]
                continue

            body = _without_nul(raw[: newline + 1])
            if overflow:
                # The bytes up to the first newline finish the over-long line
                # whose head `carry` already holds.
                body = carry + body[body.find(b"\n") :]
                self.lines_cut += 1
            elif carry:
                body = carry + body

            body = self._cut_long_lines(body)
            chunk = Chunk(body, carry_start, block_start + newline + 1)
            tail = _without_nul(raw[newline + 1 :])
            overflow = self._cap(tail)
            carry = tail[: self.line_cap]
            carry_start = chunk.end
            self.end = chunk.end
            yield chunk

        self.pending = max(position, self.end) - self.end

    def _cut_long_lines(self, data: bytes) -> bytes:
        """Cut each line of `data` longer than the cap to its first `line_cap` bytes.

        A line that runs into the next block is already cut by the carry, and
        lines inside one block are cut here, so where the blocks fall
        changes nothing. A line longer than the cap covers a whole window of
        half the cap, and only those windows need a closer look.
        """
        cap = self.line_cap
        half = max(cap // 2, 1)
        size = len(data)
        if size <= cap:
            return data

        pieces: list[bytes] = []
        kept_to = 0
        window = 0
        while window + half <= size:
            if data.find(b"\n", window, window + half) != -1:
                window += half
                continue

            line_start = data.rfind(b"\n", 0, window) + 1
            line_end = data.find(b"\n", window)
            if line_end - line_start > cap:
                pieces.append(data[kept_to : line_start + cap])
                kept_to = line_end
                self.lines_cut += 1
            window = line_end + 1

        if not pieces:
            return data
        pieces.append(data[kept_to:])
        return b"".join(pieces)

    def _cap(self, data: bytes) -> bool:
        return len(data) > self.line_cap

    def _skip_hole(self, position: int) -> int:
        """Jump to the next data after a block of NULs, where the system can tell."""
        seek_data = getattr(os, "SEEK_DATA", None)
        if seek_data is None:
            return position

        try:
            next_data = os.lseek(self.file.fileno(), position, seek_data)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                logger.debug("SEEK_DATA failed at offset %d: %s", position, exc)
                self.file.seek(position)
                return position
            # ENXIO: only a hole up to the end of the file.
            next_data = self.stop

        next_data = min(max(next_data, position), self.stop)
        self.holes_skipped += next_data - position
        self.file.seek(next_data)
        return next_data

"""Following one log path from checkpoint to checkpoint, across rotations.

One scan reads, in this order:

1. rotated files that are still being written (`draining`),
2. the rest of the file read last time, found by inode after a rename, or
   its copy after a copy-truncate,
3. rotated generations created since the last scan, found by comparing the
   folder with the rotated files it held at the last listing,
4. the file now at the watched path.

Each byte is read once, because offsets only move past complete lines and
every file is tracked by device, inode and the fingerprint of its first
bytes. File times are not used to tell files apart, as the kernel stamps
them from a clock that may lag the wall clock.
"""

from __future__ import annotations

import logging
import os
import stat as stat_module
import time
from pathlib import Path
from typing import Any, BinaryIO

from soakcheck.logscan.blockscan import ScanTally
from soakcheck.logscan.consume import FileConsumer, ScanOptions, fingerprint
from soakcheck.logscan.reader import BLOCK_SIZE, read_head
from soakcheck.logscan.rotation import (
    FileState,
    SeenFile,
    Sibling,
    find_by_inode,
    find_compressed_copy,
    gzip_uncompressed_size,
    is_rotated_name,
    list_siblings,
    looks_compressed,
    read_plain_head,
    snapshot_rotated,
)
from soakcheck.logscan.state import WatchState

logger = logging.getLogger(__name__)

# Rotated files followed after a rename. A writer that gets no signal to
# reopen its log keeps appending to the renamed file, with pauses of any
# length. So each one is followed while it exists as a plain file, up to
# this number, and the ones idle the longest are dropped first.
MAX_DRAINING = 8

_Identity = tuple[int | None, int | None]


class LogFollower:
    """Runs one scan of one path and records what it read and what it noticed."""

    def __init__(self, path: Path, tally: ScanTally, options: ScanOptions) -> None:
        self.path = path
        self.options = options
        self.events: list[str] = []
        self.consumer = FileConsumer(tally, options, self.events)
        self.possible_loss = False
        self.missing = False
        self.error: str | None = None
        self._siblings: list[Sibling] | None = None
        # Compressed files already described by an event in this scan.
        self._reported: set[Path] = set()

    @property
    def bytes_read(self) -> int:
        return self.consumer.bytes_read

    def scan(self, previous: dict[str, Any] | None) -> dict[str, Any] | None:
        """Scan the path and return the state for the next checkpoint."""
        started_at = time.time()
        saved = self._load(previous)

        try:
            # Checked before opening, because opening a named pipe would block.
            if not stat_module.S_ISREG(os.stat(self.path).st_mode):
                raise IsADirectoryError(f"not a regular file: {self.path}")
            file = open(self.path, "rb", buffering=0)
        except FileNotFoundError:
            return self._missing(saved, previous, started_at)
        except OSError as exc:
            return self._failed(exc, previous)

        with file:
            info = os.fstat(file.fileno())
            if saved is None or saved.current.inode is None:
                state = self._first(file, info, saved)
            else:
                state = self._follow(file, info, saved)

        state.scanned_at = started_at
        return state.as_dict()

    # Loading and failing ----------------------------------------------------

    def _load(self, previous: dict[str, Any] | None) -> WatchState | None:
        if previous is None:
            return None

        try:
            return WatchState.from_dict(previous)
        except (TypeError, ValueError) as exc:
            # The scan then starts as a first scan, whose own event names
            # where it starts: offset 0, or the end of the file.
            self.events.append(
                f"the stored position for {self.path} was unreadable ({exc}); "
                "the scan started over as a first scan"
            )
            logger.warning("stored log state ignored path=%s error=%s", self.path, exc)
            return None

    def _failed(
        self, exc: OSError, previous: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if isinstance(exc, PermissionError):
            self.error = (
                f"permission denied reading {self.path}; give the user running "
                "soakcheck read access to the file and its folder"
            )
        elif isinstance(exc, IsADirectoryError):
            self.error = (
                f"{self.path} is not a regular file; point the log setting at "
                "the log file itself"
            )
        else:
            self.error = f"cannot read {self.path}: {exc.strerror or exc}"
        logger.warning("log scan failed path=%s error=%s", self.path, exc)
        return previous

    def _missing(
        self,
        saved: WatchState | None,
        previous: dict[str, Any] | None,
        started_at: float,
    ) -> dict[str, Any] | None:
        self.missing = True
        self.events.append(
            f"missing: {self.path} does not exist; the previous position is kept "
            "and the file is read from offset 0 when it appears"
        )
        logger.warning("log file missing path=%s", self.path)

        if saved is None:
            seen = snapshot_rotated(self._list(), self.path.name)
            fresh = WatchState(str(self.path), FileState(), seen=seen)
            fresh.scanned_at = started_at
            return fresh.as_dict()
        if saved.current.inode is None:
            return previous

        # Right after a rename the old file may still contain unread lines.
        tracked: set[_Identity] = set()
        saved.draining = self._drain(saved, tracked)
        renamed = self._locate(saved.current)
        if renamed is not None and not looks_compressed(renamed):
            tracked.add((renamed.stat.st_dev, renamed.stat.st_ino))
            before = saved.current.offset
            self.consumer.read_path(renamed.path, saved.current)
            self.events.append(
                f"read {saved.current.offset - before} bytes from {renamed.path.name}, "
                f"the file last read as {self.path.name}, under its rotated name"
            )
        else:
            compressed = renamed or find_compressed_copy(self._list(), saved.current)
            if compressed is not None:
                self._compressed(compressed, saved.current)
            else:
                self._note_loss(
                    f"the file last read as {self.path.name} (inode "
                    f"{saved.current.inode}) was deleted; lines written to it after "
                    f"offset {saved.current.offset}, if any, were not scanned"
                )
            # The file is gone or reported, so the file that appears next is
            # read from offset 0.
            saved.current = FileState()

        saved.draining.extend(self._intermediates(saved.seen, tracked))
        saved.draining = self._bounded(saved.draining)
        saved.seen = snapshot_rotated(self._list(), self.path.name)
        saved.scanned_at = started_at
        return saved.as_dict()

    # First scan ---------------------------------------------------------------

    def _first(
        self, file: BinaryIO, info: os.stat_result, saved: WatchState | None
    ) -> WatchState:
        state = FileState(info.st_dev, info.st_ino, name=self.path.name)
        if saved is None and not self.options.from_start:
            state.offset = _last_line_end(file, info.st_size)
            state.line = _count_lines(file, state.offset)
            self.events.append(
                f"first scan: started at the end of {self.path.name}; "
                f"{state.offset} bytes written before it were not read"
            )

        self.consumer.read_open(file, state, str(self.path), info.st_size)
        fingerprint(file, state, info.st_size)
        # Rotated files present now hold lines from before the first scan,
        # except what a writer still appends to the newest one.
        seen = snapshot_rotated(self._list(), self.path.name)
        draining = self._follow_newest_rotated(info)
        return WatchState(str(self.path), state, draining, seen=seen)

    def _follow_newest_rotated(self, info: os.stat_result) -> list[FileState]:
        rotated = [
            sibling
            for sibling in self._list()
            if is_rotated_name(sibling.path.name, self.path.name)
            and not sibling.compressed
            and (sibling.stat.st_dev, sibling.stat.st_ino) != (info.st_dev, info.st_ino)
        ]
        if not rotated:
            return []

        newest = max(rotated, key=lambda sibling: sibling.stat.st_mtime)
        try:
            with open(newest.path, "rb", buffering=0) as file:
                size = os.fstat(file.fileno()).st_size
                entry = FileState(newest.stat.st_dev, newest.stat.st_ino)
                entry.name = newest.path.name
                entry.offset = _last_line_end(file, size)
                entry.size = size
                entry.line = _count_lines(file, entry.offset)
                fingerprint(file, entry, size)
        except OSError as exc:
            logger.warning(
                "cannot read rotated file path=%s error=%s", newest.path, exc
            )
            return []

        return [entry]

    # Later scans --------------------------------------------------------------

    def _follow(
        self, file: BinaryIO, info: os.stat_result, saved: WatchState
    ) -> WatchState:
        tracked: set[_Identity] = {(info.st_dev, info.st_ino)}
        draining = self._drain(saved, tracked)
        current = saved.current
        seen = saved.seen

        if current.same_file(info):
            head = read_head(file, max(current.head_length, 1))
            shrank = info.st_size < current.offset
            if shrank or not current.head_matches(head):
                copy = self._truncated(current, info, shrank)
                if copy is not None:
                    tracked.add((copy.device, copy.inode))
                    draining.append(copy)
                current = FileState(info.st_dev, info.st_ino, name=self.path.name)
                draining.extend(self._intermediates(saved.seen, tracked))
                seen = snapshot_rotated(self._list(), self.path.name)
        else:
            finished = self._rotated(current)
            if finished is not None:
                tracked.add((finished.device, finished.inode))
                draining.append(finished)
            current = FileState(info.st_dev, info.st_ino, name=self.path.name)
            draining.extend(self._intermediates(saved.seen, tracked))
            seen = snapshot_rotated(self._list(), self.path.name)

        self.consumer.read_open(file, current, str(self.path), info.st_size)
        fingerprint(file, current, info.st_size)
        return WatchState(str(self.path), current, self._bounded(draining), seen)

    def _drain(self, saved: WatchState, tracked: set[_Identity]) -> list[FileState]:
        """Read what rotated files gained since the last scan; keep those still there.

        Files that grew are put last, so the cap on followed files drops the
        ones idle the longest.
        """
        idle: list[FileState] = []
        grown: list[FileState] = []
        for entry in saved.draining:
            found = self._locate(entry)
            if found is None or looks_compressed(found):
                compressed = found or find_compressed_copy(self._list(), entry)
                if compressed is not None:
                    self._compressed(compressed, entry)
                else:
                    logger.debug("rotated file gone inode=%s", entry.inode)
                continue

            tracked.add((found.stat.st_dev, found.stat.st_ino))
            previous_size = entry.size
            if not self.consumer.read_path(found.path, entry):
                continue
            if entry.size > previous_size:
                grown.append(entry)
                continue

            idle.append(entry)
            # A last line left without its newline for a whole interval is
            # taken as final (the writer crashed or moved on mid-line).
            if entry.size > entry.offset and not entry.is_copy:
                self.consumer.read_final_line(found.path, entry)

        return idle + grown

    def _rotated(self, old: FileState) -> FileState | None:
        """Finish the file read last time, now under a rotated name."""
        found = self._locate(old)
        if found is not None and not looks_compressed(found):
            before = old.offset
            self.consumer.read_path(found.path, old)
            self.events.append(
                f"rotated: {self.path.name} was renamed to {found.path.name}; read "
                f"its last {old.offset - before} bytes from offset {before}, then "
                f"the new {self.path.name} from offset 0"
            )
            logger.info("log rotated path=%s rotated_to=%s", self.path, found.path.name)
            return old

        compressed = found or find_compressed_copy(self._list(), old)
        if compressed is not None:
            self._compressed(compressed, old)
        else:
            self._note_loss(
                f"rotated: the file last read as {self.path.name} (inode "
                f"{old.inode}) is no longer in {self.path.parent}; lines written to "
                f"it after offset {old.offset} were not scanned, and their number is "
                "unknown"
            )
        return None

    def _compressed(self, found: Sibling, old: FileState) -> None:
        """Report a file read before that is now only in compressed form.

        The size stored in a gzip trailer shows whether anything was written
        past the position read. Other formats are assumed to hide lines.
        """
        self._reported.add(found.path)
        size = gzip_uncompressed_size(found.path)
        if size is not None and size == old.offset % 2**32:
            self.events.append(
                f"rotated: {old.name or self.path.name} was compressed to "
                f"{found.path.name} after it had been fully read"
            )
            return

        self._note_loss(
            f"rotated file compressed before it was fully read: {found.path.name}; "
            f"lines written after offset {old.offset} were not scanned"
        )

    def _truncated(
        self, current: FileState, info: os.stat_result, shrank: bool
    ) -> FileState | None:
        """Note a truncation and read the tail of a copy made just before it.

        The same inode with other content is either a file truncated in place
        or a new file that reuses the inode of a deleted one. A compressed
        file that starts like the old content identifies the second case (or
        a compressed copy), and is reported instead.
        """
        copy = self._find_copy(current, info)
        if copy is None:
            compressed = find_compressed_copy(self._list(), current)
            if compressed is not None:
                self._compressed(compressed, current)
                return None

        name = self.path.name
        if shrank:
            change = f"{name} shrank from {current.offset} to {info.st_size} bytes"
        else:
            change = f"the first bytes of {name} changed"
        self._note_loss(
            f"truncated: {change}; read again from offset 0; lines written "
            "between the last checkpoint and the truncation may be lost"
        )
        if copy is None:
            return None

        entry = FileState(
            copy.stat.st_dev,
            copy.stat.st_ino,
            offset=current.offset,
            size=current.offset,
            head_sha256=current.head_sha256,
            head_length=current.head_length,
            line=current.line,
            after_error_keyword=current.after_error_keyword,
            name=copy.path.name,
            is_copy=True,
        )
        before = entry.offset
        self.consumer.read_path(copy.path, entry)
        self.events.append(
            f"read {entry.offset - before} bytes from {copy.path.name}, the copy made "
            f"before the truncation, from offset {before}"
        )
        return entry

    def _find_copy(self, current: FileState, info: os.stat_result) -> Sibling | None:
        copies = []
        for sibling in self._list():
            if sibling.stat.st_ino == info.st_ino or sibling.compressed:
                continue
            if not is_rotated_name(sibling.path.name, self.path.name):
                continue
            if sibling.stat.st_size < current.offset:
                continue
            head = read_plain_head(sibling.path, current.head_length)
            if head is not None and current.head_matches(head):
                copies.append(sibling)

        if not copies:
            return None
        return max(copies, key=lambda sibling: sibling.stat.st_mtime)

    def _intermediates(
        self, seen: list[SeenFile] | None, tracked: set[_Identity]
    ) -> list[FileState]:
        """Read rotated files created since the last listing, which no scan has read."""
        if seen is None and self.options.fallback_interval_s is None:
            self.events.append(
                "the stored state does not list the rotated files seen before, so "
                "rotated files created since the last scan could not be told apart "
                "from older ones and were not read"
            )
            return []

        fresh = []
        for sibling in self._list():
            identity = (sibling.stat.st_dev, sibling.stat.st_ino)
            if identity in tracked or sibling.path in self._reported:
                continue
            if not is_rotated_name(sibling.path.name, self.path.name):
                continue
            if self._is_new(sibling, seen):
                fresh.append(sibling)

        finished = []
        for sibling in sorted(fresh, key=lambda s: s.stat.st_mtime):
            if looks_compressed(sibling):
                self._note_loss(
                    f"rotated file {sibling.path.name} was created after the last "
                    "scan and compressed before it could be read; its lines were "
                    "not scanned"
                )
                continue

            entry = FileState(sibling.stat.st_dev, sibling.stat.st_ino)
            entry.name = sibling.path.name
            self.consumer.read_path(sibling.path, entry)
            self.events.append(
                f"rotated: {sibling.path.name} was created and rotated between two "
                f"scans; read it whole ({entry.offset} bytes)"
            )
            finished.append(entry)

        return finished

    def _is_new(self, sibling: Sibling, seen: list[SeenFile] | None) -> bool:
        if seen is not None:
            return not any(entry.matches(sibling) for entry in seen)

        # NOTE: without the stored list, a file modified within the interval
        # counts as new, which also takes in an older generation written
        # shortly before the last scan.
        interval = self.options.fallback_interval_s or 0.0
        return sibling.stat.st_mtime > time.time() - interval

    # Helpers ------------------------------------------------------------------

    def _bounded(self, draining: list[FileState]) -> list[FileState]:
        if len(draining) <= MAX_DRAINING:
            return draining

        logger.warning(
            "following only the newest %d rotated files path=%s",
            MAX_DRAINING,
            self.path,
        )
        return draining[-MAX_DRAINING:]

    def _list(self) -> list[Sibling]:
        if self._siblings is None:
            self._siblings = list_siblings(self.path)
        return self._siblings

    def _locate(self, state: FileState) -> Sibling | None:
        found = find_by_inode(self._list(), state)
        if found is None or looks_compressed(found):
            return found

        # Inode numbers are reused after a delete, so the head must match too.
        head = read_plain_head(found.path, state.head_length)
        if head is None or not state.head_matches(head):
            return None
        return found

    def _note_loss(self, event: str) -> None:
        self.possible_loss = True
        self.events.append(event)
        logger.warning("log lines may be missing path=%s event=%s", self.path, event)


def _last_line_end(file: BinaryIO, size: int) -> int:
    """Return the offset just past the last newline before `size`, or 0."""
    step = 64 * 1024
    end = size
    while end > 0:
        start = max(0, end - step)
        file.seek(start)
        block = file.read(end - start)
        newline = block.rfind(b"\n")
        if newline != -1:
            return start + newline + 1
        end = start

    return 0


def _count_lines(file: BinaryIO, stop: int) -> int:
    file.seek(0)
    lines = 0
    position = 0
    while position < stop:
        block = file.read(min(BLOCK_SIZE, stop - position))
        if not block:
            break
        lines += block.count(b"\n")
        position += len(block)

    return lines

"""Reading one file from its saved position into the scan's tally."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from soakcheck.logscan.blockscan import BlockScanner, PatternSearch, ScanTally
from soakcheck.logscan.classify import LINE_CAP, LineClassifier
from soakcheck.logscan.prefilter import HyperscanFinder, PythonFinder, default_finder
from soakcheck.logscan.reader import (
    BLOCK_SIZE,
    HEAD_BYTES,
    BlockReader,
    Chunk,
    head_fingerprint,
    read_head,
)
from soakcheck.logscan.rotation import FileState
from soakcheck.logscan.split import (
    SPLIT_MIN_BYTES,
    ChildPart,
    SplitRead,
    can_split,
    find_cut,
)

logger = logging.getLogger(__name__)


@dataclass
class ScanOptions:
    """Settings of a scan: classifier, patterns, block size, line cap and finder.

    `split_min_bytes` is the smallest range read in two processes, or None
    to read every range in this process.
    """

    classifier: LineClassifier
    worker: PatternSearch | None = None
    patterns: list[PatternSearch] = field(default_factory=list)
    from_start: bool = True
    fallback_interval_s: float | None = None
    block_size: int = BLOCK_SIZE
    line_cap: int = LINE_CAP
    split_min_bytes: int | None = SPLIT_MIN_BYTES
    finder: PythonFinder | HyperscanFinder = field(
        default_factory=lambda: default_finder()
    )


class FileConsumer:
    """Reads files into a `ScanTally`, each from its `FileState` position.

    `bytes_read` adds up what all reads consumed. Sentences about what a read
    met (NUL holes, a file that changed) are appended to `events`.
    """

    def __init__(self, tally: ScanTally, options: ScanOptions, events: list[str]):
        self.tally = tally
        self.options = options
        self.events = events
        self.bytes_read = 0

    def _scanner(self, label: str, state: FileState) -> BlockScanner:
        return BlockScanner(
            self.tally,
            self.options.classifier,
            label,
            state,
            worker=self.options.worker,
            patterns=self.options.patterns,
            line_cap=self.options.line_cap,
            finder=self.options.finder,
        )

    def read_open(
        self, file: BinaryIO, state: FileState, label: str, stop: int
    ) -> None:
        """Read an open file from `state.offset` up to `stop`, advancing `state`.

        A large range is read in two processes where the system allows it
        (see the `split` module).
        """
        start = state.offset
        split = self._start_split(file, label, start, stop)
        if split is None:
            holes = self._read_range(file, state, label, stop)
        else:
            try:
                holes = self._read_range(file, state, label, split.cut)
            except BaseException:
                split.cancel()
                raise
            part = split.result()
            if part is None:
                holes += self._read_range(file, state, label, stop)
            else:
                holes += self._add_part(state, part)

        self._note_holes(label, holes)
        self.bytes_read += max(state.offset - start, 0)
        state.size = stop

    def _start_split(
        self, file: BinaryIO, label: str, start: int, stop: int
    ) -> SplitRead | None:
        minimum = self.options.split_min_bytes
        if minimum is None or stop - start < minimum or not can_split():
            return None

        cut = find_cut(
            file, start, stop, self.options.classifier, self.options.line_cap
        )
        if cut is None:
            return None

        return SplitRead(file, label, cut, stop, self.tally, self.options)

    def _read_range(
        self, file: BinaryIO, state: FileState, label: str, stop: int
    ) -> int:
        """Read up to `stop` in this process; return the NUL bytes skipped."""
        reader = BlockReader(
            file,
            state.offset,
            stop,
            block_size=self.options.block_size,
            line_cap=self.options.line_cap,
        )
        scanner = self._scanner(label, state)
        for chunk in reader:
            scanner.feed(chunk)

        return reader.holes_skipped

    def _add_part(self, state: FileState, part: ChildPart) -> int:
        self.tally.add_part(part.tally, line_shift=state.line)
        state.line += part.lines
        state.offset = part.offset
        state.after_error_keyword = part.after_error_keyword
        return part.holes_skipped

    def _note_holes(self, label: str, holes_skipped: int) -> None:
        if holes_skipped:
            self.events.append(
                f"skipped {holes_skipped} NUL bytes in {Path(label).name}, a "
                "hole left by a copy-truncate rotation under a writer that does not "
                "append"
            )

    def read_path(self, path: Path, state: FileState) -> bool:
        """Read a rotated file by path after checking it is still the same file.

        Returns whether the file was read.
        """
        try:
            with open(path, "rb", buffering=0) as file:
                info = os.fstat(file.fileno())
                if state.inode is not None and not state.same_file(info):
                    logger.debug("file changed before it was opened path=%s", path)
                    return False
                if info.st_size < state.offset:
                    self.events.append(
                        f"{path.name} is shorter than the position read before "
                        f"({info.st_size} < {state.offset} bytes); it was not read"
                    )
                    return False
                if not state.head_matches(read_head(file, max(state.head_length, 1))):
                    self.events.append(
                        f"{path.name} no longer starts as it did when last read; "
                        "it was not read"
                    )
                    return False

                self.read_open(file, state, str(path), info.st_size)
                if state.head_length < HEAD_BYTES:
                    fingerprint(file, state, info.st_size)
        except OSError as exc:
            logger.warning("cannot read rotated file path=%s error=%s", path, exc)
            self.events.append(f"cannot read {path.name}: {exc.strerror or exc}")
            return False

        return True

    def read_final_line(self, path: Path, entry: FileState) -> None:
        """Count the unterminated last line of a rotated file no longer written."""
        try:
            with open(path, "rb", buffering=0) as file:
                file.seek(entry.offset)
                raw = file.read(min(entry.size - entry.offset, self.options.line_cap))
        except OSError as exc:
            logger.warning("cannot read rotated file path=%s error=%s", path, exc)
            return

        raw = raw.replace(b"\x00", b"")
        if not raw.strip():
            return

        self._scanner(str(path), entry).feed(
            Chunk(raw + b"\n", entry.offset, entry.size)
        )
        self.bytes_read += entry.size - entry.offset
        self.events.append(
            f"counted the last line of {path.name}, which has no newline, because "
            "the file is no longer written"
        )


def fingerprint(file: BinaryIO, state: FileState, size: int) -> None:
    """Store the fingerprint of the file's first bytes (up to 1 KiB) in `state`."""
    head = read_head(file, min(HEAD_BYTES, size))
    state.head_sha256 = head_fingerprint(head)
    state.head_length = len(head)

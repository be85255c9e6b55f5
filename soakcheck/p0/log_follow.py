"""Follow log files from a mark and count the lines that name one event.

Only bytes written after the mark are read, so the cost does not grow with
the size of a long soak's log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Bytes read from one file per poll; the rest is read at the next poll.
READ_CHUNK_BYTES = 4 * 1024 * 1024
# A line longer than this (binary bytes with no newline) is dropped unread.
MAX_LINE_BYTES = 1024 * 1024
# Characters that may continue an id, so `evt_1` does not match `evt_12`.
ID_CONTINUATION = r"(?![A-Za-z0-9_-])"


def event_line_pattern(template: str, event_id: str) -> re.Pattern[str]:
    """Compile `template` with `{event_id}` filled in, matched as literal text."""
    before, _, after = template.partition("{event_id}")
    text = re.escape(before) + re.escape(event_id) + ID_CONTINUATION + re.escape(after)
    return re.compile(text)


@dataclass
class _Position:
    path: Path
    inode: int | None
    offset: int
    partial: bytes = b""


@dataclass
class LogFollower:
    """Read the lines appended to some log files since the follower was made."""

    paths: list[Path]
    _positions: list[_Position] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        for path in self.paths:
            inode, size = _stat(path)
            self._positions.append(_Position(path, inode, size))

    def missing_paths(self) -> list[Path]:
        """Return the followed files that do not exist now."""
        return [path for path in self.paths if not path.exists()]

    def new_lines(self) -> list[str]:
        """Return the whole lines written since the previous call."""
        lines: list[str] = []
        for position in self._positions:
            lines += _read_new(position)
        return lines


def _stat(path: Path) -> tuple[int | None, int]:
    try:
        status = path.stat()
    except OSError:
        return None, 0
    return status.st_ino, status.st_size


def _read_new(position: _Position) -> list[str]:
    inode, size = _stat(position.path)
    if inode is None:
        return []
    if inode != position.inode or size < position.offset:
        # NOTE: lines written to a rotated-away file after the mark are not
        # read; the new file is read from its start.
        log.info("log file %s was rotated or truncated; reading it anew", position.path)
        position.inode, position.offset, position.partial = inode, 0, b""
    if size == position.offset:
        return []

    try:
        with position.path.open("rb") as stream:
            stream.seek(position.offset)
            data = stream.read(READ_CHUNK_BYTES)
    except OSError as error:
        log.warning("cannot read log file %s: %s", position.path, error)
        return []

    position.offset += len(data)
    data = position.partial + data
    *whole, position.partial = data.split(b"\n")
    if len(position.partial) > MAX_LINE_BYTES:
        position.partial = b""
    return [line.decode("utf-8", errors="replace") for line in whole]

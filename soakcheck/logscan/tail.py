"""The last lines of a log, around its last error, for an incident snapshot."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from soakcheck.logscan.classify import (
    ANSI_BYTES_RE,
    Level,
    LineClassifier,
    LineKind,
    classify_lines,
)
from soakcheck.logscan.evidence import evidence_text

logger = logging.getLogger(__name__)

# Only the end of the file is read, so a snapshot of a huge log stays cheap.
TAIL_BYTES = 8 * 1024 * 1024
SNAPSHOT_LINE_CHARS = 2000


def _read_tail(path: Path, max_bytes: int) -> list[bytes]:
    # A named pipe or a device would block the read or never end.
    if not stat.S_ISREG(path.stat().st_mode):
        raise OSError(f"{path} is not a regular file")
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        start = max(0, size - max_bytes)
        file.seek(start)
        data = file.read(size - start)

    lines = data.split(b"\n")
    if start > 0:
        # The first line is cut at an arbitrary byte.
        lines = lines[1:]
    if lines and lines[-1] == b"":
        lines.pop()

    return lines


def _snapshot_text(raw: bytes) -> str:
    raw = raw.replace(b"\x00", b"").rstrip(b"\r")
    if b"\x1b" in raw:
        raw = ANSI_BYTES_RE.sub(b"", raw)

    text = raw[: SNAPSHOT_LINE_CHARS * 4].decode("utf-8", "replace")
    return evidence_text(text, SNAPSHOT_LINE_CHARS)


def tail_lines(
    path: str | Path,
    n: int = 200,
    around_errors: bool = True,
    *,
    max_bytes: int = TAIL_BYTES,
    custom_pattern: str | None = None,
) -> list[str]:
    """Return up to `n` lines from the end of a log, secrets masked.

    With `around_errors`, the lines are taken around the last error or fatal
    record within the last `max_bytes` of the file: three quarters before it
    and one quarter after. Without an error there, or without
    `around_errors`, they are the last `n` lines. Lines are cut to
    `SNAPSHOT_LINE_CHARS` characters. A missing or unreadable file gives an
    empty list.
    """
    try:
        lines = _read_tail(Path(path), max_bytes)
    except OSError as exc:
        logger.warning("cannot read log tail path=%s error=%s", path, exc)
        return []

    end = len(lines)
    if around_errors:
        last_error = None
        classifier = LineClassifier(custom_pattern)
        for index, (_, found) in enumerate(classify_lines(lines, classifier)):
            if found.kind is LineKind.RECORD and found.level in (
                Level.ERROR,
                Level.FATAL,
            ):
                last_error = index
        if last_error is not None:
            end = min(len(lines), last_error + 1 + n // 4)

    start = max(0, end - n)
    return [_snapshot_text(raw) for raw in lines[start:end]]

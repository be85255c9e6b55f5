"""Pino-style JSON log lines, as a Node.js service using pino writes them."""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from pathlib import Path
from typing import Any

# Pino's numeric levels: 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
PINO_LEVELS = {
    logging.DEBUG: 20,
    logging.INFO: 30,
    logging.WARNING: 40,
    logging.ERROR: 50,
    logging.CRITICAL: 60,
}

# Extra fields go in `extra={"fields": {...}}` so they cannot clash with the
# attributes of logging.LogRecord.
FIELDS_ATTRIBUTE = "fields"


def pino_level(levelno: int) -> int:
    """Map a logging level number to the nearest pino level at or below it."""
    for python_level in sorted(PINO_LEVELS, reverse=True):
        if levelno >= python_level:
            return PINO_LEVELS[python_level]
    return 10


def error_object(exc: BaseException) -> dict[str, str]:
    """Describe an exception the way pino's standard error serializer does."""
    stack = "".join(traceback.format_exception(exc)).rstrip()
    return {"type": type(exc).__name__, "message": str(exc), "stack": stack}


class PinoFileHandler(logging.Handler):
    """Append one JSON object per record to a file, reopened on request.

    The file is opened with O_APPEND and each line goes out in a single
    os.write call, so lines stay whole when another process appends too and
    every line is on disk as soon as it is logged. `reopen` serves log
    rotation: logrotate renames the file, then sends SIGHUP.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.hostname = socket.gethostname()
        self._fd: int | None = None
        self._open()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._fd = os.open(self.path, flags, 0o644)
        return self._fd

    def reopen(self) -> None:
        """Close the current file and open the path again."""
        self.acquire()
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._open()
        finally:
            self.release()

    def format_line(self, record: logging.LogRecord) -> bytes:
        """Render a record as one pino JSON line, `msg` last as pino writes it."""
        entry: dict[str, Any] = {
            "level": pino_level(record.levelno),
            "time": int(record.created * 1000),
            "pid": record.process or os.getpid(),
            "hostname": self.hostname,
        }

        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            entry.update(fields)

        if record.exc_info and record.exc_info[1] is not None:
            entry["err"] = error_object(record.exc_info[1])

        entry["msg"] = record.getMessage()
        text = json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8", errors="replace")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format_line(record)
            self.acquire()
            try:
                fd = self._fd if self._fd is not None else self._open()
                os.write(fd, line)
            finally:
                self.release()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            self.release()
        super().close()

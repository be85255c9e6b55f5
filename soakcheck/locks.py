"""Advisory file locks that keep two runs off one window."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AlreadyRunning(Exception):
    """Another process holds the lock: a monitor, or a checkpoint of the window."""


@contextmanager
def exclusive_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an advisory lock on `path`, raising AlreadyRunning when it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until exit
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise AlreadyRunning(
                f"another {what} is running on {path.parent.name} (pid {owner}); "
                f"stop it first or wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()

"""Checkpoint records: the JSON written beside each checkpoint's HTML report.

A record contains the checkpoint's context, every check's outcome with its
measured value, threshold and unit, the raw measurements for plots, and the
state the next checkpoint needs (last uptime, log offsets, queue counters).
The verdict needs nothing else. Every write goes to a temporary file in the
same folder and is renamed into place, so a killed run never leaves a
half-written record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = 1
RECORD_SUFFIX = ".json"
NOT_RECORDS = {"window.json", "verdict.json", "alerts.json", "monitor.json"}


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the whole new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file readable by its owner only; reports are
        # meant to be read like the HTML reports beside them.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON that any parser reads: NaN and infinity become null."""
    text = json.dumps(_finite(payload), indent=2, sort_keys=False, default=str)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def read_record(path: Path) -> dict[str, Any] | None:
    """Return a record, or None (with a warning) when it is unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning("skipping unreadable checkpoint record %s: %s", path, error)
        return None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        log.warning("skipping %s: not a soakcheck checkpoint record", path)
        return None
    problem = _shape_problem(record)
    if problem:
        log.warning("skipping damaged checkpoint record %s: %s", path, problem)
        return None
    return record


def _shape_problem(record: dict[str, Any]) -> str | None:
    """Return what is wrong with a record's structure, or None when it is sound."""
    checkpoint = record.get("checkpoint")
    if not isinstance(checkpoint, dict):
        return "no checkpoint object"
    if not isinstance(checkpoint.get("finished_at"), str):
        return "checkpoint.finished_at is not a time"
    if not isinstance(record.get("results", []), list):
        return "results is not a list"
    if not all(isinstance(r, dict) and "check" in r for r in record.get("results", [])):
        return "a result has no check id"
    for key in ("state", "measurements", "summary"):
        if not isinstance(record.get(key, {}), dict):
            return f"{key} is not an object"
    return None


def list_records(window_dir: Path) -> list[dict[str, Any]]:
    """Return a window's readable records in the order they finished."""
    records: list[dict[str, Any]] = []
    if not window_dir.is_dir():
        return records
    for path in window_dir.glob(f"*{RECORD_SUFFIX}"):
        if path.name in NOT_RECORDS or path.name.startswith("."):
            continue
        record = read_record(path)
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: r.get("checkpoint", {}).get("finished_at", ""))


def latest_record(window_dir: Path, kind: str = "scheduled") -> dict[str, Any] | None:
    """Return the newest record of a kind (scheduled checkpoints by default)."""
    matching = [
        record
        for record in list_records(window_dir)
        if record.get("checkpoint", {}).get("kind") == kind
    ]
    return matching[-1] if matching else None


def free_checkpoint_id(window_dir: Path, base: str) -> str:
    """Return `base`, or `base-2`, `base-3` … when a slot already has a record."""
    candidate = base
    number = 2
    while (window_dir / f"{candidate}{RECORD_SUFFIX}").exists():
        candidate = f"{base}-{number}"
        number += 1
    return candidate

"""Notes, resolutions and planned maintenance recorded during a window.

They live in `reports/<window>/notes.jsonl`, one JSON object per line:

- a note: `{"kind": "note", "at", "author", "text"}`
- a resolution of a check's failures: `{"kind": "resolution", "at", "author",
  "check", "reason"}`, where `check` is a check id (`logs.errors[app.log]`) or
  a family (`logs.errors`, every id of the family)
- a planned maintenance period: `{"kind": "planned", "at", "author", "from",
  "to", "reason"}`

A resolution covers the failures of checkpoints that finished before it was
recorded, so a check that fails again afterwards is open again. Each entry is
written with one `write` call on a file opened with O_APPEND, so entries
added by two people at once do not interleave on a local file system (NFS
does not append atomically).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soakcheck.checklist import family_of, spec_for
from soakcheck.redact import mask_secrets

log = logging.getLogger(__name__)

NOTES_FILE = "notes.jsonl"
MAX_TEXT = 4000
KINDS = ("note", "resolution", "planned")


class NoteError(ValueError):
    """A note, resolution or planned period that cannot be recorded."""


@dataclass(frozen=True)
class Planned:
    """A planned maintenance period, in which restarts and errors are expected."""

    start: datetime
    end: datetime
    reason: str
    author: str
    at: datetime

    def covers(self, started: datetime, finished: datetime) -> bool:
        """Return whether a checkpoint run overlaps the period."""
        return started <= self.end and finished >= self.start


@dataclass(frozen=True)
class Resolution:
    """A statement that a check's failures so far are understood and handled."""

    check: str
    reason: str
    author: str
    at: datetime

    def matches(self, check_id: str) -> bool:
        return self.check == check_id or self.check == family_of(check_id)


@dataclass
class Notebook:
    """Every entry of a window's notes file, sorted by kind."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    planned: list[Planned] = field(default_factory=list)

    def resolution_for(self, check_id: str, finished: datetime) -> Resolution | None:
        """Return the first resolution of a check recorded after a checkpoint."""
        for resolution in self.resolutions:
            if resolution.matches(check_id) and resolution.at >= finished:
                return resolution
        return None


def default_author() -> str:
    """Return $USER, else the login name of the process, else "unknown"."""
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def parse_time(value: str, name: str) -> datetime:
    """Parse an ISO 8601 time, taking one without an offset as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise NoteError(
            f"{name}: invalid time {value!r}; expected ISO 8601 such as "
            f"2026-12-04T14:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def add_note(
    directory: Path,
    text: str,
    *,
    author: str | None = None,
    moment: datetime | None = None,
) -> dict[str, Any]:
    """Append a free-text note to the window."""
    entry = {"kind": "note", "text": _required_text(text, "note text")}
    return _append(directory, entry, author, moment)


def add_resolution(
    directory: Path,
    check: str,
    reason: str,
    *,
    author: str | None = None,
    moment: datetime | None = None,
    failed_checks: set[str] | None = None,
) -> dict[str, Any]:
    """Mark a check's failures so far as resolved, with the reason.

    `failed_checks` are the ids of the checks that failed in the window so
    far. When given, a check that matches none of them is rejected, because
    its resolution would cover nothing.
    """
    try:
        spec_for(check)
    except KeyError:
        raise NoteError(
            f"--resolve: unknown check {check!r}; use a check id from the report, "
            f"such as logs.errors or logs.errors[app.log]"
        ) from None
    if failed_checks is not None and not any(
        check in (failed, family_of(failed)) for failed in failed_checks
    ):
        failed = ", ".join(sorted(failed_checks)[:10]) or "none"
        raise NoteError(
            f"--resolve: {check!r} has not failed in this window, so there is "
            f"nothing to resolve; checks that failed so far: {failed}"
        )
    entry = {
        "kind": "resolution",
        "check": check,
        "reason": _required_text(reason, "--reason"),
    }
    return _append(directory, entry, author, moment)


def add_planned(
    directory: Path,
    start: datetime,
    end: datetime,
    reason: str,
    *,
    author: str | None = None,
    moment: datetime | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Declare a planned maintenance period, such as a deploy with a restart.

    `window` is the window's start and end. When given, the period must
    overlap it and be no longer than it, because a planned period excuses
    every failure it covers.
    """
    if end <= start:
        raise NoteError(
            f"--planned-to ({end.isoformat()}) must be later than --planned-from "
            f"({start.isoformat()})"
        )
    if window is not None:
        _check_within(start, end, *window)
    entry = {
        "kind": "planned",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "reason": _required_text(reason, "--reason"),
    }
    return _append(directory, entry, author, moment)


# Terminal control sequences and control characters other than tab and
# newline. Pasted from a coloured terminal, they would garble the reports.
_CONTROL_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def _check_within(
    start: datetime, end: datetime, window_start: datetime, window_end: datetime
) -> None:
    period = f"{start.isoformat()} to {end.isoformat()}"
    bounds = f"{window_start.isoformat()} to {window_end.isoformat()}"
    if end <= window_start or start >= window_end:
        raise NoteError(
            f"planned period {period} is outside the window ({bounds}); give the "
            "maintenance's start and end within the window"
        )
    if end - start > window_end - window_start:
        raise NoteError(
            f"planned period {period} is longer than the window ({bounds}); give "
            "the maintenance's own start and end, as it excuses every failure "
            "it covers"
        )


def _required_text(text: str, name: str) -> str:
    """Return the text cleaned, stripped and with secrets masked, or raise NoteError."""
    text = mask_secrets(_CONTROL_RE.sub("", text).strip())
    if not text:
        raise NoteError(f"{name} is empty; write what happened or why")
    if len(text) > MAX_TEXT:
        raise NoteError(
            f"{name} has {len(text)} characters, more than {MAX_TEXT}; "
            f"shorten it or link to a longer document"
        )
    return text


def _append(
    directory: Path,
    entry: dict[str, Any],
    author: str | None,
    moment: datetime | None,
) -> dict[str, Any]:
    if not directory.is_dir():
        raise NoteError(f"window folder {directory} not found")
    stamped = {
        "at": (moment or datetime.now(UTC)).isoformat(timespec="seconds"),
        "author": (author or default_author()).strip() or "unknown",
        **entry,
    }
    line = json.dumps(stamped, ensure_ascii=False) + "\n"

    # One write on an O_APPEND descriptor, so concurrent writers each add a
    # whole line at the end of the file.
    path = directory / NOTES_FILE
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode("utf-8"))
        os.fsync(handle)
    finally:
        os.close(handle)
    log.info("note added window=%s kind=%s", directory.name, entry["kind"])
    return stamped


def read_notes(directory: Path) -> Notebook:
    """Read a window's notes file. A missing file gives an empty notebook."""
    notebook = Notebook()
    path = directory / NOTES_FILE
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return notebook
    except OSError as error:
        log.warning("notes file %s unreadable: %s", path, error)
        return notebook

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = _parse_entry(line)
        if entry is None:
            log.warning("skipping invalid line %d of %s", number, path)
            continue
        notebook.entries.append(entry)
        if entry["kind"] == "resolution":
            notebook.resolutions.append(
                Resolution(
                    entry["check"], entry["reason"], entry["author"], entry["_at"]
                )
            )
        elif entry["kind"] == "planned":
            notebook.planned.append(
                Planned(
                    entry["_from"],
                    entry["_to"],
                    entry["reason"],
                    entry["author"],
                    entry["_at"],
                )
            )
    for entry in notebook.entries:
        for key in ("_at", "_from", "_to"):
            entry.pop(key, None)
    notebook.entries.sort(key=lambda entry: entry["at"])
    notebook.resolutions.sort(key=lambda resolution: resolution.at)
    return notebook


def _parse_entry(line: str) -> dict[str, Any] | None:
    """Return a validated entry with parsed times under `_at`, `_from`, `_to`."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
        return None
    try:
        entry["_at"] = parse_time(str(entry["at"]), "at")
        entry["author"] = str(entry.get("author") or "unknown")
        # A hand-edited file may hold what add_note would have masked.
        if entry["kind"] == "note":
            entry["text"] = mask_secrets(str(entry["text"]))
        elif entry["kind"] == "resolution":
            entry["check"] = str(entry["check"])
            entry["reason"] = mask_secrets(str(entry["reason"]))
        else:
            entry["_from"] = parse_time(str(entry["from"]), "from")
            entry["_to"] = parse_time(str(entry["to"]), "to")
            entry["reason"] = mask_secrets(str(entry["reason"]))
    except (KeyError, NoteError):
        return None
    return entry

"""Soak windows and their slots.

A window has a start, a length and an interval. Its slots are fixed from the
start: slot k is due at start + k * interval, for k = 0 .. length / interval,
and is named the way a soak checklist names its rows ("Hour 2" ... "Hour 24").
Each window is a folder under `reports/` holding `window.json`, one record per
checkpoint and, at the end, the verdict.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from soakcheck.config import MAX_SLOTS
from soakcheck.record import write_json_atomic

log = logging.getLogger(__name__)

WINDOW_FILE = "window.json"


@dataclass(frozen=True)
class Slot:
    """One scheduled checkpoint time of a window."""

    index: int
    id: str
    label: str
    due: datetime


@dataclass
class Window:
    """A soak window: where it is stored and when its slots fall."""

    id: str
    target: str
    start: datetime
    length_s: float
    interval_s: float
    directory: Path
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.length_s)

    @property
    def slot_count(self) -> int:
        return int(math.floor(self.length_s / self.interval_s + 1e-9)) + 1

    def slots(self) -> list[Slot]:
        return [self.slot(index) for index in range(self.slot_count)]

    def slot(self, index: int) -> Slot:
        unit_s, unit_name, short = _slot_unit(self.interval_s)
        elapsed = round(index * self.interval_s / unit_s)
        width = len(str(round(self.length_s / unit_s)))
        due = self.start + timedelta(seconds=index * self.interval_s)
        return Slot(
            index, f"{short}-{elapsed:0{width}d}", f"{unit_name} {elapsed}", due
        )

    def slot_at(self, moment: datetime) -> Slot:
        """Return the slot nearest to a moment, clamped to the window."""
        elapsed = (moment - self.start).total_seconds()
        index = round(elapsed / self.interval_s)
        return self.slot(min(max(index, 0), self.slot_count - 1))

    def is_over(self, moment: datetime) -> bool:
        """Return whether the last slot's grace period has passed."""
        grace = timedelta(seconds=self.interval_s / 2)
        return moment > self.end + grace

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["directory"] = str(self.directory)
        return data

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {key: value for key, value in self.to_dict().items()}
        payload.pop("directory")
        write_json_atomic(self.directory / WINDOW_FILE, payload)


def _slot_unit(interval_s: float) -> tuple[float, str, str]:
    """Name slots in hours, minutes or seconds, whichever divides the interval."""
    for unit_s, name, short in ((3600, "Hour", "hour"), (60, "Minute", "min")):
        if interval_s >= unit_s and (interval_s / unit_s).is_integer():
            return unit_s, name, short
    return 1, "Second", "sec"


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_window(
    reports: Path,
    target: str,
    length_s: float,
    interval_s: float,
    start: datetime | None = None,
    policy: dict[str, Any] | None = None,
) -> Window:
    """Create and save a new window whose id reads `<target>-<UTC start>`."""
    if not (0 < interval_s <= length_s) or length_s / interval_s > MAX_SLOTS:
        raise ValueError(
            f"a window of {length_s:g} s checked every {interval_s:g} s is not "
            f"possible: the interval must be positive and fit in the window, with "
            f"at most {MAX_SLOTS} slots"
        )
    start = (start or now_utc()).replace(microsecond=0)
    window_id = f"{target}-{start:%Y%m%d-%H%M%S}"
    window = Window(
        window_id,
        target,
        start,
        length_s,
        interval_s,
        reports / window_id,
        dict(policy or {}),
    )
    suffix = 2
    while window.directory.exists():
        window.id = f"{window_id}-{suffix}"
        window.directory = reports / window.id
        suffix += 1
    window.save()
    log.info(
        "window started id=%s length_s=%g interval_s=%g",
        window.id,
        length_s,
        interval_s,
    )
    return window


def load_window(directory: Path) -> Window:
    """Read a window folder's `window.json`, raising ValueError when invalid."""
    path = directory / WINDOW_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        window = Window(
            id=str(data["id"]),
            target=str(data["target"]),
            start=datetime.fromisoformat(data["start"]),
            length_s=float(data["length_s"]),
            interval_s=float(data["interval_s"]),
            directory=directory,
            policy=dict(data.get("policy") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"invalid window file {path}: {error}") from None
    if window.start.tzinfo is None:
        raise ValueError(f"invalid window file {path}: start has no time zone")
    sane = all(math.isfinite(v) and v > 0 for v in (window.length_s, window.interval_s))
    if not sane or window.length_s / window.interval_s > MAX_SLOTS:
        raise ValueError(
            f"invalid window file {path}: length_s {window.length_s} and "
            f"interval_s {window.interval_s} must be positive, with at most "
            f"{MAX_SLOTS} slots"
        )
    return window


def list_windows(reports: Path, target: str | None = None) -> list[Window]:
    """Return the windows under `reports`, oldest first."""
    windows: list[Window] = []
    if not reports.is_dir():
        return windows
    for path in sorted(reports.iterdir()):
        if not (path / WINDOW_FILE).is_file():
            continue
        try:
            window = load_window(path)
        except ValueError as error:
            log.warning("skipping window folder: %s", error)
            continue
        if target is None or window.target == target:
            windows.append(window)
    return sorted(windows, key=lambda window: window.start)


def current_window(
    reports: Path, target: str, moment: datetime | None = None
) -> Window | None:
    """Return the newest window of the target that is still open, if any."""
    moment = moment or now_utc()
    for window in reversed(list_windows(reports, target)):
        if not window.is_over(moment):
            return window
    return None

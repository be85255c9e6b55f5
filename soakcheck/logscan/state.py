"""The position of one watched log path, as stored in a checkpoint record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soakcheck.logscan.rotation import FileState, SeenFile

STATE_FORMAT = 1


@dataclass
class WatchState:
    """Everything a scan needs to continue where the last one stopped.

    `current` is the file last read at the watched path; its fields are stored
    at the top level of the dict. `draining` lists rotated files a writer may
    still append to. `seen` lists the rotated files present at the last
    folder listing, or is None when the state does not record them.
    `scanned_at` is the wall-clock time (epoch seconds) the last scan started.
    """

    path: str
    current: FileState
    draining: list[FileState] = field(default_factory=list)
    seen: list[SeenFile] | None = None
    scanned_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": STATE_FORMAT, "path": self.path}
        data["scanned_at"] = self.scanned_at
        data.update(self.current.as_dict())
        data["draining"] = [entry.as_dict() for entry in self.draining]
        if self.seen is None:
            data["seen"] = None
        else:
            data["seen"] = [entry.as_list() for entry in self.seen]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchState:
        """Rebuild a state from its dict; raise ValueError naming what is wrong."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(
                f"stored log state has format {data.get('format')!r}, expected "
                f"{STATE_FORMAT}; delete it to read the log from the start"
            )

        draining = [FileState.from_dict(entry) for entry in data.get("draining", [])]
        seen = data.get("seen")
        scanned_at = data.get("scanned_at")
        return cls(
            path=str(data.get("path", "")),
            current=FileState.from_dict(data),
            draining=draining,
            seen=None if seen is None else [SeenFile.from_list(e) for e in seen],
            scanned_at=float(scanned_at) if scanned_at is not None else None,
        )

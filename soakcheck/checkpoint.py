"""Run one checkpoint: pick its window and slot, then run the checklist."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from soakcheck.config import Target
from soakcheck.locks import exclusive_lock
from soakcheck.record import free_checkpoint_id
from soakcheck.window import Slot, Window, current_window, new_window, now_utc

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKLIST_DIR = PROJECT_ROOT / "tests"
DEFAULT_REPORTS = PROJECT_ROOT / "reports"
CHECKPOINT_LOCK = ".checkpoint.lock"

# pytest's own codes above 1 mean the run itself broke, not a check.
EXIT_OK, EXIT_PRIMARY_FAILED, EXIT_USAGE = 0, 1, 3


@dataclass
class CheckpointPlan:
    """The report paths of one checkpoint and the slot it fills."""

    window: Window
    slot: Slot
    checkpoint_id: str
    kind: str

    @property
    def base(self) -> Path:
        return self.window.directory / self.checkpoint_id

    @property
    def html(self) -> Path:
        return self.base.with_name(self.checkpoint_id + ".html")

    @property
    def json(self) -> Path:
        return self.base.with_name(self.checkpoint_id + ".json")


def open_window(target: Target, reports: Path) -> Window:
    """Return the target's open window, starting a new one when none is open."""
    window = current_window(reports, target.name)
    if window is not None:
        return window
    window = new_window(
        reports,
        target.name,
        target.window.length,
        target.window.interval,
        policy=target.window_policy(),
    )
    print(f"started window {window.id} ({window.slot_count} slots)")
    return window


def plan_checkpoint(window: Window, kind: str = "scheduled") -> CheckpointPlan:
    """Choose the slot nearest to now and a free checkpoint id for it."""
    slot = window.slot_at(now_utc())
    base = slot.id if kind == "scheduled" else f"p0-{slot.id}"
    return CheckpointPlan(
        window, slot, free_checkpoint_id(window.directory, base), kind
    )


def pytest_arguments(
    target_path: Path, plan: CheckpointPlan, extra: list[str] | None = None
) -> list[str]:
    """Build the pytest command-line arguments of a checkpoint run."""
    if plan.kind == "p0":
        selection = [str(CHECKLIST_DIR / "p0"), "-m", "p0"]
    else:
        selection = [str(CHECKLIST_DIR), "-m", "not p0"]
    return [
        *selection,
        f"--rootdir={PROJECT_ROOT}",
        f"--target={target_path}",
        f"--checkpoint={plan.base}",
        f"--window-dir={plan.window.directory}",
        f"--slot-index={plan.slot.index}",
        f"--checkpoint-kind={plan.kind}",
        "-p",
        "soakcheck.plugin",
        "-q",
        "-rfE",
        # One line per failure, without pytest's assertion introspection: each
        # checklist assert already states the value, operator and threshold.
        "--tb=line",
        "--assert=plain",
        *(extra or []),
    ]


def run_checkpoint(
    target_path: Path, plan: CheckpointPlan, extra: list[str] | None = None
) -> int:
    """Run the checklist in its own pytest process and return its exit code."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        *pytest_arguments(target_path, plan, extra),
    ]
    log.info(
        "checkpoint start id=%s window=%s slot=%s",
        plan.checkpoint_id,
        plan.window.id,
        plan.slot.label,
    )
    # A session of its own keeps a Ctrl-C meant for the monitor away from the
    # running checkpoint, which then finishes and writes its record.
    with exclusive_lock(plan.window.directory / CHECKPOINT_LOCK, "checkpoint"):
        completed = subprocess.run(
            command, cwd=PROJECT_ROOT, check=False, start_new_session=True
        )
    log.info("checkpoint stop id=%s exit=%d", plan.checkpoint_id, completed.returncode)
    return completed.returncode

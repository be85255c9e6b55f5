"""The window scheduler: a checkpoint at every slot, then the verdict.

State lives in the window folder, not in this process: a slot is done when
its record exists. A monitor started again mid-window therefore resumes at
the next slot, and the slots whose time passed with no record are missed.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from soakcheck.checkpoint import CheckpointPlan, run_checkpoint
from soakcheck.locks import AlreadyRunning, exclusive_lock
from soakcheck.record import free_checkpoint_id, list_records, write_json_atomic
from soakcheck.verdict import Verdict, decide
from soakcheck.verdict_report import write_reports
from soakcheck.window import Slot, Window, now_utc

log = logging.getLogger(__name__)

MONITOR_LOCK = ".monitor.lock"
MONITOR_STATE = "monitor.json"


def done_slots(window: Window) -> set[int]:
    """Return the indexes of slots that already have a scheduled record."""
    done = set()
    for record in list_records(window.directory):
        checkpoint = record.get("checkpoint", {})
        if checkpoint.get("kind") == "scheduled" and isinstance(
            checkpoint.get("slot_index"), int
        ):
            done.add(checkpoint["slot_index"])
    return done


@dataclass
class Monitor:
    """Runs a window's remaining slots; stop() ends it between checkpoints."""

    window: Window
    target_path: Path
    clock: Callable[[], datetime] = now_utc
    run: Callable[[Path, CheckpointPlan], int] = run_checkpoint
    before_slot: Callable[[Slot], None] | None = None
    before_verdict: Callable[[], None] | None = None
    missed: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stop_requested.set()

    def plan(self) -> tuple[list[Slot], list[Slot]]:
        """Split the slots still to run from those missed already."""
        done = done_slots(self.window)
        grace = timedelta(seconds=self.window.interval_s / 2)
        moment = self.clock()
        remaining, missed = [], []
        for slot in self.window.slots():
            if slot.index in done:
                continue
            if moment > slot.due + grace:
                missed.append(slot)
            else:
                remaining.append(slot)
        return remaining, missed

    def run_window(self) -> Verdict | None:
        """Run every remaining slot, then decide; None when stopped early."""
        with exclusive_lock(self.window.directory / MONITOR_LOCK, "monitor"):
            remaining, missed = self.plan()
            for slot in missed:
                self._note_missed(slot)
            total = self.window.slot_count
            log.info(
                "monitor start window=%s remaining=%d missed=%d",
                self.window.id,
                len(remaining),
                len(missed),
            )
            for slot in remaining:
                if not self._wait_until(slot):
                    log.info("monitor stop window=%s (signal)", self.window.id)
                    return None
                if self.clock() > slot.due + timedelta(
                    seconds=self.window.interval_s / 2
                ):
                    self._note_missed(slot)
                    continue
                if self.before_slot is not None:
                    self.before_slot(slot)
                self._run_slot(slot, total)
                if self.stop_requested.is_set():
                    log.info("monitor stop window=%s (signal)", self.window.id)
                    return None

            if self.before_verdict is not None:
                self.before_verdict()
            verdict = decide(self.window)
            write_reports(verdict, self.window.directory)
            log.info(
                "monitor done window=%s verdict=%s", self.window.id, verdict.decision
            )
            return verdict

    def _wait_until(self, slot: Slot) -> bool:
        delay = (slot.due - self.clock()).total_seconds()
        if delay > 0:
            print(
                f"next: {slot.label} at {slot.due:%Y-%m-%d %H:%M:%S} UTC "
                f"(in {delay:.0f} s)",
                flush=True,
            )
            if self.stop_requested.wait(delay):
                return False
        return not self.stop_requested.is_set()

    def _run_slot(self, slot: Slot, total: int) -> None:
        checkpoint_id = free_checkpoint_id(self.window.directory, slot.id)
        plan = CheckpointPlan(self.window, slot, checkpoint_id, "scheduled")
        print(f"slot {slot.index + 1} of {total}: {slot.label}", flush=True)
        try:
            code = self.run(self.target_path, plan)
        except AlreadyRunning as error:
            # Another checkpoint (cron, CI) is filling this slot right now.
            log.warning("checkpoint skipped id=%s: %s", checkpoint_id, error)
            print(f"slot {slot.label}: skipped, {error}", flush=True)
            return
        summary = _summary_of(plan.json)
        if summary is None:
            log.error("checkpoint wrote no record id=%s exit=%d", checkpoint_id, code)
            print(f"slot {slot.label}: no record written (exit {code})", flush=True)
            return
        self.completed.append(slot.label)
        print(
            f"slot {slot.index + 1} of {total} ({slot.label}): "
            f"{summary['passed']} passed, {_count(summary['warnings'], 'warning')}, "
            f"{_count(summary['criticals'], 'critical')}",
            flush=True,
        )

    def _note_missed(self, slot: Slot) -> None:
        self.missed.append(slot.label)
        log.warning("slot missed window=%s slot=%s", self.window.id, slot.label)
        path = self.window.directory / MONITOR_STATE
        state: dict[str, Any] = {}
        if path.exists():
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                state = {}
        missed = state.setdefault("missed", [])
        if slot.label not in missed:
            missed.append(slot.label)
        write_json_atomic(path, state)


def _summary_of(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError):
        return None


def install_signal_handlers(monitor: Monitor) -> None:
    """Stop cleanly on SIGINT or SIGTERM, after the running checkpoint."""

    def handle(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        print(f"{name} received: stopping after the running checkpoint", flush=True)
        monitor.stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

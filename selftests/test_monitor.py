"""The monitor: compressed windows run slot by slot, resumed after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selftests.stack import PROJECT, Stack, secrets_env
from soakcheck.checkpoint import run_checkpoint
from soakcheck.config import load_target
from soakcheck.monitor import Monitor
from soakcheck.record import list_records
from soakcheck.verdict import decide
from soakcheck.window import Slot, current_window, list_windows, new_window

QUIET = ["-p", "no:cacheprovider", "--no-header"]


def _monitor_process(target: Path, reports: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soakcheck",
            "monitor",
            "--target",
            str(target),
            "--reports",
            str(reports),
        ],
        cwd=PROJECT,
        env={**os.environ, **secrets_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_records(reports: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduled = [
            p
            for p in reports.glob("*/*.json")
            if p.name not in ("window.json", "verdict.json", "monitor.json")
        ]
        if len(scheduled) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} checkpoint records after {timeout} s")


@pytest.mark.slow
def test_healthy_window_approved(shared_stack: Stack, tmp_path: Path) -> None:
    """A compressed healthy window of six slots run by the monitor is APPROVED."""
    target = shared_stack.write_target(length="15s", interval="3s")
    reports = tmp_path / "reports"

    monitor = _monitor_process(target, reports)
    output, _ = monitor.communicate(timeout=90)
    # The window may be over by now, so it is looked up among all windows.
    windows = list_windows(reports, "selftest")

    assert monitor.returncode == 0, output
    assert "verdict for window" in output
    assert "APPROVED" in output
    assert "slot 6 of 6" in output
    assert len(windows) == 1
    assert len(list_records(windows[0].directory)) == 6


@pytest.mark.slow
def test_restart_resumes_and_misses(shared_stack: Stack, tmp_path: Path) -> None:
    """A restarted monitor resumes, and the slot it slept through is missed."""
    target = shared_stack.write_target(length="15s", interval="3s")
    reports = tmp_path / "reports"

    first = _monitor_process(target, reports)
    _wait_for_records(reports, 2, timeout=20)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    window = current_window(reports, "selftest")
    assert window is not None
    # Sleep past the grace period of the next slot, so the restart misses it.
    missed = window.slot(2)
    time.sleep(
        max(
            0.0,
            (missed.due - window.start).total_seconds()
            + 1.8
            - (time.time() - window.start.timestamp()),
        )
    )
    second = _monitor_process(target, reports)
    output, _ = second.communicate(timeout=90)
    verdict = decide(window)

    assert second.returncode == 1, output
    assert verdict.decision == "CONDITIONAL"
    assert verdict.missed_slots == [missed.label]
    assert f"slot {missed.label} was missed" in " ".join(
        r.text for r in verdict.reasons
    )
    assert "missed slots: Second 6" in output


@pytest.mark.slow
def test_second_monitor_refused(shared_stack: Stack, tmp_path: Path) -> None:
    """A second monitor on the same window is refused with a clear message."""
    target = shared_stack.write_target(length="12s", interval="4s")
    reports = tmp_path / "reports"

    first = _monitor_process(target, reports)
    _wait_for_records(reports, 1, timeout=20)
    second = _monitor_process(target, reports)
    output, _ = second.communicate(timeout=30)
    first.send_signal(signal.SIGTERM)
    first_output, _ = first.communicate(timeout=30)

    assert second.returncode == 3
    assert "another monitor is running" in output
    assert first.returncode == 130, first_output
    assert "SIGTERM received" in first_output


@pytest.mark.slow
def test_slow_leak_slope_warning(
    shared_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leak whose values all pass is reported when its trend crosses the cap."""
    for name, value in secrets_env().items():
        monkeypatch.setenv(name, value)
    target_path = shared_stack.write_target(
        length="30s", interval="3s", memory_primary_mb=260, memory_critical_mb=600
    )
    target = load_target(target_path)
    reports = tmp_path / "reports"
    window = new_window(reports, "selftest", 30, 3, policy=target.window_policy())

    def grow(slot: Slot) -> None:
        if slot.index >= 5:
            monitor.stop()
        elif slot.index >= 1:
            shared_stack.backend.inject("memory_grow", mb=25)

    monitor = Monitor(
        window,
        target_path,
        run=lambda path, plan: run_checkpoint(path, plan, QUIET),
        before_slot=grow,
    )
    monitor.run_window()
    shared_stack.backend.clear_faults()
    verdict = decide(window)
    trends = [r for r in verdict.reasons if r.kind == "trend"]
    failures = [
        r
        for r in list_records(window.directory)[-1]["results"]
        if r["outcome"] == "failed"
    ]

    assert failures == [], failures
    assert len(trends) == 1, verdict.reasons
    assert "backend" in trends[0].text.lower()
    assert "MB/h" in trends[0].text

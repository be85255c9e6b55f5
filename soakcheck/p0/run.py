"""`make p0`: run the manual P0 tests once as a checkpoint of kind p0."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from soakcheck.checkpoint import open_window, plan_checkpoint, run_checkpoint
from soakcheck.config import Target, TargetError, load_target
from soakcheck.record import list_records, read_record
from soakcheck.window import Window, load_window

log = logging.getLogger(__name__)

EXIT_OK, EXIT_P0_FAILED, EXIT_NO_RECORD, EXIT_USAGE = 0, 1, 2, 3


def run_p0(
    target_path: Path, reports: Path, window_id: str | None, *, again: bool = False
) -> int:
    """Run the P0 tests against the target and record them in its window.

    Returns 0 when every P0 test passed, 1 when one failed or was skipped,
    2 when the run wrote no record, and 3 for an invalid target, an unknown
    window or a target that does not allow P0 tests.
    """
    try:
        target = load_target(target_path)
    except TargetError as error:
        print(f"soakcheck: {error}", file=sys.stderr)
        return EXIT_USAGE

    if not target.p0.allowed:
        print(not_allowed_message(target_path), file=sys.stderr)
        return EXIT_USAGE

    window = _window(target, reports, window_id)
    if window is None:
        return EXIT_USAGE

    earlier = _earlier_p0_runs(window)
    if earlier and not again:
        print(
            f"soakcheck: the P0 tests already ran in window {window.id} "
            f"({', '.join(earlier)}); they change state, so they run once per "
            f"window. Pass --again (make p0 AGAIN=1) to run them once more.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    plan = plan_checkpoint(window, kind="p0")
    code = run_checkpoint(target_path, plan)
    record = read_record(plan.json) if plan.json.exists() else None
    if record is None:
        print(f"no P0 record was written at {plan.json}", file=sys.stderr)
        return code if code > 1 else EXIT_NO_RECORD

    print(f"report: {plan.html}")
    return _exit_code(record)


def _earlier_p0_runs(window: Window) -> list[str]:
    return [
        str(record["checkpoint"].get("id"))
        for record in list_records(window.directory)
        if record.get("checkpoint", {}).get("kind") == "p0"
    ]


def not_allowed_message(target_path: Path) -> str:
    """Return the message that rejects a target whose file does not allow P0 tests."""
    return (
        f"soakcheck: the P0 tests send requests that change state (a Stripe test "
        f"event, charges, a reconciliation run), so they are off by default: set "
        f"allowed = true under [p0] in {target_path} to let make p0 send requests "
        f"that change state"
    )


def _window(target: Target, reports: Path, window_id: str | None) -> Window | None:
    if window_id is None:
        return open_window(target, reports)

    directory = reports / window_id
    if not directory.is_dir():
        print(
            f"soakcheck: window {window_id!r} not found under {reports}; list them "
            f"with `python -m soakcheck window list`",
            file=sys.stderr,
        )
        return None
    return load_window(directory)


def _exit_code(record: dict[str, Any]) -> int:
    results = record.get("results") or []
    p0 = [r for r in results if r["check"].startswith("p0.")]
    passed = [r for r in p0 if r["outcome"] == "passed"]
    # A P0 test that failed or was skipped leaves the window CONDITIONAL.
    if not p0 or len(passed) < len(p0):
        return EXIT_P0_FAILED
    return EXIT_OK

"""Evidence that the nightly reconciliation job ran, from the log lines of a window.

The job is due in a checkpoint window when its scheduled time of day (UTC)
falls after the previous checkpoint and no later than the current one. Then
the scan of that window must contain a start line, a later completion line,
and no error record between them. Pass `reconciliation_patterns()` to
`scan_log(patterns=...)` so the scan collects those lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from soakcheck.logscan.evidence import PatternMatch
from soakcheck.logscan.scan import LogScan

DEFAULT_SCHEDULE = "03:00"
DEFAULT_START_PATTERN = "Reconciliation started"
DEFAULT_COMPLETED_PATTERN = "Reconciliation completed"
STARTED = "reconciliation_started"
COMPLETED = "reconciliation_completed"

# A start logged this long before the scheduled time still counts: the
# scheduler's clock and the logger's clock may differ a little.
START_TOLERANCE = timedelta(minutes=5)

_SCHEDULE_RE = re.compile(r"(?P<hour>\d{1,2}):(?P<minute>\d{2})")
_PROBLEM_LEVELS = ("error", "fatal")


@dataclass(frozen=True, slots=True)
class ReconciliationEvidence:
    """Whether the nightly job was due in a window, and what the log showed.

    `errors_during` counts error and fatal records logged after the start line
    and before the completion line. It is None when either line is missing.
    `passed` is None when the job was not due.
    """

    due: bool
    reason: str
    scheduled_at: datetime | None = None
    started: PatternMatch | None = None
    completed: PatternMatch | None = None
    errors_during: int | None = None
    passed: bool | None = None


def reconciliation_patterns(
    start: str = DEFAULT_START_PATTERN, completed: str = DEFAULT_COMPLETED_PATTERN
) -> dict[str, str]:
    """Return the `patterns` argument for `scan_log` that collects the job's lines."""
    return {STARTED: start, COMPLETED: completed}


def parse_schedule(schedule: str) -> time:
    """Parse a time of day written as "HH:MM" (24-hour, UTC)."""
    match = _SCHEDULE_RE.fullmatch(schedule.strip())
    if match is None:
        raise ValueError(
            f"reconciliation schedule {schedule!r} is not a time of day; write it "
            'as "HH:MM" in 24-hour UTC, for example "03:00"'
        )

    hour, minute = int(match.group("hour")), int(match.group("minute"))
    if hour > 23 or minute > 59:
        raise ValueError(
            f"reconciliation schedule {schedule!r} is out of range; hours go from "
            "00 to 23 and minutes from 00 to 59"
        )
    return time(hour, minute, tzinfo=UTC)


def scheduled_time_in_window(
    previous_checkpoint: datetime, current_checkpoint: datetime, schedule: str
) -> datetime | None:
    """Return the latest scheduled run in (`previous_checkpoint`, `current_checkpoint`].

    Both checkpoint times must be timezone-aware. Returns None when no
    scheduled run falls in that interval.
    """
    at = parse_schedule(schedule)
    current = current_checkpoint.astimezone(UTC)
    candidate = datetime.combine(current.date(), at)
    if candidate > current:
        candidate -= timedelta(days=1)

    if candidate > previous_checkpoint.astimezone(UTC):
        return candidate
    return None


def _pick_start(starts: list[PatternMatch], scheduled: datetime) -> PatternMatch | None:
    earliest = scheduled - START_TOLERANCE
    for match in starts:
        if match.time is None or match.time >= earliest:
            return match
    return None


def check_reconciliation(
    scan: LogScan,
    previous_checkpoint: datetime | None,
    current_checkpoint: datetime,
    *,
    schedule: str = DEFAULT_SCHEDULE,
) -> ReconciliationEvidence:
    """Decide from one window's scan whether the nightly job ran without errors.

    `scan` must have been made with `patterns=reconciliation_patterns(...)`.
    Without a previous checkpoint the window has no start, so the job is not
    due.
    """
    if previous_checkpoint is None:
        return ReconciliationEvidence(
            False, "no previous checkpoint, so the window has no start"
        )

    scheduled = scheduled_time_in_window(
        previous_checkpoint, current_checkpoint, schedule
    )
    if scheduled is None:
        return ReconciliationEvidence(
            False,
            f"the scheduled time {schedule} UTC did not fall between the checkpoints "
            f"{previous_checkpoint.isoformat()} and {current_checkpoint.isoformat()}",
        )

    started = _pick_start(scan.matches.get(STARTED, []), scheduled)
    if started is None:
        return ReconciliationEvidence(
            True,
            "no start line was logged after the scheduled time "
            f"{scheduled.isoformat()}",
            scheduled,
            passed=False,
        )

    completions = [
        match
        for match in scan.matches.get(COMPLETED, [])
        if match.sequence > started.sequence
    ]
    if not completions:
        # NOTE: a job still running at the checkpoint also ends up here; its
        # completion falls in the next window, where the job is not due.
        return ReconciliationEvidence(
            True,
            f"started (line {started.line}) but no completion line was logged by "
            "the checkpoint",
            scheduled,
            started,
            passed=False,
        )

    completed = completions[0]
    errors = completed.errors_before - started.errors_before
    if started.level in _PROBLEM_LEVELS:
        errors -= 1
    failed_completion = completed.level in _PROBLEM_LEVELS
    if errors or failed_completion:
        problem = f"{errors} error records were logged between start and completion"
        if failed_completion:
            problem += f", and the completion line is at level {completed.level}"
        return ReconciliationEvidence(
            True,
            f"completed, but {problem}",
            scheduled,
            started,
            completed,
            errors,
            False,
        )

    return ReconciliationEvidence(
        True,
        f"started (line {started.line}) and completed (line {completed.line}) "
        "with no error records between them",
        scheduled,
        started,
        completed,
        0,
        True,
    )

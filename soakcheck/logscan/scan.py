"""The public entry point: scan a log file from the last checkpoint's position."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soakcheck.logscan.blockscan import PatternSearch, ScanTally
from soakcheck.logscan.classify import LINE_CAP, LineClassifier
from soakcheck.logscan.consume import ScanOptions
from soakcheck.logscan.evidence import LineRef, LogLine, PatternMatch
from soakcheck.logscan.follow import LogFollower
from soakcheck.logscan.reader import BLOCK_SIZE
from soakcheck.logscan.split import SPLIT_MIN_BYTES

logger = logging.getLogger(__name__)

DEFAULT_WORKER_PATTERN = "RecordingQueueWorker running normally"


@dataclass
class LogScan:
    """Result of one scan of a log file: the records since the previous checkpoint.

    Counts are of records (a stack trace is one record). `error_records`
    excludes fatal ones, which `fatal_records` counts. `errors_per_hour` maps
    the start of each UTC hour (ISO 8601) to the error records that their own
    timestamps place in it. Records without a timestamp are put in the hour
    of `now` and counted in `errors_without_timestamp`. `error_lines` and
    `fatal_lines` keep the first 1000 positions of each kind, and
    `first_error` and `last_error` the first and last error or fatal record.
    `worker_last_seen` is the time of the last worker line, or its text when
    it has no timestamp. `events` are sentences about
    rotation, truncation, compression and missing files, and `possible_loss`
    is set when one of them means lines may have gone unread. `state` is the
    position to pass as `previous` at the next checkpoint.
    """

    path: str
    missing: bool = False
    error: str | None = None
    records: int = 0
    error_records: int = 0
    fatal_records: int = 0
    warn_records: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    errors_per_hour: dict[str, int] = field(default_factory=dict)
    max_errors_in_an_hour: int = 0
    errors_without_timestamp: int = 0
    error_samples: list[LogLine] = field(default_factory=list)
    fatal_samples: list[LogLine] = field(default_factory=list)
    error_lines: list[LineRef] = field(default_factory=list)
    fatal_lines: list[LineRef] = field(default_factory=list)
    first_error: LineRef | None = None
    last_error: LineRef | None = None
    worker_seen: bool = False
    worker_matches: int = 0
    worker_last_seen: str | None = None
    worker_last_line: LogLine | None = None
    matches: dict[str, list[PatternMatch]] = field(default_factory=dict)
    match_counts: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    possible_loss: bool = False
    state: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data (times as ISO 8601 strings)."""
        return _json_ready(asdict(self))


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def scan_log(
    path: str | Path,
    previous: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    worker_pattern: str | None = DEFAULT_WORKER_PATTERN,
    custom_pattern: str | None = None,
    sample_limit: int = 5,
    fallback_interval_s: float | None = None,
    patterns: dict[str, str] | None = None,
    from_start: bool = True,
    block_size: int = BLOCK_SIZE,
    line_cap: int = LINE_CAP,
    split_min_bytes: int | None = SPLIT_MIN_BYTES,
) -> LogScan:
    """Read what was appended to a log since `previous` and classify its records.

    `previous` is the `state` of the last scan of this path, or None for the
    first scan, which reads the file from offset 0 (or from its end when
    `from_start` is false). A missing or unreadable file gives a result with
    `missing` or `error` set and the previous state unchanged. Rotation by
    rename and by copy-truncate is followed, as the `follow` module explains.

    `worker_pattern` is a phrase or regular expression whose last match sets
    `worker_seen` and `worker_last_seen`. `custom_pattern` is a regular
    expression with a named group `level`, for lines the built-in formats do
    not cover. `patterns` maps names to phrases or regular expressions whose
    matching lines are collected in `matches` (the first 100 of each).
    `fallback_interval_s` is the time since the previous checkpoint. It is
    used only with a `previous` state that does not list the rotated files
    present then: rotated files modified within that time are read as new.
    `now` is the time given to error records without a timestamp. A pattern
    that is not a valid regular expression raises ValueError. A read of at
    least `split_min_bytes` is shared with a second process where the system
    allows it; None keeps every read in this process.
    """
    now = now or datetime.now(UTC)
    path = Path(path)
    started = time.monotonic()
    options = ScanOptions(
        classifier=LineClassifier(custom_pattern),
        worker=PatternSearch("worker", worker_pattern) if worker_pattern else None,
        patterns=[PatternSearch(name, p) for name, p in (patterns or {}).items()],
        from_start=from_start,
        fallback_interval_s=fallback_interval_s,
        block_size=block_size,
        line_cap=line_cap,
        split_min_bytes=split_min_bytes,
    )
    tally = ScanTally(now=now, sample_limit=sample_limit)
    offset = previous.get("offset") if isinstance(previous, dict) else None
    logger.info("log scan started path=%s offset=%s", path, offset)

    follower = LogFollower(path, tally, options)
    state = follower.scan(previous)

    result = _result(path, tally, follower, state, patterns or {})
    logger.info(
        "log scan finished path=%s bytes_read=%d records=%d errors=%d fatal=%d "
        "events=%d duration_ms=%.1f",
        path,
        result.bytes_read,
        result.records,
        result.error_records,
        result.fatal_records,
        len(result.events),
        (time.monotonic() - started) * 1000,
    )
    return result


def _result(
    path: Path,
    tally: ScanTally,
    follower: LogFollower,
    state: dict[str, Any] | None,
    patterns: dict[str, str],
) -> LogScan:
    worker = tally.worker_last
    worker_last_seen = None
    if worker is not None:
        worker_last_seen = worker.time.isoformat() if worker.time else worker.text

    per_hour = dict(sorted(tally.errors_per_hour.items()))
    return LogScan(
        path=str(path),
        missing=follower.missing,
        error=follower.error,
        records=tally.records,
        error_records=tally.error_records,
        fatal_records=tally.fatal_records,
        warn_records=tally.warn_records,
        bytes_read=follower.bytes_read,
        lines_read=tally.lines_read,
        errors_per_hour=per_hour,
        max_errors_in_an_hour=max(per_hour.values(), default=0),
        errors_without_timestamp=tally.errors_without_timestamp,
        error_samples=tally.error_samples,
        fatal_samples=tally.fatal_samples,
        error_lines=tally.error_lines,
        fatal_lines=tally.fatal_lines,
        first_error=tally.first_error,
        last_error=tally.last_error,
        worker_seen=tally.worker_matches > 0,
        worker_matches=tally.worker_matches,
        worker_last_seen=worker_last_seen,
        worker_last_line=worker,
        matches={name: tally.matches.get(name, []) for name in patterns},
        match_counts={name: tally.match_counts.get(name, 0) for name in patterns},
        events=follower.events,
        possible_loss=follower.possible_loss,
        state=state,
    )

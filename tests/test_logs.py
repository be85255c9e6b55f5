"""Log files: errors since the last checkpoint, fatal lines, hourly rate, worker."""

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from soakcheck.config import Target
from soakcheck.logscan import LogLine, LogScan, check_reconciliation
from soakcheck.observation import Observation
from soakcheck.plugin import SoakSession
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


def _scan(log_scans: dict[str, ProbeResult[LogScan]], log_file: Path) -> LogScan:
    scan = log_scans[str(log_file)].require()
    if scan.missing:
        pytest.fail(f"log file not found: {scan.path}; check logs.files in the target")
    if scan.error:
        pytest.fail(f"cannot read log file {scan.path}: {scan.error}")
    return scan


def _notes(scan: LogScan) -> str:
    return "; ".join(scan.events)


def _sample(line: LogLine) -> str:
    return f"{Path(line.path).name}:{line.line}: {line.text}"


@pytest.mark.check("logs.errors")
def test_logs_errors(
    log_file: Path,
    log_scans: dict[str, ProbeResult[LogScan]],
    observe: Observation,
) -> None:
    """No ERROR-level record was logged since the last checkpoint."""
    scan = _scan(log_scans, log_file)
    observe.record(
        scan.error_records,
        threshold=0,
        unit="lines",
        operator="==",
        subject=f"ERROR records in {Path(scan.path).name} since the last checkpoint",
    )
    observe.detail = _notes(scan)
    observe.evidence = [_sample(line) for line in scan.error_samples]

    assert observe.holds(), observe.describe()


@pytest.mark.check("logs.critical")
def test_logs_critical(
    log_file: Path,
    log_scans: dict[str, ProbeResult[LogScan]],
    observe: Observation,
) -> None:
    """No CRITICAL or FATAL record was logged."""
    scan = _scan(log_scans, log_file)
    observe.record(
        scan.fatal_records,
        threshold=0,
        unit="lines",
        operator="==",
        subject=f"CRITICAL/FATAL records in {Path(scan.path).name}",
    )
    observe.detail = _notes(scan)
    observe.evidence = [_sample(line) for line in scan.fatal_samples]

    assert observe.holds(), observe.describe()


@pytest.mark.check("logs.error_rate")
def test_logs_error_rate(
    log_file: Path,
    target: Target,
    log_scans: dict[str, ProbeResult[LogScan]],
    observe: Observation,
) -> None:
    """No hour has more ERROR records than the hourly limit."""
    scan = _scan(log_scans, log_file)
    observe.record(
        scan.max_errors_in_an_hour,
        threshold=target.logs.errors_per_hour,
        unit="lines/hour",
        operator="<=",
        subject=f"max ERROR records in one hour in {Path(scan.path).name}",
    )
    busiest = sorted(scan.errors_per_hour.items(), key=lambda item: -item[1])[:3]
    observe.detail = ", ".join(f"{hour}: {count}" for hour, count in busiest)

    assert observe.holds(), observe.describe()


@pytest.mark.check("logs.worker_alive")
def test_logs_worker_alive(
    target: Target,
    previous: dict[str, Any] | None,
    log_scans: dict[str, ProbeResult[LogScan]],
    observe: Observation,
) -> None:
    """The recording-queue worker logged activity since the last checkpoint."""
    pattern = target.logs.worker_pattern
    if not pattern or not target.logs.files:
        pytest.skip("no logs.worker_pattern or log files configured")
    scans = [result.require() for result in log_scans.values()]
    if not (previous or {}).get("state", {}).get("logs"):
        pytest.skip("first checkpoint of the window: the log baseline was just set")
    seen = [scan for scan in scans if scan.worker_seen]
    observe.record(
        "seen" if seen else "not seen",
        threshold="seen",
        operator="==",
        subject=f"worker line /{pattern}/",
    )
    if seen:
        observe.detail = f"last: {seen[-1].worker_last_seen}"

    assert observe.holds(), observe.describe()


@pytest.mark.check("jobs.reconciliation")
def test_jobs_reconciliation(
    target: Target,
    previous: dict[str, Any] | None,
    log_scans: dict[str, ProbeResult[LogScan]],
    soak: SoakSession,
    observe: Observation,
) -> None:
    """The nightly reconciliation, when due, ran without errors."""
    if not target.logs.files:
        pytest.skip("no log files configured to find the reconciliation in")
    if previous is None:
        pytest.skip("first checkpoint of the window: no interval to look back over")
    since = datetime.fromisoformat(previous["checkpoint"]["started_at"])
    schedule = target.logs.reconciliation_time
    evidence = [
        check_reconciliation(
            result.require(), since, soak.started_at, schedule=schedule
        )
        for result in log_scans.values()
    ]
    if not any(item.due for item in evidence):
        pytest.skip(evidence[0].reason)

    ran = [item for item in evidence if item.passed]
    observe.record(
        "ran cleanly" if ran else "missing or failed",
        threshold="ran cleanly",
        operator="==",
        subject=f"reconciliation scheduled at {schedule} UTC",
    )
    observe.detail = "; ".join(item.reason for item in evidence)

    assert observe.holds(), observe.describe()

"""Checkpoints end to end: the checklist against the real reference backend."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from selftests.stack import Stack, failed, outcomes, run_soakcheck, secrets_env
from soakcheck.services import RedisServer, ReferenceBackend, free_port

# The first checkpoint of a window has no earlier one to compare with.
FIRST_CHECKPOINT_SKIPS = {
    "uptime.delta",
    "uptime.no_restart",
    "logs.worker_alive",
    "jobs.reconciliation",
}


def test_healthy_all_pass(shared_stack: Stack, tmp_path: Path) -> None:
    """Against a healthy backend every check passes, uptime included at run two."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"

    first, record = shared_stack.check(target, reports)
    second, record2 = shared_stack.check(target, reports)

    assert first.returncode == 0, first.stdout + first.stderr
    assert failed(record) == {}
    skipped = {k for k, v in outcomes(record).items() if v == "skipped"}
    assert skipped == FIRST_CHECKPOINT_SKIPS
    assert second.returncode == 0, second.stdout + second.stderr
    assert failed(record2) == {}
    assert outcomes(record2)["uptime.no_restart"] == "passed"
    assert outcomes(record2)["uptime.delta"] == "passed"
    assert outcomes(record2)["logs.worker_alive"] == "passed"


def test_reports_written(shared_stack: Stack, tmp_path: Path) -> None:
    """A checkpoint writes its HTML, JUnit and JSON reports and no partial files."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"

    completed, record = shared_stack.check(target, reports)
    window = next(reports.iterdir())
    names = sorted(p.name for p in window.iterdir())

    assert completed.returncode == 0
    assert "min-00.html" in names
    assert "min-00.xml" in names
    assert "min-00.json" in names
    assert not [name for name in names if name.endswith(".partial")]
    assert record["checkpoint"]["slot_label"] == "Minute 0"


def test_report_reads_like_checklist(shared_stack: Stack, tmp_path: Path) -> None:
    """The HTML report shows each check with its measured value and threshold."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"

    shared_stack.check(target, reports)
    page = next(reports.glob("*/min-00.html")).read_text()

    assert "redis.memory" in page
    # pytest-html keeps the rows as escaped JSON that its script renders.
    assert "&amp;lt; 50 MB" in page
    assert "health.service[webhookQueue]" in page
    assert "selftest" in page
    # A skipped check's reason reads as a sentence, not as a Python tuple.
    assert "log baseline was just set (test_logs.py:" in page
    assert "&amp;#x27;Skipped: " not in page


def test_summary_line_printed(shared_stack: Stack, tmp_path: Path) -> None:
    """The run ends with a summary line: slot, counts and the report path."""
    target = shared_stack.write_target()

    completed, _ = shared_stack.check(target, tmp_path / "reports")

    assert "checkpoint min-00 (Minute 0, target selftest)" in completed.stdout
    assert "0 criticals" in completed.stdout
    assert "min-00.html" in completed.stdout


def test_backend_down_reported(shared_stack: Stack, tmp_path: Path) -> None:
    """With no backend, health checks fail naming the URL; the report is written."""
    port = free_port()
    target = shared_stack.write_target(base_url=f"http://127.0.0.1:{port}", port=port)

    completed, record = shared_stack.check(target, tmp_path / "reports")
    status = next(r for r in record["results"] if r["check"] == "health.status")

    assert completed.returncode == 1
    assert status["outcome"] == "failed"
    assert f"127.0.0.1:{port}" in status["message"]
    assert "connection refused" in status["message"]
    assert failed(record)["backend.memory"] == "warning"
    assert list((tmp_path / "reports").glob("*/min-00.html"))


def test_redis_down_reported(shared_stack: Stack, tmp_path: Path) -> None:
    """With Redis down, Redis and queue checks fail with the reason, health passes."""
    port = free_port()
    target = shared_stack.write_target(redis_url=f"redis://127.0.0.1:{port}/0")

    completed, record = shared_stack.check(target, tmp_path / "reports")
    broken = failed(record)

    assert completed.returncode == 1
    assert broken["redis.reachable"] == "critical"
    assert broken["queues.failed[webhook-processing]"] == "critical"
    assert "health.status" not in broken
    reachable = next(r for r in record["results"] if r["check"] == "redis.reachable")
    assert f"127.0.0.1:{port}" in reachable["message"]


def test_invalid_target_stops(tmp_path: Path) -> None:
    """An invalid target file stops the run with the key and exit code 3."""
    target = tmp_path / "bad.toml"
    target.write_text('name = "bad"\n[backend]\nbase_url = "nope"\n')

    completed = run_soakcheck(
        "check", "--target", str(target), "--reports", str(tmp_path / "reports")
    )

    assert completed.returncode == 3
    assert "backend.base_url" in completed.stderr
    assert "'nope'" in completed.stderr


def test_missing_log_fails_check(shared_stack: Stack, tmp_path: Path) -> None:
    """A configured log file that does not exist fails the log checks with its path."""
    missing = tmp_path / "nowhere" / "app.log"
    target = shared_stack.write_target(log_file=missing)

    _, record = shared_stack.check(target, tmp_path / "reports")
    errors = next(r for r in record["results"] if r["check"] == "logs.errors[app.log]")

    assert errors["outcome"] == "failed"
    assert str(missing) in errors["message"]


def test_record_has_no_secret(shared_stack: Stack, tmp_path: Path) -> None:
    """No secret from the environment appears in the record or the HTML report."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"

    shared_stack.check(target, reports)
    texts = [p.read_text() for p in reports.glob("*/*") if p.is_file()]

    for text in texts:
        assert "selftest-monitoring-token" not in text
        assert "whsec_selftest_secret" not in text


def test_exit_code_follows_primary(shared_stack: Stack, tmp_path: Path) -> None:
    """A warning-only failure keeps exit code 0; the record still lists it."""
    target = shared_stack.write_target(latency_p95_ms=0.001)

    completed, record = shared_stack.check(target, tmp_path / "reports")

    assert completed.returncode == 0
    assert failed(record) == {"health.latency": "warning"}


@pytest.mark.parametrize(
    ("fault", "params", "expected"),
    [
        pytest.param(
            "service_down",
            {"service": "webhookQueue"},
            {"health.status": "critical", "health.service[webhookQueue]": "critical"},
            id="service-down",
        ),
        pytest.param(
            "error_logs",
            {"count": 3},
            {"logs.errors[backend.log]": "warning"},
            id="error-logs",
        ),
        pytest.param(
            "fatal_log",
            {},
            {"logs.critical[backend.log]": "critical"},
            id="fatal-log",
        ),
        pytest.param(
            "failed_job",
            {"queue": "webhook-processing", "count": 1},
            {
                "queues.failed[webhook-processing]": "critical",
                "logs.errors[backend.log]": "warning",
            },
            id="failed-job",
        ),
        pytest.param(
            "stalled_job",
            {"queue": "webhook-processing"},
            {"queues.stalled[webhook-processing]": "critical"},
            id="stalled-job",
        ),
        pytest.param(
            "long_running_job",
            {"queue": "webhook-processing", "minutes": 15},
            {"queues.stalled[webhook-processing]": "critical"},
            id="long-running-job",
        ),
        pytest.param(
            "slow_health",
            {"delay_ms": 300},
            {"health.latency": "warning"},
            id="slow-health",
        ),
        pytest.param(
            "pause_queue",
            {"queue": "recording-upload"},
            {"queues.paused[recording-upload]": "warning"},
            id="paused-queue",
        ),
        pytest.param(
            "memory_grow",
            {"mb": 450},
            {"backend.memory": "warning"},
            id="memory-over-primary",
        ),
        pytest.param(
            "memory_grow",
            {"mb": 700},
            {"backend.memory": "critical"},
            id="memory-over-critical",
        ),
        pytest.param(
            "invalid_health",
            {},
            {
                "health.status": "critical",
                "health.service[database]": "critical",
                "health.service[supabase]": "critical",
                "health.service[backgroundJobs]": "critical",
                "health.service[webhookQueue]": "critical",
                "uptime.delta": "warning",
                "uptime.no_restart": "critical",
            },
            id="proxy-error-page",
        ),
    ],
)
def test_fault_breaks_its_checks(
    fresh_stack: Stack, tmp_path: Path, fault: str, params: dict, expected: dict
) -> None:
    """Each injected fault fails exactly its checks, with the right severity."""
    target = fresh_stack.write_target()
    reports = tmp_path / "reports"
    fresh_stack.check(target, reports)

    fresh_stack.backend.inject(fault, **params)
    _, record = fresh_stack.check(target, reports)

    assert failed(record) == expected


def test_crash_then_restart_detected(fresh_stack: Stack, tmp_path: Path) -> None:
    """A crashed backend fails health; once restarted, the uptime reset is critical."""
    target = fresh_stack.write_target()
    reports = tmp_path / "reports"
    fresh_stack.check(target, reports)

    fresh_stack.backend.inject("crash")
    deadline = time.monotonic() + 10
    while fresh_stack.backend.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    _, down = fresh_stack.check(target, reports)
    fresh_stack.backend.start()
    _, restarted = fresh_stack.check(target, reports)

    assert failed(down)["health.status"] == "critical"
    assert failed(restarted)["uptime.no_restart"] == "critical"


def test_verdict_after_checks(shared_stack: Stack, tmp_path: Path) -> None:
    """A verdict over an unfinished window writes its reports and reasons."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"
    shared_stack.check(target, reports)

    completed = run_soakcheck(
        "verdict", "--target", str(target), "--reports", str(reports)
    )
    verdict = json.loads(next(reports.glob("*/verdict.json")).read_text())

    assert completed.returncode == 1
    assert verdict["decision"] == "CONDITIONAL"
    assert "still to come" in completed.stdout


def test_incident_snapshot_saved(fresh_stack: Stack, tmp_path: Path) -> None:
    """A critical failure saves log lines, Redis INFO and queue counts, linked."""
    target = fresh_stack.write_target()
    reports = tmp_path / "reports"
    fresh_stack.check(target, reports)

    fresh_stack.backend.inject("fatal_log")
    _, record = fresh_stack.check(target, reports)
    window = next(reports.iterdir())
    snapshot = window / record["artifacts"]["incident"]
    text = snapshot.read_text()
    page = (window / f"{record['checkpoint']['id']}.html").read_text()

    assert "logs.critical[backend.log]" in text
    assert '"level":60' in text.replace(" ", "")
    assert "PING ok" in text
    assert "redis_version:" in text
    assert "webhook-processing: waiting" in text
    assert snapshot.name in page


def test_no_snapshot_when_healthy(shared_stack: Stack, tmp_path: Path) -> None:
    """A checkpoint with no critical failure saves no incident snapshot."""
    target = shared_stack.write_target()

    _, record = shared_stack.check(target, tmp_path / "reports")

    assert "incident" not in record["artifacts"]
    assert not list((tmp_path / "reports").glob("*/*.incident.txt"))


def _errors_counted(record: dict) -> int:
    row = next(r for r in record["results"] if r["check"] == "logs.errors[backend.log]")
    return row["value"]


def _wait_for_errors(log_path: Path, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if text.count('"level":50') >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} ERROR lines in {log_path}")


def test_rename_rotation_counts_once(fresh_stack: Stack, tmp_path: Path) -> None:
    """A rename rotation between checkpoints loses no ERROR line and repeats none."""
    target = fresh_stack.write_target()
    reports = tmp_path / "reports"
    log_path = fresh_stack.backend.log_path
    fresh_stack.check(target, reports)

    fresh_stack.backend.inject("error_logs", count=2)
    _wait_for_errors(log_path, 2)
    log_path.rename(log_path.with_name("backend.log.1"))
    os.kill(fresh_stack.backend.pid, signal.SIGHUP)
    fresh_stack.backend.inject("error_logs", count=3)
    _wait_for_errors(log_path, 3)
    _, record = fresh_stack.check(target, reports)
    _, after = fresh_stack.check(target, reports)

    assert _errors_counted(record) == 5
    assert _errors_counted(after) == 0


def test_copytruncate_counts_once(fresh_stack: Stack, tmp_path: Path) -> None:
    """A copy-truncate rotation between checkpoints counts each ERROR line once."""
    target = fresh_stack.write_target()
    reports = tmp_path / "reports"
    log_path = fresh_stack.backend.log_path
    fresh_stack.check(target, reports)

    fresh_stack.backend.inject("error_logs", count=2)
    _wait_for_errors(log_path, 2)
    shutil.copyfile(log_path, log_path.with_name("backend.log.1"))
    with log_path.open("r+b") as stream:
        stream.truncate(0)
    fresh_stack.backend.inject("error_logs", count=3)
    _wait_for_errors(log_path, 3)
    _, record = fresh_stack.check(target, reports)
    _, after = fresh_stack.check(target, reports)
    errors = next(
        r for r in record["results"] if r["check"] == "logs.errors[backend.log]"
    )

    assert _errors_counted(record) == 5
    assert "truncat" in errors["message"]
    assert _errors_counted(after) == 0


def test_eviction_policy_flagged(tmp_path: Path) -> None:
    """A Redis with allkeys-lru fails the eviction-policy check as a warning only."""
    with (
        RedisServer(maxmemory_policy="allkeys-lru") as redis,
        ReferenceBackend(
            redis_url=redis.url,
            log_file=tmp_path / "backend.log",
            heartbeat_seconds=0.5,
            env=secrets_env(),
        ) as backend,
    ):
        stack = Stack(redis, backend, tmp_path)
        target = stack.write_target()

        completed, record = stack.check(target, tmp_path / "reports")
    policy = next(r for r in record["results"] if r["check"] == "redis.eviction_policy")

    assert failed(record) == {"redis.eviction_policy": "warning"}
    assert "allkeys-lru" in policy["message"]
    assert completed.returncode == 0

"""The P0 tests end to end: run_p0 against a real Redis and the reference backend.

The stack is started here rather than taken from conftest.py, so this file
also runs with --noconftest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selftests.stack import MONITORING_TOKEN, PROJECT, STRIPE_SECRET, Stack, secrets_env
from soakcheck.checklist import P0_CHECKS, family_of
from soakcheck.p0.run import run_p0
from soakcheck.p0.secret import Secret, mask_secret
from soakcheck.p0.stripe_event import build_event, serialize
from soakcheck.p0.stripe_webhook import deliver, explain_rejection
from soakcheck.services import RedisServer, ReferenceBackend
from soakcheck.verdict import decide
from soakcheck.window import load_window

P0_MEMBERS = {
    "p0.stripe_webhook[accepted]",
    "p0.stripe_webhook[processed-once]",
    "p0.stripe_webhook[duplicate-ignored]",
    "p0.stripe_webhook[bad-signature-rejected]",
    "p0.stripe_webhook[stale-timestamp-rejected]",
    "p0.debt_limit[over-limit-rejected]",
    "p0.debt_limit[under-limit-accepted]",
    "p0.reconciliation",
}
CHECKER_WRONG_SECRET = "whsec_checker_side_secret_0042"


@pytest.fixture(scope="module")
def p0_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Redis and a backend sharing the self-test secrets, for this module."""
    workdir = tmp_path_factory.mktemp("p0-stack")
    with (
        RedisServer() as redis,
        ReferenceBackend(
            redis_url=redis.url,
            log_file=workdir / "backend.log",
            allow_faults=True,
            heartbeat_seconds=0.5,
            env=secrets_env(),
        ) as backend,
    ):
        backend.wait_until_healthy()
        yield Stack(redis, backend, workdir)


@pytest.fixture
def checker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the checker the same secrets as the backend."""
    for name, value in secrets_env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def faults(p0_stack: Stack) -> Iterator[ReferenceBackend]:
    """The backend, with every fault cleared after the test."""
    yield p0_stack.backend
    p0_stack.backend.clear_faults()


def _target(stack: Stack, name: str, *, allowed: bool = True, **p0: Any) -> Path:
    """Write a target file; extra keys land in its last table, [p0]."""
    path = stack.write_target(name, p0_allowed="true" if allowed else "false")
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in p0.items())
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def _run(target: Path, reports: Path) -> tuple[int, dict[str, Any]]:
    code = run_p0(target, reports, None)
    records = sorted(reports.glob("*/p0-*.json"), key=lambda p: p.stat().st_mtime)
    assert records, f"no P0 record under {reports}"
    return code, json.loads(records[-1].read_text(encoding="utf-8"))


def _results(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["check"]: result for result in record["results"]}


def _failed(record: dict[str, Any]) -> set[str]:
    return {r["check"] for r in record["results"] if r["outcome"] == "failed"}


@pytest.mark.usefixtures("checker_env")
def test_healthy_backend_passes(p0_stack: Stack, tmp_path: Path) -> None:
    """Against a healthy backend every P0 test passes and the record is kind p0."""
    target = _target(p0_stack, "healthy.toml")

    code, record = _run(target, tmp_path / "reports")
    results = _results(record)

    assert code == 0
    assert record["checkpoint"]["kind"] == "p0"
    assert record["checkpoint"]["id"].startswith("p0-")
    assert set(results) == P0_MEMBERS
    assert {family_of(check) for check in results} == set(P0_CHECKS)
    assert _failed(record) == set()
    assert all(result["outcome"] == "passed" for result in results.values())


@pytest.mark.usefixtures("checker_env")
def test_healthy_run_counts_in_verdict(p0_stack: Stack, tmp_path: Path) -> None:
    """The verdict records each P0 family of the run as passed."""
    target = _target(p0_stack, "verdict.toml")
    reports = tmp_path / "reports"

    _run(target, reports)
    window = load_window(next(reports.iterdir()))
    verdict = decide(window, required_p0=list(P0_CHECKS))

    assert set(verdict.p0) == set(P0_CHECKS)
    assert all(verdict.p0[check]["outcome"] == "passed" for check in P0_CHECKS)


@pytest.mark.usefixtures("checker_env")
def test_failed_member_fails_family(
    p0_stack: Stack, faults: ReferenceBackend, tmp_path: Path
) -> None:
    """A P0 family with one failed member is not passed in the verdict."""
    target = _target(p0_stack, "member.toml")
    reports = tmp_path / "reports"
    faults.inject("debt_limit_off")

    _, record = _run(target, reports)
    window = load_window(next(reports.iterdir()))
    verdict = decide(window, required_p0=list(P0_CHECKS))

    assert _failed(record) == {"p0.debt_limit[over-limit-rejected]"}
    assert verdict.p0["p0.debt_limit"]["outcome"] == "failed"


@pytest.mark.parametrize(
    ("fault", "failing", "reason"),
    [
        pytest.param(
            "accept_bad_signature",
            {
                "p0.stripe_webhook[bad-signature-rejected]",
                "p0.stripe_webhook[stale-timestamp-rejected]",
            },
            "does not verify the Stripe-Signature header",
            id="accept-bad-signature",
        ),
        pytest.param(
            "process_duplicates",
            {"p0.stripe_webhook[duplicate-ignored]"},
            "was processed again",
            id="process-duplicates",
        ),
        pytest.param(
            "debt_limit_off",
            {"p0.debt_limit[over-limit-rejected]"},
            "debt limit is not enforced",
            id="debt-limit-off",
        ),
        pytest.param(
            "reconciliation_fails",
            {"p0.reconciliation"},
            "ledger total does not match the Stripe balance",
            id="reconciliation-fails",
        ),
    ],
)
@pytest.mark.usefixtures("checker_env")
def test_fault_fails_its_check(
    p0_stack: Stack,
    faults: ReferenceBackend,
    tmp_path: Path,
    fault: str,
    failing: set[str],
    reason: str,
) -> None:
    """Each backend misbehaviour fails exactly its P0 check, with the reason."""
    target = _target(p0_stack, f"{fault}.toml")
    faults.inject(fault)

    code, record = _run(target, tmp_path / "reports")
    first_failing = _results(record)[sorted(failing)[0]]

    assert code == 1
    assert _failed(record) == failing
    assert reason in first_failing["message"]
    assert first_failing["severity"] == "critical"
    assert first_failing["criterion"] == "manual"


def test_rejected_without_allowed(
    p0_stack: Stack, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A target without allowed = true is rejected with exit 3 and the fix."""
    target = _target(p0_stack, "not-allowed.toml", allowed=False)
    reports = tmp_path / "reports"

    code = run_p0(target, reports, None)
    stderr = capfd.readouterr().err

    assert code == 3
    assert f"set allowed = true under [p0] in {target}" in stderr
    assert "to let make p0 send requests that change state" in stderr
    assert not reports.exists()


def test_unknown_window_rejected(
    p0_stack: Stack, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A window id that does not exist is rejected with exit 3."""
    target = _target(p0_stack, "window.toml")

    code = run_p0(target, tmp_path / "reports", "selftest-19990101-000000")
    stderr = capfd.readouterr().err

    assert code == 3
    assert "window 'selftest-19990101-000000' not found" in stderr


def test_invalid_target_rejected(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An invalid [p0] key is rejected with exit 3, naming the key."""
    target = tmp_path / "bad.toml"
    target.write_text('[p0]\nreconciliation_trigger = "cron"\n', encoding="utf-8")

    code = run_p0(target, tmp_path / "reports", None)
    stderr = capfd.readouterr().err

    assert code == 3
    assert "p0.reconciliation_trigger" in stderr


def test_secret_mismatch_is_misconfiguration(
    p0_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checker secret unlike the backend's reads as a misconfigured backend."""
    monkeypatch.setenv("MONITORING_TOKEN", MONITORING_TOKEN)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", CHECKER_WRONG_SECRET)
    target = _target(p0_stack, "mismatch.toml")

    _, record = _run(target, tmp_path / "reports")
    accepted = _results(record)["p0.stripe_webhook[accepted]"]

    assert accepted["outcome"] == "failed"
    assert "backend misconfigured (raw body or secret)" in accepted["message"]
    assert mask_secret(CHECKER_WRONG_SECRET) in accepted["message"]


def test_missing_secret_names_variable(
    p0_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the signing secret, the tests that need it fail naming the variable."""
    monkeypatch.setenv("MONITORING_TOKEN", MONITORING_TOKEN)
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    target = _target(p0_stack, "no-secret.toml")

    _, record = _run(target, tmp_path / "reports")
    results = _results(record)
    accepted = results["p0.stripe_webhook[accepted]"]

    assert accepted["outcome"] == "failed"
    assert "STRIPE_WEBHOOK_SECRET is not set" in accepted["message"]
    assert results["p0.stripe_webhook[stale-timestamp-rejected]"]["outcome"] == "failed"
    assert results["p0.stripe_webhook[bad-signature-rejected]"]["outcome"] == "passed"


def test_no_secret_in_reports(
    p0_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the signing secret nor the bearer token appears in any report file."""
    reports = tmp_path / "reports"
    target = _target(p0_stack, "secrets.toml")
    monkeypatch.setenv("MONITORING_TOKEN", MONITORING_TOKEN)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    _run(target, reports)
    # A failing run too, so the HTML report carries its evidence section.
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", CHECKER_WRONG_SECRET)

    _run(target, reports)
    texts = {
        path.name: path.read_text(encoding="utf-8", errors="replace")
        for path in reports.rglob("*")
        if path.is_file()
    }
    leaks = {
        name: secret
        for name, text in texts.items()
        for secret in (STRIPE_SECRET, CHECKER_WRONG_SECRET, MONITORING_TOKEN)
        if secret in text
    }

    assert any(name.endswith(".html") for name in texts)
    assert any(name.startswith("p0-") and name.endswith(".json") for name in texts)
    assert leaks == {}


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        pytest.param(None, "passed", id="completes"),
        pytest.param("reconciliation_fails", "failed", id="fails"),
    ],
)
@pytest.mark.usefixtures("checker_env")
def test_queue_trigger(
    p0_stack: Stack,
    faults: ReferenceBackend,
    tmp_path: Path,
    fault: str | None,
    outcome: str,
) -> None:
    """A run started as a BullMQ job is judged by the job's own state."""
    target = _target(p0_stack, "queue.toml", reconciliation_trigger="queue")
    if fault is not None:
        faults.inject(fault)

    _, record = _run(target, tmp_path / "reports")
    result = _results(record)["p0.reconciliation"]

    assert result["outcome"] == outcome
    if outcome == "passed":
        assert "BullMQ job in queue billing-reconciliation" in result["message"]
    else:
        assert "ledger total does not match" in result["message"]


@pytest.mark.usefixtures("checker_env")
def test_unprocessed_event_reported(
    p0_stack: Stack, faults: ReferenceBackend, tmp_path: Path
) -> None:
    """An accepted event that no worker takes fails with the job still pending."""
    target = _target(p0_stack, "paused.toml", processing_timeout="2s")
    faults.inject("pause_queue", queue="webhook-processing")

    _, record = _run(target, tmp_path / "reports")
    results = _results(record)
    processed = results["p0.stripe_webhook[processed-once]"]

    assert results["p0.stripe_webhook[accepted]"]["outcome"] == "passed"
    assert processed["outcome"] == "failed"
    assert "webhook-processing: pending after 2 s" in processed["message"]
    assert "is a worker running for webhook-processing?" in processed["message"]
    assert "no line 'Processed Stripe event {event_id}'" in processed["message"]


def test_wrong_token_names_variable(
    p0_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected bearer token fails the reconciliation naming its variable."""
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("MONITORING_TOKEN", "not-the-monitoring-token")
    target = _target(p0_stack, "wrong-token.toml")

    _, record = _run(target, tmp_path / "reports")
    result = _results(record)["p0.reconciliation"]

    assert result["outcome"] == "failed"
    assert "HTTP 401" in result["message"]
    assert "check MONITORING_TOKEN" in result["message"]


@pytest.mark.usefixtures("checker_env")
def test_missing_status_route_fails_fast(p0_stack: Stack, tmp_path: Path) -> None:
    """A status path with no route fails at once instead of after the timeout."""
    target = _target(
        p0_stack,
        "no-status-route.toml",
        reconciliation_status_path="/api/billing/nowhere/{job_id}",
    )

    _, record = _run(target, tmp_path / "reports")
    result = _results(record)["p0.reconciliation"]

    assert result["outcome"] == "failed"
    assert "HTTP 404" in result["message"]
    assert "p0.reconciliation_status_path" in result["message"]
    assert result["duration_s"] < 10


@pytest.mark.usefixtures("checker_env")
def test_log_alone_is_evidence(p0_stack: Stack, tmp_path: Path) -> None:
    """With the queue evidence turned off, the log line alone shows one processing."""
    target = _target(p0_stack, "log-only.toml", webhook_queue="")

    _, record = _run(target, tmp_path / "reports")
    results = _results(record)

    assert results["p0.stripe_webhook[processed-once]"]["outcome"] == "passed"
    assert results["p0.stripe_webhook[duplicate-ignored]"]["outcome"] == "passed"


@pytest.mark.usefixtures("checker_env")
def test_queue_alone_cannot_count_repeats(p0_stack: Stack, tmp_path: Path) -> None:
    """Without the log evidence, the duplicate test fails saying what to configure."""
    target = _target(p0_stack, "queue-only.toml", processed_log_pattern="")

    _, record = _run(target, tmp_path / "reports")
    results = _results(record)
    duplicate = results["p0.stripe_webhook[duplicate-ignored]"]

    assert results["p0.stripe_webhook[processed-once]"]["outcome"] == "passed"
    assert duplicate["outcome"] == "failed"
    assert "processed_log_pattern" in duplicate["message"]


@pytest.mark.usefixtures("checker_env")
def test_stale_rejection_is_clock_skew(p0_stack: Stack) -> None:
    """A correctly signed event the backend finds too old reads as clock skew."""
    now = int(time.time())
    signed_at = now - 400
    event = build_event("invoice.payment_succeeded", "cus_selftest", signed_at)
    url = p0_stack.backend.base_url + "/api/webhooks/stripe"

    secret = Secret("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)

    delivery = deliver(
        url, serialize(event), event["id"], secret, timeout_s=5, timestamp=signed_at
    )
    explanation = explain_rejection(
        delivery.response, secret=secret, tolerance_s=300, sent_at=now
    )

    assert delivery.response.status == 400
    assert explanation.startswith("clock skew")
    assert "misconfigured" not in explanation


def _logged_ms(line: str) -> float:
    try:
        return float(json.loads(line).get("time", 0))
    except (ValueError, AttributeError):
        return 0.0


def test_plain_pytest_sends_nothing(p0_stack: Stack, tmp_path: Path) -> None:
    """A plain pytest run of tests/p0 skips every P0 test and sends no request."""
    target = _target(p0_stack, "plain.toml")
    log_path = p0_stack.backend.log_path
    mark = log_path.stat().st_size
    started_ms = time.time() * 1000

    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/p0", f"--target={target}", "-q", "-rs"],
        cwd=PROJECT,
        env={**secrets_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    with log_path.open("rb") as stream:
        stream.seek(mark)
        tail = stream.read().decode("utf-8", errors="replace")
    # A request of an earlier test may be logged just after the mark was taken,
    # so only lines stamped after this run started count.
    new_log = "\n".join(
        line for line in tail.splitlines() if _logged_ms(line) >= started_ms
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "8 skipped" in completed.stdout
    assert "P0 tests run only in a P0 checkpoint" in completed.stdout
    assert "/api/webhooks/stripe" not in new_log
    assert "/api/billing" not in new_log


@pytest.mark.usefixtures("checker_env")
def test_second_run_needs_again(
    p0_stack: Stack, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A second P0 run in one window is rejected unless --again is given."""
    target = _target(p0_stack, "twice.toml")
    reports = tmp_path / "reports"

    first = run_p0(target, reports, None)
    second = run_p0(target, reports, None)
    stderr = capfd.readouterr().err
    again = run_p0(target, reports, None, again=True)

    assert first == 0
    assert second == 3
    assert "already ran in window" in stderr
    assert "--again" in stderr
    assert again == 0
    assert len(list(reports.glob("*/p0-*.json"))) == 2

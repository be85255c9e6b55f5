"""Slack alerts, sent to a real local HTTP receiver in place of Slack."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from soakcheck.alerts import (
    ALERTS_FILE,
    WebhookURLError,
    notify_checkpoint,
    validate_webhook_url,
    webhook_url_from_env,
)

WINDOW_ID = "billing-staging-20260101-080000"

# Short waits keep the retry tests fast, because the defaults wait seconds.
FAST = {"timeout_s": 2.0, "backoff_s": 0.01, "retry_after_cap_s": 0.05}


class Receiver:
    """A local incoming-webhook endpoint that stores posts and replies as scripted."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.replies: deque[tuple[int, dict[str, str], float]] = deque()
        # A random path, like the secret part of a real webhook URL.
        self.path = f"/services/T0LOCAL/B0LOCAL/{secrets.token_hex(12)}"
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.replies.append((status, headers or {}, 0.0))

    def reply_late(self, delay_s: float) -> None:
        self.replies.append((200, {}, delay_s))

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver.posts.append({"path": self.path, "body": body})
                status, headers, delay_s = (
                    receiver.replies.popleft() if receiver.replies else (200, {}, 0.0)
                )
                time.sleep(delay_s)
                answer = b"ok" if status == 200 else b"error"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Port 0 picks a free port the first time, and a restart reuses it.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # A short poll interval makes stop() quick.
        serve = self._server.serve_forever
        threading.Thread(target=serve, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def texts(self) -> list[str]:
        return [post["body"]["text"] for post in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port, stopped after the test."""
    instance = Receiver()
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def window_dir(tmp_path: Path) -> Path:
    """An empty window folder under a reports folder."""
    directory = tmp_path / "reports" / WINDOW_ID
    directory.mkdir(parents=True)
    return directory


def result(
    check: str = "redis.memory",
    outcome: str = "failed",
    severity: str = "warning",
    value: object = 61.2,
    message: str = "Redis used_memory (61.2 MB) < 50 MB",
) -> dict[str, Any]:
    return {
        "check": check,
        "outcome": outcome,
        "severity": severity,
        "criterion": "primary",
        "value": value,
        "threshold": 50,
        "unit": "MB",
        "operator": "<",
        "message": message,
    }


def passing(check: str = "redis.memory") -> dict[str, Any]:
    return result(check, outcome="passed", value=12.5, message="")


def record_at(hour: int, *results: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "target": "billing-staging",
        "window": {"id": WINDOW_ID},
        "checkpoint": {
            "id": f"hour-{hour:02d}",
            "kind": "scheduled",
            "slot_label": f"Hour {hour}",
            "finished_at": f"2026-01-01T{8 + hour:02d}:00:00+00:00",
        },
        "results": list(results),
    }


def history(window_dir: Path) -> list[dict[str, Any]]:
    return json.loads((window_dir / ALERTS_FILE).read_text())


def test_alert_sent_once_while_failing(receiver: Receiver, window_dir: Path) -> None:
    """A check failing at three checkpoints in a row alerts once."""
    for hour in (2, 4, 6):
        notify_checkpoint(window_dir, record_at(hour, result()), receiver.url, **FAST)

    assert len(receiver.posts) == 1
    assert [entry["kind"] for entry in history(window_dir)] == ["alert"]
    assert history(window_dir)[0]["slot"] == "Hour 2"


def test_resolved_follows_pass(receiver: Receiver, window_dir: Path) -> None:
    """A resolved message follows when an alerted check passes again."""
    notify_checkpoint(window_dir, record_at(2, result()), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(4, result()), receiver.url, **FAST)
    entries = notify_checkpoint(
        window_dir, record_at(6, passing()), receiver.url, **FAST
    )

    assert len(receiver.posts) == 2
    assert [entry["kind"] for entry in entries] == ["resolved"]
    assert receiver.texts()[1].startswith("RESOLVED: redis.memory")
    assert (
        "Failing since:* Hour 2"
        in receiver.posts[1]["body"]["blocks"][0]["text"]["text"]
    )


def test_passing_check_sends_nothing(receiver: Receiver, window_dir: Path) -> None:
    """A check that passes without an earlier alert sends no resolved message."""
    entries = notify_checkpoint(
        window_dir, record_at(2, passing()), receiver.url, **FAST
    )

    assert entries == []
    assert receiver.posts == []


def test_alerts_again_after_relapse(receiver: Receiver, window_dir: Path) -> None:
    """A check that fails again after it was resolved alerts again."""
    notify_checkpoint(window_dir, record_at(2, result()), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(4, passing()), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(6, result()), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(8, result()), receiver.url, **FAST)

    kinds = [entry["kind"] for entry in history(window_dir)]
    assert kinds == ["alert", "resolved", "alert"]
    assert len(receiver.posts) == 3


def test_escalation_alerts_again(receiver: Receiver, window_dir: Path) -> None:
    """A warning that turns critical alerts again, and not back down to warning."""
    warning = result("backend.memory", severity="warning", value=600)
    critical = result("backend.memory", severity="critical", value=1200)

    for hour, failing in ((2, warning), (4, critical), (6, critical), (8, warning)):
        notify_checkpoint(window_dir, record_at(hour, failing), receiver.url, **FAST)
    notify_checkpoint(
        window_dir, record_at(10, passing("backend.memory")), receiver.url, **FAST
    )

    severities = [(e["kind"], e["severity"]) for e in history(window_dir)]
    assert severities == [
        ("alert", "warning"),
        ("alert", "critical"),
        ("resolved", "critical"),
    ]
    assert receiver.texts()[1].startswith("CRITICAL: backend.memory")


@pytest.mark.parametrize(
    ("severity", "outcome", "posts"),
    [
        pytest.param("critical", "failed", 1, id="critical-failed-alerts"),
        pytest.param("warning", "failed", 1, id="warning-failed-alerts"),
        pytest.param("info", "failed", 0, id="info-failed-silent"),
        pytest.param("critical", "skipped", 0, id="critical-skipped-silent"),
        pytest.param("warning", "skipped", 0, id="warning-skipped-silent"),
    ],
)
def test_which_results_alert(
    receiver: Receiver, window_dir: Path, severity: str, outcome: str, posts: int
) -> None:
    """Failed critical and warning checks alert, but info and skipped checks do not."""
    failing = result("logs.worker_alive", outcome=outcome, severity=severity)

    notify_checkpoint(window_dir, record_at(2, failing), receiver.url, **FAST)

    assert len(receiver.posts) == posts


def test_conditions_alert_separately(receiver: Receiver, window_dir: Path) -> None:
    """Two failing checks alert once each, the critical one first."""
    warning = result("redis.memory", severity="warning")
    critical = result("health.status", severity="critical", value=503)

    notify_checkpoint(window_dir, record_at(2, warning, critical), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(4, warning, critical), receiver.url, **FAST)

    assert len(receiver.posts) == 2
    assert receiver.texts()[0].startswith("CRITICAL: health.status")
    assert receiver.texts()[1].startswith("WARNING: redis.memory")


def test_server_error_retried(receiver: Receiver, window_dir: Path) -> None:
    """A 500 response is retried and the second attempt delivers the alert."""
    receiver.reply(500)

    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, **FAST
    )

    assert len(receiver.posts) == 2
    assert entries[0]["delivered"] is True
    assert entries[0]["attempts"] == 2
    assert entries[0]["error"] is None


def test_rate_limit_retried(receiver: Receiver, window_dir: Path) -> None:
    """A 429 is retried after Retry-After, cut to the cap when it exceeds the cap."""
    receiver.reply(429, {"Retry-After": "3600"})

    started = time.monotonic()
    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, **FAST
    )
    elapsed = time.monotonic() - started

    assert entries[0]["delivered"] is True
    assert len(receiver.posts) == 2
    assert elapsed < 5


def test_retry_after_respected(receiver: Receiver, window_dir: Path) -> None:
    """The wait before the next attempt is the Retry-After the receiver sends."""
    receiver.reply(429, {"Retry-After": "0.4"})

    started = time.monotonic()
    notify_checkpoint(
        window_dir,
        record_at(2, result()),
        receiver.url,
        timeout_s=2.0,
        backoff_s=0.01,
        retry_after_cap_s=5.0,
    )
    elapsed = time.monotonic() - started

    assert len(receiver.posts) == 2
    assert elapsed >= 0.4


def test_timeout_retried(receiver: Receiver, window_dir: Path) -> None:
    """A receiver slower than the timeout is retried, and the next attempt delivers."""
    receiver.reply_late(1.0)

    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, **{**FAST, "timeout_s": 0.3}
    )

    assert entries[0]["delivered"] is True
    assert entries[0]["attempts"] == 2


def test_retries_are_bounded(receiver: Receiver, window_dir: Path) -> None:
    """A receiver that keeps failing gets 1 + `retries` attempts, no more."""
    for _ in range(5):
        receiver.reply(503)

    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, retries=2, **FAST
    )

    assert len(receiver.posts) == 3
    assert entries[0]["delivered"] is False
    assert entries[0]["error"].startswith("HTTP 503")


def test_client_error_not_retried(receiver: Receiver, window_dir: Path) -> None:
    """A 404 (no such webhook) is not retried, since another attempt cannot help."""
    receiver.reply(404)

    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, **FAST
    )

    assert len(receiver.posts) == 1
    assert entries[0]["delivered"] is False
    assert entries[0]["error"].startswith("HTTP 404")


def test_receiver_down_then_delivered(receiver: Receiver, window_dir: Path) -> None:
    """An alert the receiver missed is recorded undelivered and sent next time."""
    receiver.stop()

    first = notify_checkpoint(window_dir, record_at(2, result()), receiver.url, **FAST)
    receiver.start()
    second = notify_checkpoint(window_dir, record_at(4, result()), receiver.url, **FAST)
    third = notify_checkpoint(window_dir, record_at(6, result()), receiver.url, **FAST)

    assert first[0]["delivered"] is False
    assert "ConnectError" in first[0]["error"]
    assert second[0]["delivered"] is True
    assert second[0]["slot"] == "Hour 4"
    assert third == []
    assert len(receiver.posts) == 1


def test_undelivered_resolve_sent_later(receiver: Receiver, window_dir: Path) -> None:
    """A resolved message that could not be delivered is sent at the next checkpoint."""
    notify_checkpoint(window_dir, record_at(2, result()), receiver.url, **FAST)
    receiver.reply(404)
    notify_checkpoint(window_dir, record_at(4, passing()), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(6, passing()), receiver.url, **FAST)

    delivered = [(e["kind"], e["delivered"]) for e in history(window_dir)]
    assert delivered == [("alert", True), ("resolved", False), ("resolved", True)]


def test_message_names_the_facts(receiver: Receiver, window_dir: Path) -> None:
    """The message names check, value, threshold, slot, target, window and report."""
    notify_checkpoint(window_dir, record_at(4, result()), receiver.url, **FAST)
    body = receiver.posts[0]["body"]
    section = body["blocks"][0]["text"]["text"]

    assert body["blocks"][0]["type"] == "section"
    assert body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "`redis.memory`" in section
    assert "*WARNING*" in section
    assert "*Observed:* 61.2 MB, threshold &lt; 50 MB" in section
    assert "*Slot:* Hour 4 (checkpoint hour-04)" in section
    assert "*Target:* billing-staging" in section
    assert f"*Window:* {WINDOW_ID}" in section
    assert f"*Report:* reports/{WINDOW_ID}/hour-04.html" in section
    assert "observed 61.2 MB, threshold &lt; 50 MB" in body["text"]


def test_unmeasured_value_named(receiver: Receiver, window_dir: Path) -> None:
    """A check that could not measure says so instead of printing None."""
    down = result("health.status", severity="critical", value=None, message="")

    notify_checkpoint(window_dir, record_at(2, down), receiver.url, **FAST)

    assert "observed not measured" in receiver.texts()[0]
    assert "None" not in receiver.texts()[0]


def test_message_masks_secrets(receiver: Receiver, window_dir: Path) -> None:
    """A signing secret and a bearer token in a check's message are masked."""
    signing_key = "whsec_" + secrets.token_hex(16)
    token = "eyJ" + secrets.token_hex(20)
    leaky = result(
        "p0.stripe_webhook",
        severity="critical",
        message=f"signature rejected with {signing_key}; Authorization: Bearer {token}",
    )

    notify_checkpoint(window_dir, record_at(2, leaky), receiver.url, **FAST)
    sent = json.dumps(receiver.posts[0]["body"])
    stored = (window_dir / ALERTS_FILE).read_text()

    assert signing_key not in sent
    assert token not in sent
    assert "signature rejected" in sent
    assert signing_key not in stored
    assert token not in stored


def test_url_kept_out_of_state_and_logs(
    receiver: Receiver, window_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook URL never appears in alerts.json or any log line, even httpx's."""
    caplog.set_level(logging.DEBUG)
    failing = result("health.status", severity="critical")
    for _ in range(3):
        receiver.reply(500)

    notify_checkpoint(window_dir, record_at(2, failing), receiver.url, **FAST)
    notify_checkpoint(window_dir, record_at(4, failing), receiver.url, **FAST)
    notify_checkpoint(
        window_dir, record_at(6, passing("health.status")), receiver.url, **FAST
    )
    receiver.stop()
    notify_checkpoint(window_dir, record_at(8, failing), receiver.url, **FAST)
    stored = (window_dir / ALERTS_FILE).read_text()
    secret_part = receiver.path.rsplit("/", 1)[1]

    assert any(record.name == "httpx" for record in caplog.records)
    assert "alert sent check=health.status kind=alert" in caplog.text
    assert "alert delivery retry check=health.status" in caplog.text
    assert "alert delivery failed check=health.status" in caplog.text
    assert secret_part not in caplog.text
    assert secret_part not in stored


def test_no_url_records_nothing(window_dir: Path) -> None:
    """Without a webhook URL nothing is sent or recorded."""
    entries = notify_checkpoint(window_dir, record_at(2, result()), None, **FAST)

    assert entries == []
    assert not (window_dir / ALERTS_FILE).exists()


def test_invalid_url_recorded_not_raised(window_dir: Path) -> None:
    """An invalid webhook URL records the alert undelivered instead of raising."""
    entries = notify_checkpoint(
        window_dir, record_at(2, result()), "ftp://127.0.0.1/hook/topsecret", **FAST
    )

    assert entries[0]["delivered"] is False
    assert "scheme 'ftp'" in entries[0]["error"]
    assert "topsecret" not in entries[0]["error"]


def test_corrupt_history_starts_over(receiver: Receiver, window_dir: Path) -> None:
    """An unreadable alerts.json is replaced, and the failing check alerts again."""
    (window_dir / ALERTS_FILE).write_text("{not json")

    entries = notify_checkpoint(
        window_dir, record_at(2, result()), receiver.url, **FAST
    )

    assert entries[0]["delivered"] is True
    assert len(history(window_dir)) == 1


def test_url_from_env_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset or empty variable turns alerts off."""
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("EMPTY_WEBHOOK", "  ")

    assert webhook_url_from_env() is None
    assert webhook_url_from_env("EMPTY_WEBHOOK") is None


def test_url_from_env_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid https URL is returned as set."""
    url = "https://127.0.0.1:8443/services/T1/B1/abc"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)

    assert webhook_url_from_env() == url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://127.0.0.1/services/T1/B1/topsecret", id="ftp-scheme"),
        pytest.param("127.0.0.1/services/T1/B1/topsecret", id="no-scheme"),
        pytest.param("https:///services/T1/B1/topsecret", id="no-host"),
        pytest.param("https://127.0.0.1:99999/services/T1/B1/topsecret", id="bad-port"),
    ],
)
def test_invalid_url_rejected(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """A URL that is not http(s) with a host is rejected without echoing its path."""
    monkeypatch.setenv("ALERT_HOOK", url)

    with pytest.raises(WebhookURLError) as raised:
        webhook_url_from_env("ALERT_HOOK")

    assert "ALERT_HOOK" in str(raised.value)
    assert "topsecret" not in str(raised.value)
    assert "/services" not in str(raised.value)


def test_validate_accepts_http() -> None:
    """A plain http:// URL is accepted, for a receiver on the same machine."""
    url = "http://127.0.0.1:9000/hook"

    assert validate_webhook_url(url) == url

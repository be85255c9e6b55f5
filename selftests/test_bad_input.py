"""Bad input: odd health responses, damaged records, secrets in failure text."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selftests.stack import MONITORING_TOKEN, Stack
from soakcheck.config import TargetError, load_target
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.health import fetch_health

LEAKY_BODY = json.dumps(
    {
        "status": "error",
        "error": "connect redis://:S3cretRedisPw_xyz42@db:6379 failed; "
        "Authorization: Bearer abcdefghijklmnop123; key sk_live_AAAABBBBCCCCDDDD1234",
    }
).encode()


class _Handler(BaseHTTPRequestHandler):
    """Serves a different bad health response per path."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/leaky":
            self._send(500, LEAKY_BODY)
        elif self.path == "/echo-token":
            body = {"status": "error", "detail": f"token {MONITORING_TOKEN} rejected"}
            self._send(503, json.dumps(body).encode())
        elif self.path == "/zero-flags":
            body = {"status": "ok", "services": {"database": 0, "webhookQueue": None}}
            self._send(200, json.dumps(body).encode())
        elif self.path == "/null-status":
            self._send(200, b'{"status": null, "services": {}}')
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.25)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/healthz")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def _target_for(stack: Stack, base_url: str, path: str, folder: Path) -> Path:
    text = stack.write_target(base_url=base_url).read_text()
    target = folder / "bad-backend.toml"
    target.write_text(
        text.replace("[backend]\n", f'[backend]\nhealth_path = "{path}"\n')
    )
    return target


@pytest.fixture(scope="module")
def bad_backend() -> Iterator[str]:
    """A local HTTP server that returns broken health responses."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_failure_text_masked_everywhere(
    shared_stack: Stack, bad_backend: str, tmp_path: Path
) -> None:
    """Secrets in a health body are masked in the terminal, HTML, XML and JSON."""
    target = _target_for(shared_stack, bad_backend, "/leaky", tmp_path)
    reports = tmp_path / "reports"

    completed, record = shared_stack.check(target, reports)
    outputs = [completed.stdout, completed.stderr]
    outputs += [p.read_text() for p in reports.glob("*/*") if p.is_file()]

    assert record["results"]
    for output in outputs:
        assert "S3cretRedisPw_xyz42" not in output
        assert "abcdefghijklmnop123" not in output
        assert "AAAABBBBCCCCDDDD" not in output


def test_known_secret_value_masked(
    shared_stack: Stack, bad_backend: str, tmp_path: Path
) -> None:
    """A configured secret's value is masked even where no pattern finds it."""
    target = _target_for(shared_stack, bad_backend, "/echo-token", tmp_path)
    reports = tmp_path / "reports"

    completed, _ = shared_stack.check(target, reports)
    outputs = [completed.stdout, completed.stderr]
    outputs += [p.read_text() for p in reports.glob("*/*") if p.is_file()]

    assert any("rejected" in output for output in outputs)
    for output in outputs:
        assert MONITORING_TOKEN not in output


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            "/zero-flags", {"database": False, "webhookQueue": False}, id="0-null"
        ),
    ],
)
def test_odd_flags_are_down(bad_backend: str, path: str, expected: dict) -> None:
    """A service flag of 0 or null reads as down, not as healthy."""
    facts = fetch_health(bad_backend + path, timeout_s=3)

    assert facts.services == expected
    assert facts.overall == "unhealthy"


def test_null_status_unhealthy(bad_backend: str) -> None:
    """A status field that is null reads as unhealthy."""
    facts = fetch_health(bad_backend + "/null-status", timeout_s=3)

    assert facts.overall == "unhealthy"
    assert facts.status == "null"


def test_trickling_body_deadline(bad_backend: str) -> None:
    """A body arriving a byte at a time fails after the timeout, naming the URL."""
    started = time.monotonic()
    with pytest.raises(ProbeError) as caught:
        fetch_health(bad_backend + "/trickle", timeout_s=1)
    elapsed = time.monotonic() - started

    assert elapsed < 3
    assert "/trickle" in str(caught.value)
    assert "timed out" in str(caught.value)


def test_redirect_named(bad_backend: str) -> None:
    """A redirect is reported with its Location and the setting to change."""
    facts = fetch_health(bad_backend + "/redirect", timeout_s=3)

    assert facts.overall == "invalid"
    assert "/healthz" in (facts.invalid_reason or "")
    assert "health_path" in (facts.invalid_reason or "")


def test_damaged_record_skipped(shared_stack: Stack, tmp_path: Path) -> None:
    """A record damaged by hand is skipped and the next checkpoint still runs."""
    target = shared_stack.write_target()
    reports = tmp_path / "reports"
    _, first = shared_stack.check(target, reports)
    window = next(reports.iterdir())
    damaged = json.loads((window / "min-00.json").read_text())
    damaged["checkpoint"]["finished_at"] = 5
    damaged["state"] = {"queues": {"webhook-processing": "bad"}}
    (window / "min-00.json").write_text(json.dumps(damaged))

    completed, record = shared_stack.check(target, reports)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert record["checkpoint"]["id"] == "min-00-2"


@pytest.mark.parametrize(
    ("length", "interval"),
    [
        pytest.param("inf", "2h", id="infinite"),
        pytest.param("nan", "2h", id="nan"),
        pytest.param("24h", "1ms", id="too-many-slots"),
        pytest.param("9999d", "1d", id="too-long"),
    ],
)
def test_absurd_window_rejected(tmp_path: Path, length: str, interval: str) -> None:
    """A window length or interval that cannot be checked is rejected on load."""
    target = tmp_path / "t.toml"
    target.write_text(f'[window]\nlength = "{length}"\ninterval = "{interval}"\n')

    with pytest.raises(TargetError) as caught:
        load_target(target)

    assert "window" in str(caught.value)


def test_credentials_in_url_rejected(tmp_path: Path) -> None:
    """A password in the backend or Redis URL is rejected without echoing it."""
    target = tmp_path / "t.toml"
    target.write_text(
        '[backend]\nbase_url = "http://u:SuperSecret99@127.0.0.1:3001"\n'
        '[redis]\nurl = "redis://:pa/ssLeak77@127.0.0.1:6379/0"\n'
    )

    with pytest.raises(TargetError) as caught:
        load_target(target)
    message = str(caught.value)

    assert "backend.base_url" in message
    assert "redis.url" in message
    assert "SuperSecret99" not in message
    assert "ssLeak77" not in message


def test_unknown_key_value_hidden(tmp_path: Path) -> None:
    """The value of a misplaced key is not echoed, since it may be a secret."""
    target = tmp_path / "t.toml"
    target.write_text('[redis]\nPassword = "TomlPwCase777"\n')

    with pytest.raises(TargetError) as caught:
        load_target(target)

    assert "redis.Password" in str(caught.value)
    assert "TomlPwCase777" not in str(caught.value)


def test_fifo_log_does_not_hang(shared_stack: Stack, tmp_path: Path) -> None:
    """A named pipe given as the log file fails the log checks without hanging."""
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    target = shared_stack.write_target(log_file=fifo)
    reports = tmp_path / "reports"

    completed, record = shared_stack.check(target, reports)
    logs = next(r for r in record["results"] if r["check"] == "logs.critical[fifo.log]")

    assert completed.returncode == 1
    assert logs["outcome"] == "failed"
    assert "fifo.log" in logs["message"]


def test_unicode_queue_id_kept(shared_stack: Stack, tmp_path: Path) -> None:
    """A queue named in Unicode keeps its name in the check id a note can resolve."""
    text = shared_stack.write_target().read_text()
    target = tmp_path / "unicode.toml"
    target.write_text(
        text.replace('"webhook-processing", ', '"webhook-processing", "ünïcødé", ')
    )

    _, record = shared_stack.check(target, tmp_path / "reports")
    checks = {result["check"] for result in record["results"]}

    assert "queues.failed[ünïcødé]" in checks

"""Slack alerts for failed checks: one per condition per window, then "resolved".

A condition is a check id. When a critical or warning check fails, one alert
goes to a Slack incoming webhook. While the check keeps failing at later
checkpoints nothing more is sent, unless it fails at a worse severity
(`backend.memory` from warning to critical), which alerts again. When it
passes again, one resolved message follows, and a later relapse alerts
again. Info checks and skipped checks never alert.

The window's `alerts.json` stores every delivery attempt, so the state
survives between checkpoint processes. Only delivered messages count: an
alert that could not be delivered is sent again at the next checkpoint while
its check still fails. A failed delivery is logged and recorded, never
raised, so the checkpoint still succeeds.

The webhook URL is a secret, because anyone who has it can post to the
channel. It never appears in a log line, in `alerts.json` or in an error
message. Only its scheme and host are shown.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from soakcheck.observation import with_unit
from soakcheck.record import write_json_atomic
from soakcheck.redact import mask_secrets
from soakcheck.window import now_utc

log = logging.getLogger(__name__)

ALERTS_FILE = "alerts.json"
DEFAULT_WEBHOOK_ENV = "SLACK_WEBHOOK_URL"
ALERT_SEVERITIES = ("critical", "warning")

# Slack's 429 response sets Retry-After, usually to a few seconds. A longer
# wait would hold up the checkpoint for little gain, because an undelivered
# alert is sent again at the next checkpoint anyway.
RETRY_AFTER_CAP_S = 30.0

# Slack rejects a section block whose text exceeds 3000 characters, so each
# field coming from a check is cut well below that.
MAX_FIELD_CHARS = 500
CUT_MARKER = " …[cut]"

_SEVERITY_RANK = {"critical": 0, "warning": 1}
_ICONS = {"critical": ":red_circle:", "warning": ":warning:"}
_RESOLVED_ICON = ":large_green_circle:"


class WebhookURLError(ValueError):
    """The webhook URL is not an http:// or https:// URL with a host."""


class _RetryableStatus(Exception):
    """A 429 or 5xx response, worth another attempt after a wait."""

    def __init__(self, status_code: int, body: str, retry_after_s: float | None):
        super().__init__(
            f"HTTP {status_code}: {body}" if body else f"HTTP {status_code}"
        )
        self.retry_after_s = retry_after_s


class _RejectedStatus(Exception):
    """A response that another attempt would not change, such as 404 no_service."""

    def __init__(self, status_code: int, body: str):
        super().__init__(
            f"HTTP {status_code}: {body}" if body else f"HTTP {status_code}"
        )


@dataclass(frozen=True)
class Notice:
    """One message due at this checkpoint: an alert or a resolved message."""

    kind: str
    result: dict[str, Any]
    severity: str
    since_slot: str | None = None


def webhook_url_from_env(
    name: str = DEFAULT_WEBHOOK_ENV, environ: Mapping[str, str] | None = None
) -> str | None:
    """Read and validate the webhook URL from an environment variable.

    Returns None when the variable is unset or empty, which turns alerts off.
    Raises WebhookURLError, naming the variable, when the value is invalid.
    """
    source = os.environ if environ is None else environ
    value = (source.get(name) or "").strip()
    if not value:
        return None

    return validate_webhook_url(value, source=f"environment variable {name}")


def validate_webhook_url(url: str, source: str = "the webhook URL") -> str:
    """Validate a webhook URL: http:// or https://, a host and a valid port.

    Returns the URL without surrounding whitespace. The error names the
    source and the scheme found, never the path or the query, because those
    contain the webhook's secret.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        found = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise WebhookURLError(
            f"{source}: expected an https:// Slack incoming-webhook URL, got a "
            f"value with {found}; copy the full URL from the Slack app's "
            f"Incoming Webhooks page"
        )
    if not parts.hostname:
        raise WebhookURLError(
            f"{source}: the {parts.scheme}:// URL has no host; copy the full URL "
            f"from the Slack app's Incoming Webhooks page"
        )
    if not _has_valid_port(parts):
        raise WebhookURLError(
            f"{source}: the {parts.scheme}:// URL has an invalid port; copy the "
            f"full URL from the Slack app's Incoming Webhooks page"
        )
    return url.strip()


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


def mask_url(url: str) -> str:
    """Return the URL's scheme and host with the rest replaced by `***`."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "***"
    return f"{parts.scheme}://{parts.hostname}/***"


def notify_checkpoint(
    window_dir: Path,
    record: dict[str, Any],
    webhook_url: str | None,
    *,
    timeout_s: float = 5.0,
    retries: int = 2,
    backoff_s: float = 1.0,
    retry_after_cap_s: float = RETRY_AFTER_CAP_S,
) -> list[dict[str, Any]]:
    """Send the alerts and resolved messages a checkpoint record calls for.

    Returns the entries appended to the window's `alerts.json`, one per
    message, delivered or not. With no webhook URL it sends and records
    nothing and returns an empty list. `retries` counts the attempts after
    the first, for timeouts, connection errors, 429 and 5xx responses.
    """
    if webhook_url is None:
        return []

    path = window_dir / ALERTS_FILE
    history = load_alerts(path)
    notices = pending_notices(history, record)
    if not notices:
        return []

    url = webhook_url.strip()
    invalid = _invalid_url_reason(url)
    entries = []
    with httpx.Client(timeout=timeout_s) as client, _hidden_from_httpx_logs(url):
        for notice in notices:
            message = build_message(notice, record, window_dir)
            if invalid is None:
                delivered, attempts, failure = _deliver(
                    client, url, message, notice, retries, backoff_s, retry_after_cap_s
                )
            else:
                delivered, attempts, failure = False, 0, invalid
            entry = _entry(notice, record, delivered, attempts, failure)
            history.append(entry)
            entries.append(entry)
            # Saved after each message, so a run killed between two messages
            # does not send the first one again.
            _save_alerts(path, history)
    return entries


def _invalid_url_reason(url: str) -> str | None:
    """Return why the URL cannot be used, or None when it is valid."""
    try:
        validate_webhook_url(url)
    except WebhookURLError as error:
        log.error("alerts not sent: %s", error)
        return str(error)
    return None


def load_alerts(path: Path) -> list[dict[str, Any]]:
    """Read a window's alert history. A missing or unreadable file reads as empty."""
    if not path.exists():
        return []
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        log.warning(
            "alert history unreadable path=%s error=%s (checks still failing "
            "alert again)",
            path,
            error,
        )
        return []
    if not isinstance(history, list):
        log.warning("alert history ignored path=%s: expected a JSON list", path)
        return []
    return [entry for entry in history if isinstance(entry, dict)]


def open_alerts(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return each check's delivered alert not yet followed by a delivered resolve."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in history:
        if entry.get("delivered") is True and "check" in entry:
            latest[entry["check"]] = entry
    return {
        check: entry for check, entry in latest.items() if entry.get("kind") == "alert"
    }


def pending_notices(
    history: list[dict[str, Any]], record: dict[str, Any]
) -> list[Notice]:
    """Decide which messages a checkpoint record calls for, criticals first."""
    alerted = open_alerts(history)
    notices = []
    for result in record.get("results") or []:
        check = result.get("check")
        if not check:
            continue
        outcome = result.get("outcome")
        severity = result.get("severity")
        if outcome == "failed" and severity in ALERT_SEVERITIES:
            opened = alerted.get(check)
            if opened is None or _escalated(opened.get("severity"), severity):
                notices.append(Notice("alert", result, severity))
        elif outcome == "passed" and check in alerted:
            opened = alerted[check]
            severity = opened.get("severity") or severity or "warning"
            notices.append(Notice("resolved", result, severity, opened.get("slot")))
    return sorted(notices, key=lambda n: _SEVERITY_RANK.get(n.severity, 2))


def _escalated(alerted_severity: object, severity: str) -> bool:
    """Return whether `severity` is worse than that of the open alert."""
    alerted_rank = _SEVERITY_RANK.get(str(alerted_severity), len(_SEVERITY_RANK))
    return _SEVERITY_RANK[severity] < alerted_rank


def build_message(
    notice: Notice, record: dict[str, Any], window_dir: Path
) -> dict[str, Any]:
    """Build the Slack incoming-webhook payload: fallback text and one section."""
    result = notice.result
    check = _field(result.get("check")).replace("`", "'")
    checkpoint = record.get("checkpoint") or {}
    slot = _slot_of(record)
    observed, threshold = _observed_and_threshold(result)

    if notice.kind == "alert":
        icon = _ICONS.get(notice.severity, ":warning:")
        heading = f"{icon} *{notice.severity.upper()}* `{check}` failed"
        summary = f"{notice.severity.upper()}: {check} failed at {slot}"
    else:
        heading = f"{_RESOLVED_ICON} *RESOLVED* `{check}` passes again"
        summary = f"RESOLVED: {check} passes again at {slot}"

    lines = [heading, f"*Observed:* {observed}, threshold {threshold}"]
    if result.get("message"):
        lines.append(f"*Message:* {_field(result['message'])}")
    if notice.since_slot:
        lines.append(f"*Failing since:* {_field(notice.since_slot)}")
    lines.append(f"*Slot:* {slot} (checkpoint {_field(checkpoint.get('id'))})")
    lines.append(f"*Target:* {_field(record.get('target'))}")
    lines.append(f"*Window:* {_field(_window_id(record, window_dir))}")
    lines.append(f"*Report:* {_field(_report_path(record, window_dir))}")

    return {
        "text": f"{summary}: observed {observed}, threshold {threshold}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
        ],
    }


def _observed_and_threshold(result: dict[str, Any]) -> tuple[str, str]:
    unit = str(result.get("unit") or "")
    value = result.get("value")
    observed = "not measured" if value is None else _field(with_unit(value, unit))
    limit = result.get("threshold")
    if limit is None:
        return observed, "none"

    operator = str(result.get("operator") or "")
    threshold = f"{operator} {with_unit(limit, unit)}".strip()
    return observed, _field(threshold)


def _field(value: object) -> str:
    """Mask secrets, cut and escape a value for Slack's mrkdwn."""
    text = mask_secrets("" if value is None else str(value))
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + CUT_MARKER
    # Slack reads <...> as a link or mention, so these three are escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slot_of(record: dict[str, Any]) -> str:
    checkpoint = record.get("checkpoint") or {}
    return _field(checkpoint.get("slot_label") or checkpoint.get("id") or "unknown")


def _window_id(record: dict[str, Any], window_dir: Path) -> str:
    window = record.get("window")
    if isinstance(window, dict) and window.get("id"):
        return str(window["id"])
    return window_dir.name


def _report_path(record: dict[str, Any], window_dir: Path) -> str:
    checkpoint_id = (record.get("checkpoint") or {}).get("id")
    if not checkpoint_id:
        return "not written"
    # Relative to the folder above reports/, so no home directory is shown.
    return f"{window_dir.parent.name}/{window_dir.name}/{checkpoint_id}.html"


def _deliver(
    client: httpx.Client,
    url: str,
    message: dict[str, Any],
    notice: Notice,
    retries: int,
    backoff_s: float,
    retry_after_cap_s: float,
) -> tuple[bool, int, str | None]:
    """POST one message with bounded retries and return (delivered, attempts, error)."""
    check = notice.result.get("check")
    retrying = Retrying(
        stop=stop_after_attempt(max(retries, 0) + 1),
        wait=_wait_strategy(backoff_s, retry_after_cap_s),
        retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
        before_sleep=_log_retry(url, check, notice.kind),
        reraise=True,
    )

    try:
        for attempt in retrying:
            with attempt:
                _post(client, url, message)
    except (
        httpx.HTTPError,
        httpx.InvalidURL,
        _RetryableStatus,
        _RejectedStatus,
    ) as error:
        attempts = retrying.statistics.get("attempt_number", 1)
        reason = _describe_error(error, url)
        log.error(
            "alert delivery failed check=%s kind=%s attempts=%d error=%s "
            "(the next checkpoint tries again)",
            check,
            notice.kind,
            attempts,
            reason,
        )
        return False, attempts, reason

    attempts = retrying.statistics.get("attempt_number", 1)
    log.info(
        "alert sent check=%s kind=%s severity=%s attempts=%d",
        check,
        notice.kind,
        notice.severity,
        attempts,
    )
    return True, attempts, None


def _post(client: httpx.Client, url: str, message: dict[str, Any]) -> None:
    response = client.post(url, json=message)
    if response.is_success:
        return

    body = response.text.strip()[:200]
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        raise _RetryableStatus(response.status_code, body, retry_after)
    raise _RejectedStatus(response.status_code, body)


def _parse_retry_after(value: str | None) -> float | None:
    """Read Retry-After as seconds or an HTTP date, or None when absent or invalid."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max((moment - now_utc()).total_seconds(), 0.0)


def _wait_strategy(backoff_s: float, cap_s: float) -> Callable[[RetryCallState], float]:
    """Build the wait before a retry: Retry-After if sent, else exponential backoff."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _RetryableStatus) and error.retry_after_s is not None:
            return min(error.retry_after_s, cap_s)
        return min(backoff_s * 2 ** (state.attempt_number - 1), cap_s)

    return wait


def _log_retry(url: str, check: object, kind: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "alert delivery retry check=%s kind=%s attempt=%d wait_s=%.1f error=%s",
            check,
            kind,
            state.attempt_number,
            wait_s,
            _describe_error(error, url),
        )

    return before_sleep


def _describe_error(error: BaseException | None, url: str) -> str:
    """Describe a delivery error with the webhook URL and secrets masked."""
    if error is None:
        return "unknown error"
    if isinstance(error, _RetryableStatus | _RejectedStatus):
        text = str(error)
    else:
        text = (
            f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        )
    return mask_secrets(_without_url(text, url))


def _without_url(text: str, url: str) -> str:
    if not url:
        return text
    masked = mask_url(url)
    forms = {url}
    try:
        # httpx logs the URL in its normalised form, which can differ.
        forms.add(str(httpx.URL(url)))
    except httpx.InvalidURL:
        pass
    for form in forms:
        text = text.replace(form, masked)
    path = urlsplit(url).path
    # The path alone is the secret part of a Slack webhook URL.
    if len(path) > 1:
        text = text.replace(path, "/***")
    return text


@contextmanager
def _hidden_from_httpx_logs(url: str) -> Iterator[None]:
    """Mask the webhook URL in httpx's per-request log line while sending."""
    logger = logging.getLogger("httpx")
    mask = _MaskURLFilter(url)
    logger.addFilter(mask)
    try:
        yield
    finally:
        logger.removeFilter(mask)


class _MaskURLFilter(logging.Filter):
    """Rewrites httpx log records that contain the webhook URL."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.url:
            return True
        message = record.getMessage()
        masked = _without_url(message, self.url)
        if masked != message:
            record.msg = masked
            record.args = ()
        return True


def _entry(
    notice: Notice,
    record: dict[str, Any],
    delivered: bool,
    attempts: int,
    error: str | None,
) -> dict[str, Any]:
    result = notice.result
    checkpoint = record.get("checkpoint") or {}
    return {
        "check": result.get("check"),
        "kind": notice.kind,
        "severity": notice.severity,
        "slot": checkpoint.get("slot_label") or checkpoint.get("id"),
        "checkpoint": checkpoint.get("id"),
        "value": _masked_value(result.get("value")),
        "threshold": result.get("threshold"),
        "unit": result.get("unit"),
        "sent_at": now_utc().isoformat(timespec="seconds"),
        "delivered": delivered,
        "attempts": attempts,
        "error": error,
    }


def _masked_value(value: object) -> object:
    return mask_secrets(value) if isinstance(value, str) else value


def _save_alerts(path: Path, history: list[dict[str, Any]]) -> None:
    try:
        write_json_atomic(path, history)
    except OSError as error:
        # The checkpoint must still succeed, and the next one reads the old file.
        log.error("alert history not written path=%s error=%s", path, error)

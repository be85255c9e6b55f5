"""One HTTP request to the backend, with the failure named in a ProbeError."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from soakcheck import __version__
from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

USER_AGENT = f"soakcheck/{__version__} (P0 test)"
BODY_EXCERPT_CHARS = 300
# A response body is kept up to this size; the checks read only short JSON bodies.
BODY_KEEP_CHARS = 65536


def cut(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """Shorten `text` to `limit` characters, with a visible marker when cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit] + " [… cut]"


@dataclass
class HttpResponse:
    """The parts of an HTTP response that the P0 checks judge."""

    method: str
    url: str
    status: int
    body: str
    elapsed_ms: float
    server_date: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """Return the body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def summary(self) -> str:
        """Describe the response in one line: `POST url -> HTTP 400 {...}`."""
        body = cut(self.body) or "(empty body)"
        return f"{self.method} {self.url} -> HTTP {self.status} {body}"


def request(
    method: str,
    url: str,
    *,
    timeout_s: float,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """Send one request and return the response; never retried, since it may charge.

    Raises ProbeError naming the URL when no response arrives.
    """
    all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    all_headers.update(headers or {})
    started = time.perf_counter()
    try:
        response = httpx.request(
            method,
            url,
            content=content,
            headers=all_headers,
            timeout=timeout_s,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise ProbeError(
            f"{method} {url} timed out after {timeout_s:g} s; is the backend hung "
            f"or overloaded?"
        ) from None
    except httpx.ConnectError as error:
        raise ProbeError(f"{method} {url} failed: {_connect_reason(error)}") from None
    except httpx.HTTPError as error:
        raise ProbeError(f"{method} {url} failed: {error}") from None

    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug("p0 request %s %s status=%d", method, url, response.status_code)
    return HttpResponse(
        method=method,
        url=url,
        status=response.status_code,
        body=response.text[:BODY_KEEP_CHARS],
        elapsed_ms=elapsed_ms,
        server_date=_server_date(response.headers.get("date")),
    )


def _connect_reason(error: httpx.ConnectError) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused (is the backend running on that port?)"
    return text or type(error).__name__


def _server_date(header: str | None) -> float | None:
    """Return the Date header as a Unix time, or None when absent or invalid."""
    if not header:
        return None
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return None

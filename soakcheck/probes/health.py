"""Health endpoint probe: fetch `/health` and read it in the framework's shape.

Supported shapes: the seed backend's `services` boolean map, NestJS Terminus
(`info`/`error`/`details`), Spring Boot Actuator (`components`, nested, or
1.x top-level siblings) and the IETF `application/health+json` draft
(`checks` holding arrays of per-node objects).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

HEALTHY = {"ok", "pass", "up", "ready", "healthy", "green"}
WARNING = {"warn", "warning"}
UNHEALTHY = {"error", "fail", "down", "shutting_down", "degraded", "unhealthy", "red"}

EXCERPT_CHARS = 300
# A health response is a few hundred bytes, so a longer body is cut, not parsed.
MAX_BODY_BYTES = 1024 * 1024


@dataclass
class HealthFacts:
    """Facts from one health response and the latency samples taken with it."""

    url: str
    http_status: int
    content_type: str
    body_excerpt: str
    latencies_ms: list[float] = field(default_factory=list)
    invalid_reason: str | None = None
    status: str | None = None
    overall: str = "invalid"
    services: dict[str, bool] = field(default_factory=dict)
    service_messages: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    uptime_s: float | None = None
    memory_bytes: float | None = None
    http_status_disagrees_with_body: bool = False
    body: Any = None

    @property
    def latency_p95_ms(self) -> float | None:
        return percentile(self.latencies_ms, 95)


def percentile(samples: list[float], rank: float) -> float | None:
    """Return the nearest-rank percentile of the samples, or None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    index = max(0, math.ceil(rank / 100 * len(ordered)) - 1)
    return ordered[index]


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Cut a long body with a visible marker so reports stay readable."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]} …[cut, {len(flat)} chars in all]"


def lookup(body: Any, path: str | None) -> Any:
    """Follow a dotted JSON path such as `data.status`; None when absent."""
    if not path:
        return None
    node = body
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def fetch_health(
    url: str,
    *,
    timeout_s: float,
    samples: int = 1,
    preset: str = "seed",
    status_path: str | None = None,
    services_path: str | None = None,
    uptime_path: str | None = None,
    memory_path: str | None = None,
) -> HealthFacts:
    """Request the health URL `samples` times and interpret the first response.

    Raises ProbeError when no response arrives at all (refused, timed out).
    """
    latencies: list[float] = []
    first: tuple[httpx.Response, bytes] | None = None
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(samples):
            started = time.perf_counter()
            response, body = _get_bounded(client, url, timeout_s)
            latencies.append((time.perf_counter() - started) * 1000)
            if first is None:
                first = (response, body)

    assert first is not None
    response, body = first
    raw = body
    if 300 <= response.status_code < 400 and not body.strip():
        location = response.headers.get("location", "no Location header")
        raw = f"redirect to {location}; set backend.health_path to it".encode()
    facts = interpret(
        url,
        response.status_code,
        response.headers.get("content-type", ""),
        raw,
        preset=preset,
        status_path=status_path,
        services_path=services_path,
        uptime_path=uptime_path,
        memory_path=memory_path,
    )
    facts.latencies_ms = latencies
    return facts


def _get_bounded(
    client: httpx.Client, url: str, timeout_s: float
) -> tuple[httpx.Response, bytes]:
    """GET a URL, reading at most MAX_BODY_BYTES within `timeout_s` in all.

    httpx's timeout applies to each read, so a body trickling in a byte at a
    time would otherwise hold the checkpoint far past the timeout.
    """
    started = time.perf_counter()
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY_BYTES:
                    break
                if time.perf_counter() - started > timeout_s:
                    raise ProbeError(
                        f"backend timed out at {url}: the body was still arriving "
                        f"after {timeout_s:g} s"
                    )
            return resp, b"".join(chunks)[:MAX_BODY_BYTES]
    except httpx.TimeoutException:
        raise ProbeError(
            f"backend timed out at {url} after {timeout_s:g} s; is it hung or "
            f"overloaded?"
        ) from None
    except httpx.ConnectError as error:
        raise ProbeError(
            f"backend unreachable at {url}: {_connect_reason(error)}"
        ) from None
    except httpx.HTTPError as error:
        raise ProbeError(f"health request to {url} failed: {error}") from None


def _connect_reason(error: httpx.ConnectError) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused (is the backend running on that port?)"
    if "name or service not known" in text.lower() or "resolve" in text.lower():
        return f"host name not resolved ({text})"
    return text or error.__class__.__name__


def interpret(
    url: str,
    http_status: int,
    content_type: str,
    raw: bytes,
    *,
    preset: str = "seed",
    status_path: str | None = None,
    services_path: str | None = None,
    uptime_path: str | None = None,
    memory_path: str | None = None,
) -> HealthFacts:
    """Read a health response's bytes into facts, reporting a bad body as invalid."""
    text = raw.decode("utf-8", errors="replace")
    facts = HealthFacts(
        url=url,
        http_status=http_status,
        content_type=content_type,
        body_excerpt=excerpt(text),
    )

    body, reason = _parse_json(text, content_type)
    if reason is not None:
        facts.invalid_reason = (
            f"{reason}: HTTP {http_status}, content type "
            f"{content_type or 'missing'}, body starts {excerpt(text, 80)!r}"
        )
        return facts
    facts.body = body

    status_value = lookup(body, status_path) if status_path else _find_status(body)
    facts.status = None if status_value is None else str(status_value)
    facts.overall = _classify(facts.status, http_status)
    if status_value is None and _status_present(body, status_path):
        # A status field that is present but null does not report the service as up.
        facts.status = "null"
        facts.overall = "unhealthy"

    components = _components(body, preset, services_path)
    for name, (healthy, message) in components.items():
        if healthy is None:
            facts.warnings.append(name)
            facts.services[name] = True
        else:
            facts.services[name] = healthy
        if message:
            facts.service_messages[name] = message
    if any(value is False for value in facts.services.values()):
        facts.overall = "unhealthy"
    elif facts.warnings and facts.overall == "healthy":
        facts.overall = "healthy_with_warnings"

    facts.uptime_s = _number(lookup(body, uptime_path or "uptime"))
    if facts.uptime_s is None and preset in ("health+json", "auto"):
        facts.uptime_s = _number(lookup(body, "checks.uptime.0.observedValue"))
    facts.memory_bytes = _number(lookup(body, memory_path)) if memory_path else None

    body_ok = facts.overall in ("healthy", "healthy_with_warnings")
    facts.http_status_disagrees_with_body = body_ok != (200 <= http_status < 300)
    return facts


def _parse_json(text: str, content_type: str) -> tuple[Any, str | None]:
    stripped = text.strip()
    if not stripped:
        return None, "empty body"
    if stripped.startswith("<"):
        hint = " (a proxy error page?)" if "bad gateway" in text.lower() else ""
        return None, f"not JSON: an HTML page{hint}"
    try:
        body = json.loads(stripped)
    except json.JSONDecodeError as error:
        if stripped.startswith(("{", "[")) and _unbalanced(stripped):
            return None, "truncated JSON (the body ends mid-document)"
        return None, f"not JSON ({error.msg} at character {error.pos})"
    except (ValueError, RecursionError) as error:
        # Numbers of thousands of digits or nesting thousands deep.
        return None, f"JSON that cannot be read ({type(error).__name__})"
    if not isinstance(body, dict):
        return None, f"not a JSON object (a {type(body).__name__})"
    return body, None


def _status_present(body: dict[str, Any], status_path: str | None) -> bool:
    if status_path:
        parent, _, last = status_path.rpartition(".")
        container = lookup(body, parent) if parent else body
        return isinstance(container, dict) and last in container
    return "status" in body


def _unbalanced(text: str) -> bool:
    """Return whether more brackets open than close, as in a cut-off body."""
    opened = text.count("{") + text.count("[")
    closed = text.count("}") + text.count("]")
    return opened > closed or text.count('"') % 2 == 1


def _find_status(body: dict[str, Any]) -> Any:
    if "status" in body:
        return body["status"]
    data = body.get("data")
    if isinstance(data, dict) and "status" in data:
        return data["status"]
    return None


def _classify(status: str | None, http_status: int) -> str:
    if status is None:
        return "healthy" if 200 <= http_status < 300 else "unhealthy"
    word = status.strip().lower()
    if word in HEALTHY:
        return "healthy"
    if word in WARNING:
        return "healthy_with_warnings"
    if word in UNHEALTHY:
        return "unhealthy"
    return "unhealthy"


def _component_state(value: Any) -> tuple[bool | None, str]:
    """Return (healthy, message); healthy None means a warning.

    Anything but an explicit healthy value counts as down: a flag of 0, null
    or an empty list does not report the service as up.
    """
    if isinstance(value, bool):
        return value, ""
    if value is None:
        return False, "null instead of true"
    if isinstance(value, int | float):
        return value == 1, "" if value == 1 else f"{value!r} instead of true"
    if isinstance(value, str):
        word = value.lower()
        return (None if word in WARNING else word in HEALTHY), ""
    if isinstance(value, dict):
        message = str(value.get("message") or value.get("output") or "")
        if "status" in value:
            word = str(value["status"]).lower()
            if word in WARNING:
                return None, message
            return word in HEALTHY, message
        for key in ("healthy", "up", "ok"):
            if key in value:
                return value[key] is True, message
        return True, message
    if isinstance(value, list):
        if not value:
            return False, "an empty list instead of true"
        states = [_component_state(entry) for entry in value]
        if any(healthy is False for healthy, _ in states):
            return False, "; ".join(m for h, m in states if h is False and m)
        if any(healthy is None for healthy, _ in states):
            return None, ""
        return True, ""
    return True, ""


def _components(
    body: dict[str, Any], preset: str, services_path: str | None
) -> dict[str, tuple[bool | None, str]]:
    if services_path:
        container = lookup(body, services_path)
        return _from_map(container)
    if preset == "seed":
        return _from_map(body.get("services"))
    if preset == "terminus":
        return _from_terminus(body)
    if preset == "spring":
        return _from_spring(body)
    if preset == "health+json":
        return _from_map(body.get("checks"))

    # auto: try each framework's container in turn.
    for key in ("services", "checks"):
        if isinstance(body.get(key), dict):
            return _from_map(body[key])
    if any(isinstance(body.get(key), dict) for key in ("info", "error", "details")):
        return _from_terminus(body)
    if isinstance(body.get("components"), dict):
        return _from_spring(body)
    return _from_top_level(body)


def _from_map(container: Any) -> dict[str, tuple[bool | None, str]]:
    if not isinstance(container, dict):
        return {}
    return {name: _component_state(value) for name, value in container.items()}


def _from_terminus(body: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    # The same component may sit in `info` or `error` and again in `details`.
    found: dict[str, tuple[bool | None, str]] = {}
    for key in ("details", "info", "error"):
        for name, state in _from_map(body.get(key)).items():
            if key == "error" or name not in found or state[0] is False:
                found[name] = (False, state[1]) if key == "error" else state
    return found


def _from_spring(
    body: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[bool | None, str]]:
    found: dict[str, tuple[bool | None, str]] = {}
    components = body.get("components")
    if not isinstance(components, dict):
        return _from_top_level(body)
    for name, value in components.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict) and isinstance(value.get("components"), dict):
            found.update(_from_spring(value, f"{full}."))
        state = _component_state(value)
        if isinstance(value, dict):
            details = value.get("details")
            if isinstance(details, dict) and "error" in details and state[0] is False:
                state = (False, str(details["error"]))
        found[full] = state
    return found


def _from_top_level(body: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    # Spring Boot 1.x and small custom services put components beside `status`.
    found: dict[str, tuple[bool | None, str]] = {}
    for name, value in body.items():
        if name == "status":
            continue
        if isinstance(value, bool) or (isinstance(value, dict) and "status" in value):
            found[name] = _component_state(value)
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    number: float | None = None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and len(value) < 40:
        try:
            number = float(value)
        except ValueError:
            return None
    if number is None or not math.isfinite(number):
        return None
    return number

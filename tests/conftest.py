"""Probes for the checklist: each system is measured once per checkpoint.

Every fixture here returns a ProbeResult, so an unreachable backend or Redis
fails the checks that need it, with the reason, and the run goes on.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from soakcheck.config import Target
from soakcheck.logscan import LogScan, reconciliation_patterns, scan_log
from soakcheck.plugin import SoakSession, soak_session
from soakcheck.probes import health as health_probe
from soakcheck.probes.errors import ProbeError
from soakcheck.probes.process import ProcessMemory, read_process_memory
from soakcheck.probes.queues import (
    QueueState,
    QueueStatsError,
    parse_queue_stats,
    read_queue_state,
)
from soakcheck.probes.redis_info import RedisFacts, connect, read_redis_facts
from soakcheck.probes.result import ProbeResult, attempt

log = logging.getLogger(__name__)


def _not_configured(what: str) -> list[Any]:
    reason = f"no {what} configured in the target file"
    return [pytest.param(None, id="not-configured", marks=pytest.mark.skip(reason))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise the checklist families from the target file."""
    target = soak_session(metafunc.config).target
    if "service" in metafunc.fixturenames:
        names = target.backend.services
        params = [pytest.param(name, id=name) for name in names]
        metafunc.parametrize("service", params or _not_configured("services"))
    if "queue" in metafunc.fixturenames:
        names = target.redis.queues
        params = [pytest.param(name, id=name) for name in names]
        metafunc.parametrize("queue", params or _not_configured("queues"))
    if "log_file" in metafunc.fixturenames:
        files = target.logs.files
        params = [pytest.param(path, id=Path(path).name) for path in files]
        metafunc.parametrize("log_file", params or _not_configured("log files"))


def _state_section(soak: SoakSession, name: str) -> dict[str, Any]:
    """Return a section of the carried-forward state, replacing a damaged one."""
    section = soak.state.get(name)
    if not isinstance(section, dict):
        if section is not None:
            log.warning("ignoring damaged %s state of the previous record", name)
        section = soak.state[name] = {}
    return section


def _saved_state(saved: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = saved.get(key)
    return value if isinstance(value, dict) else None


@pytest.fixture(scope="session")
def previous(soak: SoakSession) -> dict[str, Any] | None:
    """The window's previous checkpoint record, or None at the first one."""
    return soak.previous


@pytest.fixture(scope="session")
def health(soak: SoakSession, target: Target) -> ProbeResult[health_probe.HealthFacts]:
    """The health response, with latency samples, fetched once per checkpoint."""
    backend = target.backend
    result = attempt(
        "health",
        lambda: health_probe.fetch_health(
            backend.health_url,
            timeout_s=backend.timeout,
            samples=backend.latency_samples,
            preset=backend.preset,
            status_path=backend.status_path,
            services_path=backend.services_path,
            uptime_path=backend.uptime_path,
            memory_path=backend.process.memory_json_path,
        ),
    )
    if result.value is not None:
        facts = result.value
        soak.measurements["health_latency_p95_ms"] = facts.latency_p95_ms
        soak.measurements["health_http_status"] = facts.http_status
        soak.measurements["uptime_s"] = facts.uptime_s
        if facts.uptime_s is not None:
            soak.state["uptime"] = {
                "uptime_s": facts.uptime_s,
                "at": soak.started_at.isoformat(),
            }
    return result


@pytest.fixture(scope="session")
def redis_client(target: Target) -> ProbeResult[Any]:
    """A Redis connection, or the reason none could be made."""
    redis = target.redis
    password = target.secret(redis.password_env)
    return attempt("redis", lambda: connect(redis.url, password, redis.timeout))


@pytest.fixture(scope="session")
def redis_facts(
    soak: SoakSession, target: Target, redis_client: ProbeResult[Any]
) -> ProbeResult[RedisFacts]:
    """Redis INFO, read once per checkpoint."""
    if redis_client.error is not None:
        return ProbeResult(error=redis_client.error)
    redis = target.redis
    result = attempt(
        "redis",
        lambda: read_redis_facts(redis_client.value, password_env=redis.password_env),
    )
    if result.value is not None and not result.value.ping_ok:
        return ProbeResult(error=result.value.ping_error)
    if result.value is not None and result.value.info_error:
        return ProbeResult(error=result.value.info_error)
    if result.value is not None:
        facts = result.value
        soak.measurements["redis_used_memory_bytes"] = facts.used_memory
        soak.state["redis"] = {
            "evicted_keys": facts.evicted_keys,
            "rejected_connections": facts.rejected_connections,
        }
    return result


@pytest.fixture(scope="session")
def backend_memory(
    soak: SoakSession,
    target: Target,
    health: ProbeResult[health_probe.HealthFacts],
) -> ProbeResult[ProcessMemory | None]:
    """Resident memory of the backend and its children."""
    process = target.backend.process

    def measure() -> ProcessMemory | None:
        memory = read_process_memory(
            port=process.port,
            pid_file=process.pid_file,
            cmdline_pattern=process.cmdline_pattern,
            metrics_url=process.metrics_url,
            timeout_s=target.backend.timeout,
        )
        if memory is None and process.memory_json_path:
            facts = health.require() if health.error is None else None
            if facts is None or facts.memory_bytes is None:
                raise ProbeError(
                    f"health answer has no memory value at {process.memory_json_path!r}"
                )
            memory = ProcessMemory(int(facts.memory_bytes), "health JSON")
        return memory

    result = attempt("backend memory", measure)
    if result.value is not None:
        soak.measurements["backend_rss_bytes"] = result.value.rss_bytes
    return result


@pytest.fixture(scope="session")
def log_scans(soak: SoakSession, target: Target) -> dict[str, ProbeResult[LogScan]]:
    """Each log file read from where the previous checkpoint stopped."""
    logs = target.logs
    saved = _state_section(soak, "logs")
    fallback = soak.window.interval_s if soak.window else None
    scans: dict[str, ProbeResult[LogScan]] = {}
    for path in logs.files:
        key = str(path)

        def scan(path: Path = path, key: str = key) -> LogScan:
            return scan_log(
                path,
                _saved_state(saved, key),
                now=soak.started_at,
                worker_pattern=logs.worker_pattern,
                custom_pattern=logs.custom_pattern,
                fallback_interval_s=fallback,
                patterns=reconciliation_patterns(
                    logs.reconciliation_start, logs.reconciliation_done
                ),
                # The first checkpoint of a window starts at the end of the
                # log: what was logged before the soak began is not its business.
                from_start=False,
            )

        result = attempt("logs", scan)
        scans[key] = result
        if result.value is not None and not result.value.missing:
            saved[key] = result.value.state
    _record_log_measurements(soak, scans)
    return scans


def _record_log_measurements(
    soak: SoakSession, scans: dict[str, ProbeResult[LogScan]]
) -> None:
    errors = fatals = 0
    per_hour: dict[str, int] = {}
    for result in scans.values():
        if result.value is None:
            continue
        errors += result.value.error_records
        fatals += result.value.fatal_records
        for hour, count in result.value.errors_per_hour.items():
            per_hour[hour] = per_hour.get(hour, 0) + count
    soak.measurements["log_error_records"] = errors
    soak.measurements["log_fatal_records"] = fatals
    soak.measurements["log_errors_per_hour"] = per_hour


@pytest.fixture(scope="session")
def queue_states(
    soak: SoakSession,
    target: Target,
    redis_client: ProbeResult[Any],
    redis_facts: ProbeResult[RedisFacts],
) -> dict[str, ProbeResult[QueueState]]:
    """Each configured BullMQ queue, read from Redis as BullMQ lays it out."""
    redis = target.redis
    saved = _state_section(soak, "queues")
    if soak.window is not None:
        window_start = soak.window.start
    else:
        window_start = soak.started_at - timedelta(seconds=target.window.length)
    window_start_ms = int(window_start.timestamp() * 1000)

    states: dict[str, ProbeResult[QueueState]] = {}
    # When PING already failed, every queue read would wait out its own timeout.
    unreachable = redis_client.error or redis_facts.error
    for queue in redis.queues:
        if unreachable is not None:
            states[queue] = ProbeResult(error=unreachable)
            continue

        def read(queue: str = queue) -> QueueState:
            return read_queue_state(
                redis_client.value,
                redis.prefix,
                queue,
                window_start_ms=window_start_ms,
                previous=_saved_state(saved, queue),
                long_running_ms=int(redis.stalled_after * 1000),
                password_env=redis.password_env,
            )

        result = attempt("queues", read)
        states[queue] = result
        if result.value is not None:
            saved[queue] = result.value.state
            soak.measurements.setdefault("queue_counts", {})[queue] = (
                result.value.counts
            )
    return states


@pytest.fixture(scope="session")
def queue_stats(target: Target) -> ProbeResult[dict[str, dict[str, int]]] | None:
    """The backend's own queue counts, when the target configures the endpoint."""
    if target.queue_stats is None:
        return None
    settings = target.queue_stats
    url = target.backend.base_url + settings.path
    token = target.secret(settings.token_env)

    def fetch() -> dict[str, dict[str, int]]:
        if token is None:
            raise ProbeError(
                f"queue-stats endpoint needs a bearer token; set {settings.token_env}"
            )
        try:
            response = httpx.get(
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=target.backend.timeout,
            )
        except httpx.HTTPError as error:
            raise ProbeError(f"queue-stats request to {url} failed: {error}") from None
        if response.status_code != 200:
            raise ProbeError(
                f"queue-stats endpoint {url} answered HTTP {response.status_code}; "
                f"check {settings.token_env}"
            )
        try:
            return parse_queue_stats(response.content)
        except QueueStatsError as error:
            raise ProbeError(str(error)) from None

    return attempt("queue stats", fetch)

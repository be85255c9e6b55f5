"""Incident snapshot: what an on-call engineer looks at first, saved at the time.

When a critical check fails, the checkpoint saves the log lines around the
errors, Redis PING and INFO, and the queue counts beside its report. By the
time someone reads the report hours later, the live system may show nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from soakcheck.config import Target
from soakcheck.logscan import tail_lines
from soakcheck.probes.redis_info import connect
from soakcheck.record import write_bytes_atomic
from soakcheck.redact import mask_secrets, mask_values

log = logging.getLogger(__name__)

TAIL_LINES = 200


def critical_failures(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        result
        for result in record.get("results", [])
        if result["outcome"] == "failed" and result.get("severity") == "critical"
    ]


def write_snapshot(target: Target, record: dict[str, Any], path: Path) -> Path | None:
    """Write the snapshot as plain text when a critical check failed."""
    failures = critical_failures(record)
    if not failures:
        return None

    sections = [_header(record, failures)]
    sections += [_log_section(Path(log_file)) for log_file in target.logs.files]
    sections.append(_redis_section(target))
    sections.append(_queue_section(record))
    text = mask_secrets("\n\n".join(sections))
    text = mask_values(text, target.known_secrets()) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    log.info("incident snapshot written path=%s criticals=%d", path, len(failures))
    return path


def _header(record: dict[str, Any], failures: list[dict[str, Any]]) -> str:
    checkpoint = record.get("checkpoint", {})
    lines = [
        f"Incident snapshot of checkpoint {checkpoint.get('id')} "
        f"({checkpoint.get('slot_label')}), target {record.get('target')}",
        f"taken {checkpoint.get('finished_at')}",
        "",
        "Critical failures:",
    ]
    lines += [f"  {r['check']}: {r.get('message', '')}" for r in failures]
    return "\n".join(lines)


def _log_section(path: Path) -> str:
    lines = tail_lines(path, TAIL_LINES, around_errors=True)
    title = f"== Log {path}: {len(lines)} lines around the last errors"
    if not lines:
        return f"{title}\n(no lines: the file is missing, empty or unreadable)"
    return "\n".join([title, *lines])


def _redis_section(target: Target) -> str:
    title = f"== Redis {target.redis.url}"
    password = target.secret(target.redis.password_env)
    try:
        client = connect(target.redis.url, password, min(target.redis.timeout, 3.0))
        started = time.perf_counter()
        client.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info = client.info()
    except Exception as error:  # the snapshot records the failure, it must not raise
        log.info("incident snapshot could not read Redis: %s", error)
        return f"{title}\nPING failed: {type(error).__name__}: {error}"
    text = "\n".join(f"{key}:{value}" for key, value in info.items())
    return f"{title}\nPING ok in {ping_ms:.1f} ms\n\nINFO:\n{text}"


def _queue_section(record: dict[str, Any]) -> str:
    counts = record.get("measurements", {}).get("queue_counts") or {}
    if not counts:
        return "== Queue counts\n(not measured at this checkpoint)"
    lines = ["== Queue counts"]
    for queue, values in sorted(counts.items()):
        pairs = ", ".join(f"{name} {value}" for name, value in values.items())
        lines.append(f"  {queue}: {pairs}")
    return "\n".join(lines)

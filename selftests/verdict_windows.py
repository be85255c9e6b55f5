"""Crafted windows for verdict self-tests: records written as a checkpoint would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from soakcheck.checklist import spec_for
from soakcheck.observation import MB
from soakcheck.record import SCHEMA, write_json_atomic
from soakcheck.window import Window, new_window

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
HEALTHY_CHECKS = [
    "health.status",
    "health.service[webhookQueue]",
    "redis.reachable",
    "redis.memory",
    "backend.memory",
    "logs.critical[app.log]",
    "queues.failed[webhook-processing]",
]


def result(check: str, outcome: str = "passed", **fields: Any) -> dict[str, Any]:
    spec = spec_for(check)
    return {
        "check": check,
        "outcome": outcome,
        "severity": fields.pop("severity", spec.severity),
        "criterion": fields.pop("criterion", spec.criterion),
        "area": spec.area,
        "value": fields.pop("value", 1),
        "threshold": fields.pop("threshold", 10),
        "unit": fields.pop("unit", ""),
        "operator": fields.pop("operator", "<"),
        "message": fields.pop("message", f"{check} message"),
        **fields,
    }


def make_window(tmp_path: Path, hours: int = 24, policy: dict | None = None) -> Window:
    return new_window(tmp_path, "api", hours * 3600, 7200, start=START, policy=policy)


def add_record(
    window: Window,
    slot_index: int,
    results: list[dict[str, Any]] | None = None,
    kind: str = "scheduled",
    measurements: dict[str, Any] | None = None,
    *,
    late_s: float = 5,
    rerun: int = 1,
) -> dict[str, Any]:
    slot = window.slot(slot_index)
    finished = slot.due + timedelta(seconds=late_s)
    checkpoint_id = slot.id if kind == "scheduled" else f"p0-{slot.id}"
    if rerun > 1:
        checkpoint_id = f"{checkpoint_id}-{rerun}"
    record = {
        "schema": SCHEMA,
        "target": window.target,
        "window": window.to_dict(),
        "checkpoint": {
            "id": checkpoint_id,
            "kind": kind,
            "slot_index": slot.index,
            "slot_id": slot.id,
            "slot_label": slot.label,
            "started_at": (finished - timedelta(seconds=1)).isoformat(),
            "finished_at": finished.isoformat(),
        },
        "results": results if results is not None else healthy_results(),
        "measurements": measurements or {},
        "state": {},
    }
    write_json_atomic(window.directory / f"{checkpoint_id}.json", record)
    return record


def healthy_results() -> list[dict[str, Any]]:
    return [result(check) for check in HEALTHY_CHECKS]


def fill(window: Window, skip: set[int] | None = None) -> None:
    for slot in window.slots():
        if slot.index not in (skip or set()):
            add_record(window, slot.index)


def after(window: Window) -> datetime:
    return window.end + timedelta(hours=2)


def memory_results(
    backend_mb: float | None, cap_mb: float = 500.0
) -> list[dict[str, Any]]:
    """Healthy results with a measured backend memory under or over the cap."""
    rows = healthy_results()
    if backend_mb is None:
        rows[0] = result("health.status", "failed", message="backend unreachable")
        rows[4] = result(
            "backend.memory",
            "failed",
            value=None,
            threshold=cap_mb,
            unit="MB",
            message="backend unreachable",
        )
        return rows
    outcome = "passed" if backend_mb < cap_mb else "failed"
    rows[4] = result(
        "backend.memory", outcome, value=backend_mb, threshold=cap_mb, unit="MB"
    )
    return rows


def add_memory_series(
    window: Window,
    backend_mb: list[float | None],
    *,
    redis_mb: float = 2.0,
    cap_mb: float = 500.0,
) -> None:
    """Record one checkpoint per value, from slot 0, with memory measurements."""
    for index, value in enumerate(backend_mb):
        measurements: dict[str, Any] = {
            "redis_used_memory_bytes": int(redis_mb * MB),
            "health_latency_p95_ms": 12.0,
            "log_error_records": 0,
            "log_fatal_records": 0,
        }
        if value is not None:
            measurements["backend_rss_bytes"] = int(value * MB)
        add_record(
            window, index, memory_results(value, cap_mb), measurements=measurements
        )


def write_alerts(window: Window, entries: list[dict[str, Any]]) -> None:
    write_json_atomic(window.directory / "alerts.json", entries)

"""The checklist as data: which part of the verdict each check feeds.

Check ids are stable because the verdict and the timeline key on them. A
parametrised family such as `health.service` gets one id per parameter:
`health.service[webhookQueue]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Criterion = Literal["primary", "secondary", "manual", "info"]
Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class CheckSpec:
    """One checklist row: what the check is and what its failure means."""

    family: str
    title: str
    criterion: Criterion
    area: str
    severity: Severity


CHECKS: dict[str, CheckSpec] = {
    spec.family: spec
    for spec in (
        CheckSpec(
            "health.status",
            "health endpoint status ok",
            "primary",
            "uptime",
            "critical",
        ),
        CheckSpec(
            "health.service",
            "health service flag true",
            "secondary",
            "services",
            "critical",
        ),
        CheckSpec(
            "health.latency",
            "health response time p95",
            "secondary",
            "performance",
            "warning",
        ),
        CheckSpec(
            "uptime.delta",
            "uptime grew with the clock",
            "secondary",
            "stability",
            "warning",
        ),
        CheckSpec(
            "uptime.no_restart",
            "no backend restart in the window",
            "primary",
            "uptime",
            "critical",
        ),
        CheckSpec(
            "redis.reachable", "Redis answers PING", "primary", "redis", "critical"
        ),
        CheckSpec("redis.memory", "Redis used_memory", "primary", "memory", "warning"),
        CheckSpec(
            "redis.eviction_policy",
            "Redis maxmemory-policy",
            "secondary",
            "redis",
            "warning",
        ),
        CheckSpec(
            "redis.evictions", "no keys evicted", "secondary", "redis", "warning"
        ),
        CheckSpec(
            "redis.persistence",
            "last RDB/AOF write ok",
            "secondary",
            "redis",
            "warning",
        ),
        CheckSpec(
            "redis.rejected_connections",
            "no rejected connections",
            "secondary",
            "redis",
            "warning",
        ),
        CheckSpec(
            "backend.memory", "backend resident memory", "primary", "memory", "warning"
        ),
        CheckSpec(
            "logs.errors",
            "no ERROR lines since the last checkpoint",
            "secondary",
            "logs",
            "warning",
        ),
        CheckSpec(
            "logs.critical",
            "no CRITICAL/FATAL lines in the window",
            "primary",
            "errors",
            "critical",
        ),
        CheckSpec(
            "logs.error_rate", "ERROR lines per hour", "secondary", "logs", "warning"
        ),
        CheckSpec(
            "logs.worker_alive",
            "recording worker shows activity",
            "info",
            "workers",
            "info",
        ),
        CheckSpec(
            "queues.failed",
            "no failed job in the window",
            "primary",
            "queue",
            "critical",
        ),
        CheckSpec(
            "queues.stalled", "no stalled or stuck job", "primary", "queue", "critical"
        ),
        CheckSpec("queues.paused", "queue not paused", "secondary", "queue", "warning"),
        CheckSpec(
            "queues.stats_match",
            "queue-stats endpoint matches Redis",
            "secondary",
            "queue",
            "warning",
        ),
        CheckSpec(
            "jobs.reconciliation",
            "nightly reconciliation ran cleanly",
            "secondary",
            "jobs",
            "warning",
        ),
        CheckSpec(
            "p0.stripe_webhook",
            "signed Stripe event processed once",
            "manual",
            "p0",
            "critical",
        ),
        CheckSpec(
            "p0.debt_limit",
            "request over the debt limit rejected",
            "manual",
            "p0",
            "critical",
        ),
        CheckSpec(
            "p0.reconciliation",
            "manual reconciliation finishes",
            "manual",
            "p0",
            "critical",
        ),
    )
}

P0_CHECKS = ("p0.stripe_webhook", "p0.debt_limit", "p0.reconciliation")


def family_of(check_id: str) -> str:
    """Return the family of a check id: `queues.failed[mail]` -> `queues.failed`."""
    return check_id.split("[", 1)[0]


def spec_for(check_id: str) -> CheckSpec:
    """Return the checklist row of a check id, raising KeyError for unknown ids."""
    return CHECKS[family_of(check_id)]

"""The embedded default: a compressed soak window against the bundled backend.

It starts a real Redis and the reference billing backend on free loopback
ports and runs a checkpoint every few seconds, each in its own pytest
process. It injects the scenario's fault after the first checkpoint, runs
the P0 tests after the last one, prints the verdict and stops only what it
started.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soakcheck.checkpoint import plan_checkpoint, run_checkpoint
from soakcheck.config import load_target
from soakcheck.monitor import Monitor, install_signal_handlers
from soakcheck.services import RedisServer, ReferenceBackend
from soakcheck.window import Slot, new_window, now_utc

log = logging.getLogger(__name__)

QUIET_PYTEST = ["--no-header", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Scenario:
    """A fault to inject and the decision it should lead to."""

    description: str
    fault: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    expected: str = "APPROVED"


SCENARIOS: dict[str, Scenario] = {
    "healthy": Scenario("no fault: every check should pass"),
    "leak": Scenario(
        "the backend leaks memory until it crosses the critical limit",
        "memory_leak",
        {"mb_per_second": 60, "max_mb": 900},
        "REJECTED",
    ),
    "crash": Scenario("the backend process crashes", "crash", {}, "REJECTED"),
    "failed-jobs": Scenario(
        "webhook jobs fail in the queue",
        "failed_job",
        {"queue": "webhook-processing", "count": 2},
        "REJECTED",
    ),
    "error-logs": Scenario(
        "the backend logs ERROR lines", "error_logs", {"count": 3}, "CONDITIONAL"
    ),
    "fatal-log": Scenario("the backend logs a FATAL line", "fatal_log", {}, "REJECTED"),
    "stalled-job": Scenario(
        "a webhook job is active without its lock",
        "stalled_job",
        {"queue": "webhook-processing"},
        "REJECTED",
    ),
    "slow-health": Scenario(
        "the health endpoint answers slowly",
        "slow_health",
        {"delay_ms": 250},
        "CONDITIONAL",
    ),
    "service-down": Scenario(
        "the webhook queue service flag turns false",
        "service_down",
        {"service": "webhookQueue"},
        "REJECTED",
    ),
}

# Thresholds sized for the reference backend (a Python process of about
# 100 MB), so a leak of a few hundred MB crosses them within seconds.
DEMO_TARGET = """\
# Written by `make demo` for the bundled reference backend.
name = "demo"

[backend]
base_url = "{base_url}"
timeout = "3s"
services = ["database", "supabase", "backgroundJobs", "webhookQueue"]
primary_services = ["webhookQueue"]
latency_samples = 5
latency_p95_ms = 100

[backend.process]
port = {port}
memory_primary_mb = 400
memory_critical_mb = 600

[redis]
url = "{redis_url}"
queues = ["webhook-processing", "recording-upload", "billing-reconciliation"]

[logs]
files = ["{log_file}"]

[queue_stats]

[p0]
allowed = true

[window]
length = "{length}s"
interval = "{interval}s"

[policy]
required_p0 = ["p0.stripe_webhook", "p0.debt_limit", "p0.reconciliation"]
"""


def run_demo(
    scenario: str = "healthy",
    reports: Path = Path("reports"),
    slots: int = 4,
    interval_s: float = 4.0,
    with_p0: bool = True,
) -> int:
    """Run a compressed window and return the verdict's exit code."""
    if scenario not in SCENARIOS:
        names = ", ".join(sorted(SCENARIOS))
        print(f"unknown scenario {scenario!r}; choose one of: {names}")
        return 3
    chosen = SCENARIOS[scenario]
    workdir = reports / ".demo" / f"{scenario}-{now_utc():%Y%m%d-%H%M%S}"
    workdir.mkdir(parents=True, exist_ok=True)

    # Test-only secrets, made fresh per demo and passed through the environment.
    os.environ.setdefault("MONITORING_TOKEN", secrets.token_urlsafe(24))
    os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_" + secrets.token_hex(24))

    print(f"demo scenario {scenario}: {chosen.description}")
    with (
        RedisServer() as redis,
        ReferenceBackend(
            redis_url=redis.url,
            log_file=workdir / "backend.log",
            allow_faults=True,
            heartbeat_seconds=1,
        ) as backend,
    ):
        print(f"started Redis at {redis.url} and the backend at {backend.base_url}")
        target_path = workdir / "demo.toml"
        target_path.write_text(
            DEMO_TARGET.format(
                base_url=backend.base_url,
                port=backend.port,
                redis_url=redis.url,
                log_file=backend.log_path,
                length=slots * interval_s,
                interval=interval_s,
            ),
            encoding="utf-8",
        )
        target = load_target(target_path)
        window = new_window(
            reports,
            f"demo-{scenario}",
            target.window.length,
            target.window.interval,
            policy=target.window_policy(),
        )
        print(
            f"window {window.id}: {window.slot_count} checkpoints "
            f"{interval_s:g} s apart"
        )

        def inject(slot: Slot) -> None:
            if slot.index == 1 and chosen.fault:
                print(f"injecting fault {chosen.fault} {chosen.params or ''}")
                backend.inject(chosen.fault, **chosen.params)

        def run_p0_tests() -> None:
            # After the last scheduled checkpoint, so their requests cannot
            # delay a slot, and still inside the window's grace period.
            print("--- P0 tests (they change state, so they run once per window)")
            plan = plan_checkpoint(window, kind="p0")
            run_checkpoint(target_path, plan, QUIET_PYTEST)

        monitor = Monitor(
            window,
            target_path,
            run=lambda path, plan: run_checkpoint(path, plan, QUIET_PYTEST),
            before_slot=inject,
            before_verdict=run_p0_tests if with_p0 else None,
        )
        install_signal_handlers(monitor)
        verdict = monitor.run_window()

    if verdict is None:
        print("demo stopped before the window ended; no verdict")
        return 130
    print(
        f"\nverdict: {verdict.decision} (scenario {scenario} expects {chosen.expected})"
    )
    for reason in verdict.reasons:
        print(f"  {reason.decision:11} {reason.text}")
    print(f"reports: {window.directory}/ (verdict: {window.directory}/verdict.html)")
    return verdict.exit_code

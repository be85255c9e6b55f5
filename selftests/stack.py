"""A real Redis and reference backend with a target file, for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakcheck.services import RedisServer, ReferenceBackend

PROJECT = Path(__file__).resolve().parent.parent
MONITORING_TOKEN = "selftest-monitoring-token"
STRIPE_SECRET = "whsec_selftest_secret"

TARGET = """\
name = "selftest"

[backend]
base_url = "{base_url}"
timeout = "{timeout}"
services = ["database", "supabase", "backgroundJobs", "webhookQueue"]
latency_samples = 3
latency_p95_ms = {latency_p95_ms}

[backend.process]
port = {port}
memory_primary_mb = {memory_primary_mb}
memory_critical_mb = {memory_critical_mb}

[redis]
url = "{redis_url}"
queues = ["webhook-processing", "recording-upload", "billing-reconciliation"]

[logs]
files = ["{log_file}"]

[queue_stats]

[window]
length = "{length}"
interval = "{interval}"

[p0]
allowed = {p0_allowed}
"""


def secrets_env() -> dict[str, str]:
    return {
        "MONITORING_TOKEN": MONITORING_TOKEN,
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
    }


@dataclass
class Stack:
    """Redis, the backend and a target file pointing at them."""

    redis: RedisServer
    backend: ReferenceBackend
    workdir: Path

    def write_target(self, name: str = "target.toml", **overrides: Any) -> Path:
        values = {
            "base_url": self.backend.base_url,
            "timeout": "3s",
            "port": self.backend.port,
            "redis_url": self.redis.url,
            "log_file": self.backend.log_path,
            "latency_p95_ms": 100,
            "memory_primary_mb": 400,
            "memory_critical_mb": 600,
            "length": "1h",
            "interval": "10m",
            "p0_allowed": "false",
        }
        values.update(overrides)
        path = self.workdir / name
        path.write_text(TARGET.format(**values), encoding="utf-8")
        return path

    def check(
        self, target: Path, reports: Path, *extra: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
        """Run `python -m soakcheck check` and return the newest record."""
        completed = run_soakcheck(
            "check", "--target", str(target), "--reports", str(reports), *extra
        )
        records = sorted(
            (
                p
                for p in reports.glob("*/*.json")
                if p.name not in ("window.json", "verdict.json")
            ),
            key=lambda p: p.stat().st_mtime,
        )
        record = json.loads(records[-1].read_text()) if records else None
        return completed, record


def run_soakcheck(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **secrets_env()}
    return subprocess.run(
        [sys.executable, "-m", "soakcheck", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outcomes(record: dict[str, Any]) -> dict[str, str]:
    """Map each check id to passed, skipped or the failure's severity."""
    table = {}
    for result in record["results"]:
        if result["outcome"] == "failed":
            table[result["check"]] = result["severity"]
        else:
            table[result["check"]] = result["outcome"]
    return table


def failed(record: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in outcomes(record).items() if v not in ("passed", "skipped")}

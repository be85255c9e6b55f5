"""Measure decide() and write_reports() over a window of 10,000 checkpoints.

Writes synthetic checkpoint records into a window in a temporary folder, in
the shape and size the pytest plugin writes them. Each has 25 results with
their measured value, threshold, message and evidence, the measurements the
charts read, the state the next checkpoint needs and the summary. Backend memory
leaks slowly, Redis memory wanders, one checkpoint in 200 misses its backend
measurement and a few checks fail. The window also gets a note, a resolution
and a planned period.

It then times the verdict several times and prints where the time goes:
reading the records, deciding (including the trend fits), encoding the JSON,
and rendering the Markdown and the HTML (which draws the four charts).

Run: python bench/bench_verdict.py [--checkpoints 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soakcheck.checklist import spec_for  # noqa: E402
from soakcheck.notes import add_note, add_planned, add_resolution  # noqa: E402
from soakcheck.observation import MB  # noqa: E402
from soakcheck.record import SCHEMA  # noqa: E402
from soakcheck.verdict import decide, iter_records  # noqa: E402
from soakcheck.verdict_report import (  # noqa: E402
    render_html,
    render_markdown,
    write_reports,
)
from soakcheck.window import Window, new_window  # noqa: E402

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
INTERVAL_S = 60.0
QUEUES = ["webhook-processing", "recording-upload", "billing-reconciliation"]
SERVICES = ["database", "supabase", "backgroundJobs", "webhookQueue"]

# (check id, unit, operator, threshold): 25 rows, as one checkpoint of the
# bundled target records them.
CHECKS: list[tuple[str, str, str, Any]] = [
    ("health.status", "", "==", "ok"),
    *[(f"health.service[{name}]", "", "==", True) for name in SERVICES],
    ("health.latency", "ms", "<", 100),
    ("uptime.delta", "s", "<=", 60.0),
    ("uptime.no_restart", "s", ">=", 0.0),
    ("redis.reachable", "ms", "", None),
    ("redis.memory", "MB", "<", 50),
    ("redis.eviction_policy", "", "==", "noeviction"),
    ("redis.evictions", "keys", "==", 0),
    ("redis.persistence", "", "==", "ok"),
    ("redis.rejected_connections", "connections", "==", 0),
    ("backend.memory", "MB", "<", 500),
    ("logs.errors[app.log]", "lines", "==", 0),
    ("logs.critical[app.log]", "lines", "==", 0),
    ("logs.error_rate[app.log]", "lines", "<=", 10),
    ("logs.worker_alive", "", "==", "seen"),
    *[(f"queues.failed[{queue}]", "jobs", "==", 0) for queue in QUEUES],
    *[(f"queues.stalled[{queue}]", "jobs", "==", 0) for queue in QUEUES],
]


def make_record(window: Window, index: int, rng: random.Random) -> dict[str, Any]:
    """Return one synthetic checkpoint record for slot `index`."""
    slot = window.slot(index)
    started = slot.due + timedelta(seconds=1)
    finished = started + timedelta(seconds=2.5)
    hours = index * INTERVAL_S / 3600
    backend_mb = 120 + 1.5 * hours + rng.gauss(0, 3)
    redis_mb = 1.6 + 0.3 * rng.random()
    latency_ms = max(2.0, rng.gauss(14, 4))
    errors = 1 if rng.random() < 0.01 else 0
    backend_down = index % 200 == 199

    values = {
        "health.latency": round(latency_ms, 1),
        "redis.memory": round(redis_mb, 2),
        "backend.memory": round(backend_mb, 1),
        "logs.errors[app.log]": errors,
        "logs.error_rate[app.log]": errors,
    }
    results = []
    for check, unit, operator, threshold in CHECKS:
        spec = spec_for(check)
        value = values.get(check, threshold if threshold is not None else 0.4)
        failed = check == "logs.errors[app.log]" and errors
        if backend_down and check in ("health.status", "backend.memory"):
            failed, value = True, None
        results.append(
            {
                "check": check,
                "nodeid": f"tests/test_{check.split('.')[0]}.py::test_{check}",
                "outcome": "failed" if failed else "passed",
                "severity": spec.severity,
                "criterion": spec.criterion,
                "area": spec.area,
                "subject": spec.title,
                "value": value,
                "threshold": threshold,
                "unit": unit,
                "operator": operator,
                "message": f"{spec.title} ({value} {unit}) {operator} {threshold} "
                f"{unit}; measured at checkpoint {index}",
                "evidence": (
                    ["2026-12-01T00:00:00Z ERROR stripe: 404 No such customer"]
                    if failed
                    else []
                ),
                "duration_s": round(rng.uniform(0.001, 0.2), 4),
            }
        )

    measurements: dict[str, Any] = {
        "health_latency_p95_ms": round(latency_ms, 1),
        "health_http_status": 200,
        "uptime_s": round(index * INTERVAL_S + 30, 1),
        "redis_used_memory_bytes": int(redis_mb * MB),
        "log_error_records": errors,
        "log_fatal_records": 0,
        "log_errors_per_hour": {f"{slot.due:%Y-%m-%dT%H}": errors},
        "queue_counts": {
            queue: {"wait": 3, "active": 1, "completed": 1000 + index, "failed": 0}
            for queue in QUEUES
        },
    }
    if not backend_down:
        measurements["backend_rss_bytes"] = int(backend_mb * MB)
    failed_rows = [r for r in results if r["outcome"] == "failed"]
    return {
        "schema": SCHEMA,
        "soakcheck_version": "0.1.0",
        "target": window.target,
        "backend": "http://127.0.0.1:3001",
        "window": window.to_dict(),
        "checkpoint": {
            "id": slot.id,
            "kind": "scheduled",
            "slot_index": slot.index,
            "slot_id": slot.id,
            "slot_label": slot.label,
            "due_at": slot.due.isoformat(),
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": 2.5,
        },
        "summary": {
            "total": len(results),
            "passed": len(results) - len(failed_rows),
            "failed": len(failed_rows),
            "skipped": 0,
            "criticals": sum(r["severity"] == "critical" for r in failed_rows),
            "warnings": sum(r["severity"] == "warning" for r in failed_rows),
            "infos": 0,
            "primary_failed": sum(r["criterion"] == "primary" for r in failed_rows),
        },
        "results": results,
        "measurements": measurements,
        "state": {
            "uptime": {"uptime_s": index * INTERVAL_S + 30, "at": started.isoformat()},
            "logs": {
                "/var/log/billing/app.log": {"inode": 1234, "offset": 4096 * index}
            },
            "redis": {"evicted_keys": 0, "rejected_connections": 0},
            "queues": {queue: {"failed_seen": 0} for queue in QUEUES},
        },
        "artifacts": {},
    }


def build_window(root: Path, checkpoints: int) -> tuple[Window, int]:
    """Write the synthetic window and return it with the bytes of its records."""
    length_s = (checkpoints - 1) * INTERVAL_S
    window = new_window(root, "bench", length_s, INTERVAL_S, start=START)
    rng = random.Random(7)
    size = 0
    for index in range(checkpoints):
        record = make_record(window, index, rng)
        # The plugin's writer formats records with indent=2; the fsync it adds
        # only slows the set-up down.
        text = json.dumps(record, indent=2, default=str) + "\n"
        (window.directory / f"{record['checkpoint']['id']}.json").write_text(text)
        size += len(text)

    moment = window.end + timedelta(hours=1)
    add_note(window.directory, "memory grows; heap snapshots taken", moment=moment)
    add_resolution(
        window.directory, "logs.errors", "sandbox 404s, expected", moment=moment
    )
    add_planned(
        window.directory,
        START + timedelta(hours=30),
        START + timedelta(hours=30, minutes=20),
        "deploy v1.4",
        moment=START,
    )
    return window, size


def time_once(window: Window) -> dict[str, float]:
    """Time one verdict, whole and then step by step, in seconds."""
    moment = window.end + timedelta(hours=2)
    figures = {}

    began = time.perf_counter()
    verdict = decide(window, moment=moment)
    write_reports(verdict, window.directory)
    figures["decide + write_reports"] = time.perf_counter() - began
    del verdict

    began = time.perf_counter()
    for _ in iter_records(window):
        pass
    figures["read and parse records"] = time.perf_counter() - began

    began = time.perf_counter()
    verdict = decide(window, moment=moment)
    figures["decide (reading included)"] = time.perf_counter() - began

    began = time.perf_counter()
    json.dumps(verdict.to_dict(), default=str, separators=(",", ":"))
    figures["JSON encoding"] = time.perf_counter() - began

    began = time.perf_counter()
    render_markdown(verdict)
    figures["Markdown"] = time.perf_counter() - began

    began = time.perf_counter()
    render_html(verdict)
    figures["HTML with 4 charts"] = time.perf_counter() - began
    return figures


def time_fresh_process(window: Window) -> dict[str, float]:
    """Time the first verdict of a new interpreter, as `make verdict` runs it."""
    script = f"""
import resource, sys, time
from datetime import timedelta
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
began = time.perf_counter()
from soakcheck.verdict import decide
from soakcheck.verdict_report import write_reports
from soakcheck.window import load_window
imported = time.perf_counter()
window = load_window(Path({str(window.directory)!r}))
verdict = decide(window, moment=window.end + timedelta(hours=2))
decided = time.perf_counter()
write_reports(verdict, window.directory)
done = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(imported - began, decided - imported, done - decided, peak)
"""
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    imports, deciding, writing, peak_mb = (float(value) for value in output.split())
    return {
        "imports": imports,
        "decide": deciding,
        "write_reports (imports matplotlib)": writing,
        "decide + write_reports": deciding + writing,
        "peak_mb": peak_mb,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-verdict-") as folder:
        began = time.perf_counter()
        window, size = build_window(Path(folder), args.checkpoints)
        print(
            f"wrote {args.checkpoints} records, {size / MB:.1f} MB, "
            f"in {time.perf_counter() - began:.1f} s"
        )
        fresh = time_fresh_process(window)
        runs = [time_once(window) for _ in range(args.repeat)]
        outputs = {
            name: (window.directory / name).stat().st_size
            for name in ("verdict.json", "verdict.md", "verdict.html")
        }

    print(
        f"\nMachine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}; {args.repeat} runs, files in page cache"
    )
    print("\nFirst verdict in a new Python process:\n")
    print("| step | seconds |")
    print("|---|--:|")
    peak_mb = fresh.pop("peak_mb")
    for name, seconds in fresh.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nPeak resident memory of that process: {peak_mb:.0f} MB")
    print(f"\nThen {args.repeat} runs in one process:")
    print("\n| step | first run (s) | median (s) |")
    print("|---|--:|--:|")
    for name in runs[0]:
        median = statistics.median(run[name] for run in runs)
        print(f"| {name} | {runs[0][name]:.2f} | {median:.2f} |")
    print("\n| output | size |")
    print("|---|--:|")
    for name, bytes_ in outputs.items():
        print(f"| {name} | {bytes_ / 1024:.0f} KB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

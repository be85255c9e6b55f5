"""Measure read_queue_state on queues of 1,000 and 1,000,000 BullMQ jobs.

Starts its own redis-server on a free loopback port (no persistence, in a
temporary folder), writes the jobs, reads each queue several times, prints a
Markdown table, and stops the server.

Adding a million jobs through the bullmq package takes too long, so the keys
are written in bulk through pipelines in BullMQ's layout. Each job gets a
small hash (name, data, opts, timestamp, plus processedOn, finishedOn,
failedReason and atm where its state has them) and its id in the state's
list or sorted set. Each active job but two gets a `:lock` key, and each
queue gets its `meta` hash and `id` counter.

Run: python bench/bench_queues.py [--jobs 1000 1000000] [--reads 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soakcheck.probes.queues import (  # noqa: E402
    command_budget,
    queue_key,
    read_queue_state,
)
from soakcheck.probes.redis_info import connect  # noqa: E402
from soakcheck.services import free_port  # noqa: E402

log = logging.getLogger("bench_queues")

PREFIX = "bull"
BATCH = 10_000
ACTIVE_JOBS = 20
LOCKLESS_JOBS = 2
START_DEADLINE_S = 10.0

# Share of the non-active jobs in each state. Completed takes the rest.
SHARES = {"wait": 0.10, "delayed": 0.02, "prioritized": 0.02, "failed": 0.05}


@dataclass
class Measure:
    """Figures of one queue: its size, fill time and the cost of reading it."""

    label: str
    jobs: int
    active: int
    fill_s: float
    read_ms_median: float
    read_ms_max: float
    commands_counted: int
    commands_used: int
    used_memory_human: str


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free loopback port and wait until it accepts."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it (make redis)")

    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port)]
    command += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log.info("redis-server started pid=%d port=%d", process.pid, port)

    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.05)

    stop_redis(process)
    raise SystemExit(f"redis-server on port {port} did not start within 10 s")


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    log.info("redis-server stopped pid=%d", process.pid)


def plan_states(total: int, active: int) -> dict[str, int]:
    """Split `total` jobs over the states: `active` fixed, the rest by SHARES."""
    rest = total - active
    counts = {state: int(rest * share) for state, share in SHARES.items()}
    counts["completed"] = rest - sum(counts.values())
    counts["active"] = active
    return counts


def fill_queue(client: redis.Redis, queue: str, total: int, active: int) -> float:
    """Write `total` jobs of `queue` in BullMQ's layout and return the seconds."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    counts = plan_states(total, active)
    next_id = 1

    client.hset(queue_key(PREFIX, queue, "meta"), "opts.maxLenEvents", 10_000)
    for state, count in counts.items():
        for first in range(next_id, next_id + count, BATCH):
            last = min(first + BATCH, next_id + count)
            write_batch(client, queue, state, range(first, last), now_ms)
        next_id += count

    client.set(queue_key(PREFIX, queue, "id"), total)
    return time.perf_counter() - started


def write_batch(
    client: redis.Redis, queue: str, state: str, ids: range, now_ms: int
) -> None:
    pipe = client.pipeline(transaction=False)
    members = [str(number) for number in ids]

    for job_id in members:
        job: dict[str, Any] = {"name": "n", "data": "{}", "opts": "{}"}
        job["timestamp"] = now_ms - 60_000
        if state in ("active", "completed", "failed"):
            job["processedOn"] = now_ms - 30_000
        if state in ("completed", "failed"):
            job["finishedOn"] = now_ms - 1_000
        if state == "failed":
            job["failedReason"] = "boom"
            job["atm"] = 1
        pipe.hset(queue_key(PREFIX, queue, job_id), mapping=job)

    key = queue_key(PREFIX, queue, state)
    if state in ("wait", "active"):
        pipe.lpush(key, *members)
    else:
        pipe.zadd(key, {job_id: now_ms - int(job_id) for job_id in members})

    if state == "active":
        for job_id in members[LOCKLESS_JOBS:]:
            pipe.set(queue_key(PREFIX, queue, f"{job_id}:lock"), "t", px=3_600_000)

    pipe.execute()


def commands_sent(admin: redis.Redis) -> int:
    """Return all calls in INFO commandstats except those of INFO itself."""
    stats = admin.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    )


def measure(
    admin: redis.Redis,
    probe: redis.Redis,
    label: str,
    queue: str,
    total: int,
    active: int,
    reads: int,
) -> Measure:
    """Fill one queue, then time `reads` reads of it and count one read's commands."""
    fill_s = fill_queue(admin, queue, total, active)
    log.info("filled queue=%s jobs=%d seconds=%.1f", queue, total, fill_s)

    # The first read warms the connection and the server's caches.
    read_queue_state(probe, PREFIX, queue, window_start_ms=0, previous=None)

    timings = []
    for _ in range(reads):
        before = commands_sent(admin)
        started = time.perf_counter()
        state = read_queue_state(probe, PREFIX, queue, window_start_ms=0, previous=None)
        timings.append((time.perf_counter() - started) * 1000.0)
        counted = commands_sent(admin) - before

    memory = admin.info("memory")["used_memory_human"]
    return Measure(
        label=label,
        jobs=sum(state.counts.values()),
        active=state.counts["active"],
        fill_s=fill_s,
        read_ms_median=statistics.median(timings),
        read_ms_max=max(timings),
        commands_counted=counted,
        commands_used=state.commands_used,
        used_memory_human=memory,
    )


def table(rows: list[Measure]) -> str:
    lines = [
        "| queue | jobs | active | fill (s) | read median (ms) | read max (ms) "
        "| commands (commandstats) | commands_used | Redis used_memory after |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.jobs:,} | {row.active:,} | {row.fill_s:.1f} "
            f"| {row.read_ms_median:.2f} | {row.read_ms_max:.2f} "
            f"| {row.commands_counted} | {row.commands_used} "
            f"| {row.used_memory_human} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs",
        type=int,
        nargs="+",
        default=[1_000, 1_000_000],
        help="queue sizes to measure, in jobs (default: 1000 1000000)",
    )
    parser.add_argument(
        "--reads", type=int, default=5, help="timed reads per queue (default: 5)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("soakcheck").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-queues-") as folder:
        process, port = start_redis(Path(folder))
        try:
            admin = redis.Redis(
                host="127.0.0.1", port=port, decode_responses=True, socket_timeout=60
            )
            probe = connect(f"redis://127.0.0.1:{port}/0", timeout_s=30.0)
            rows = [
                measure(
                    admin, probe, f"{n:,} jobs", f"q{n}", n, ACTIVE_JOBS, args.reads
                )
                for n in args.jobs
            ]
            # Past the active scan limit the cost must stop growing.
            rows.append(
                measure(admin, probe, "5,000 active", "busy", 5_000, 5_000, args.reads)
            )
        finally:
            stop_redis(process)

    print()
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()}")
    print(f"python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print(f"command budget at default limits: {command_budget()}")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()

"""Time one checkpoint against the reference backend and show where the time goes.

Starts its own redis-server and reference backend on free loopback ports,
then runs `python -m soakcheck check` several times (the first one starts the
window) and reports, per run, the wall time, the time spent inside the
checklist session, and the peak resident memory of the checkpoint process.
For comparison it also times a bare interpreter start and a pytest collection
of the checklist, which is the start-up every checkpoint pays.

Run: .venv/bin/python bench/bench_checkpoint.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from selftests.stack import Stack, secrets_env  # noqa: E402
from soakcheck.services import RedisServer, ReferenceBackend  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a command; return its wall time in seconds and its exit code."""
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, check=False
    )
    return time.perf_counter() - started, completed.returncode


def child_peak_rss_mb() -> float:
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far, in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="checkpoints to time")
    args = parser.parse_args()
    env = {**os.environ, **secrets_env()}
    python = sys.executable

    with tempfile.TemporaryDirectory(prefix="soakcheck-bench-") as folder:
        workdir = Path(folder)
        with (
            RedisServer() as redis,
            ReferenceBackend(
                redis_url=redis.url,
                log_file=workdir / "backend.log",
                heartbeat_seconds=1,
                env=secrets_env(),
            ) as backend,
        ):
            stack = Stack(redis, backend, workdir)
            target = stack.write_target()
            reports = workdir / "reports"

            bare, _ = timed([python, "-c", "pass"], env)
            imports, _ = timed(
                [python, "-c", "import soakcheck.plugin, tests.conftest"], env
            )
            collect, _ = timed(
                [
                    python,
                    "-m",
                    "pytest",
                    "--co",
                    "-q",
                    "tests",
                    f"--target={target}",
                    "-p",
                    "no:cacheprovider",
                ],
                env,
            )

            walls, sessions = [], []
            for _ in range(args.runs):
                wall, code = timed(
                    [
                        python,
                        "-m",
                        "soakcheck",
                        "check",
                        "--target",
                        str(target),
                        "--reports",
                        str(reports),
                    ],
                    env,
                )
                newest = max(
                    (p for p in reports.glob("*/*.json") if p.name != "window.json"),
                    key=lambda p: p.stat().st_mtime,
                )
                record = json.loads(newest.read_text())
                walls.append(wall)
                sessions.append(record["checkpoint"]["duration_s"])
                print(
                    f"checkpoint {record['checkpoint']['id']}: wall {wall:.2f} s, "
                    f"session {sessions[-1]:.2f} s, exit {code}, "
                    f"{record['summary']['passed']} passed"
                )
            peak = child_peak_rss_mb()

    print()
    print("| measure | seconds |")
    print("|---|--:|")
    print(f"| python start (`python -c pass`) | {bare:.2f} |")
    print(f"| import soakcheck plugin and probes | {imports:.2f} |")
    print(f"| pytest collection of the checklist | {collect:.2f} |")
    print(
        f"| checkpoint wall, median of {args.runs} | {statistics.median(walls):.2f} |"
    )
    print(f"| checkpoint wall, max | {max(walls):.2f} |")
    print(
        f"| inside the checklist session, median | {statistics.median(sessions):.2f} |"
    )
    print(f"\npeak RSS of a checkpoint process: {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

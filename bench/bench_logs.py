"""Benchmark of the log scan on a generated Node.js log of about 1 GB.

Measures, in one run:

- full-scan throughput of `scan_log` beside `grep -ciE 'error|critical|fatal'`
  on the same file, with both counts, since grep counts every line that
  mentions a level word. The scan runs once in one process and once with
  the default settings, which share a large read with a second process.
- the cost of scanning 1 MB appended to the big file,
- the peak memory of each full scan.

    python bench/bench_logs.py                  # 1024 MB in a temporary folder
    python bench/bench_logs.py --size-mb 64     # a quicker, smaller run
    python bench/bench_logs.py --path /data/bench.log --keep
    python bench/bench_logs.py --finder python  # without Hyperscan

The log mixes pino JSON, winston JSON, text lines, NestJS lines with ANSI
colours, stack traces and lines that only mention "error". Its expected
counts come from the line-by-line classifier run on one generated block,
so the run also checks that the fast block scan agrees with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soakcheck.logscan import (  # noqa: E402
    Level,
    LineKind,
    classify_lines,
    consume,
    reconciliation_patterns,
    scan_log,
)
from soakcheck.logscan.prefilter import PythonFinder  # noqa: E402
from soakcheck.logscan.split import SPLIT_MIN_BYTES  # noqa: E402

BASE_BLOCK_BYTES = 16 * 1024 * 1024
APPEND_BYTES = 1024 * 1024
APPEND_ROUNDS = 5
START_MS = 1796353200000  # 2026-12-04T03:00:00Z


class LogWriter:
    """Makes the lines of the benchmark log, each kind with its own share."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.time_ms = START_MS

    def pino(self, level: int, msg: str, extra: str = "") -> str:
        self.time_ms += self.random.randint(1, 40)
        return (
            f'{{"level":{level},"time":{self.time_ms},"pid":4211,'
            f'"hostname":"api-7f9c"{extra},"msg":"{msg}"}}'
        )

    def iso(self) -> str:
        seconds, millis = divmod(self.time_ms, 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{stamp}.{millis:03d}Z"

    def request(self) -> str:
        request_id = self.random.randint(1, 999999)
        item = self.random.randint(1, 99999)
        return self.pino(
            30,
            "request completed",
            f',"reqId":"req-{request_id}","req":{{"method":"GET",'
            f'"url":"/api/items/{item}"}},"res":{{"statusCode":200}},'
            f'"responseTime":{self.random.randint(1, 90)}',
        )

    def lines(self) -> list[str]:
        """Return the lines of one event; most events are one line."""
        roll = self.random.random()
        if roll < 0.50:
            return [self.request()]
        if roll < 0.58:
            key = self.random.randint(1, 9999)
            return [self.pino(20, "cache hit", f',"key":"user:{key}"')]
        if roll < 0.66:
            job = self.random.randint(1, 99999)
            return [f"{self.iso()} INFO  RecordingQueueWorker processed job {job}"]
        if roll < 0.67:
            return [f"{self.iso()} INFO  RecordingQueueWorker running normally"]
        if roll < 0.72:
            return [
                "\x1b[32m[Nest] 4211  - \x1b[39m12/04/2026, 3:00:01 AM \x1b[32m    "
                "LOG\x1b[39m \x1b[33m[RouterExplorer] \x1b[39m\x1b[32mMapped "
                "{/api/items/:id, GET} route\x1b[39m"
            ]
        if roll < 0.75:
            return [
                '{"level":"info","message":"GET /api/reports 200 12ms",'
                f'"service":"user-service","timestamp":"{self.iso()}"}}'
            ]
        return self.rare_lines(roll)

    def pino_lines(self) -> list[str]:
        """Return one line of a log written only by pino, as many services log."""
        roll = self.random.random()
        if roll < 0.90:
            return [self.request()]
        if roll < 0.95:
            return [self.pino(20, "cache hit", ',"key":"user:42"')]
        if roll < 0.98:
            return [self.pino(30, "nightly report done", ',"errorCount":0')]
        if roll < 0.99:
            return [self.pino(40, "redis reconnecting", ',"err":{"type":"Error"}')]
        if roll < 0.995:
            return [self.pino(50, "request errored", ',"err":{"type":"Error"}')]
        return [self.pino(30, "RecordingQueueWorker running normally")]

    def rare_lines(self, roll: float) -> list[str]:
        if roll < 0.78:
            return [
                self.random.choice(
                    [
                        self.pino(30, "nightly report done", ',"errorCount":0'),
                        f"{self.iso()} INFO  Processed 1500 records, 0 errors",
                        f"{self.iso()} INFO  retrying after error budget check",
                        self.pino(30, "GET /api/errors 200"),
                        '{"level":"info","message":"No ERROR found in last 24h"}',
                    ]
                )
            ]
        if roll < 0.795:
            return [
                self.pino(
                    40,
                    "redis reconnecting",
                    ',"err":{"type":"Error","message":"connect ETIMEDOUT"}',
                )
            ]
        if roll < 0.80:
            return [
                "BullMQ: WARNING! Your redis options maxRetriesPerRequest must be null."
            ]
        if roll < 0.804:
            return [
                self.pino(
                    50,
                    "request errored",
                    ',"err":{"type":"Error","message":"boom","stack":"Error: boom\\n'
                    '    at handler (/app/dist/api.js:41:9)"}',
                )
            ]
        if roll < 0.8055:
            frames = [
                f"    at Worker.run (/app/node_modules/bullmq/dist/worker.js:{n}:17)"
                for n in range(5)
            ]
            return [
                f"{self.iso()} ERROR job 171 failed: job stalled more than "
                "allowable limit",
                "Error: job stalled more than allowable limit",
                *frames,
            ]
        if roll < 0.8065:
            return [
                "[ioredis] Unhandled error event: Error: connect ECONNREFUSED "
                "127.0.0.1:6379",
                "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",
            ]
        if roll < 0.8067:
            return [self.pino(60, "uncaughtException")]
        if roll < 0.8069:
            return [f"{self.iso()} CRITICAL disk usage 97% on /var/lib/redis"]
        if roll < 0.81:
            return [
                "IMPORTANT! Eviction policy is volatile-lru. It should be noeviction"
            ]
        return [self.request()]


def make_block(seed: int, size: int, mix: str = "mixed") -> bytes:
    """Return complete lines adding up to about `size` bytes."""
    writer = LogWriter(seed)
    make_lines = writer.pino_lines if mix == "pino" else writer.lines
    parts: list[str] = []
    total = 0
    while total < size:
        for line in make_lines():
            parts.append(line)
            total += len(line) + 1

    return ("\n".join(parts) + "\n").encode()


def expected_counts(block: bytes) -> Counter[str]:
    """Count the block's records by level with the line-by-line classifier."""
    counts: Counter[str] = Counter()
    for _, found in classify_lines(block.split(b"\n")[:-1]):
        if found.kind is LineKind.RECORD and found.level is not None:
            counts["records"] += 1
            counts[found.level.value] += 1

    return counts


def write_log(path: Path, block: bytes, size_mb: int) -> int:
    """Write `block` until the file reaches about `size_mb` MB; return the repeats."""
    repeats = max(1, round(size_mb * 1024 * 1024 / len(block)))
    with open(path, "wb") as file:
        for _ in range(repeats):
            file.write(block)

    return repeats


def warm_cache(path: Path) -> None:
    """Read the file once, so both timed readers find it in the page cache."""
    with open(path, "rb", buffering=0) as file:
        while file.read(8 * 1024 * 1024):
            pass


def run_grep(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    done = subprocess.run(
        ["grep", "-ciE", "error|critical|fatal", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    return int(done.stdout.strip() or 0), elapsed


def peak_rss_kib() -> int:
    """Return this process's peak resident memory in KiB.

    Linux's VmHWM is preferred: ru_maxrss of a child started with
    subprocess also counts the memory of the parent it was forked from.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_scan(path: str, state_out: str, mode: str, finder: str) -> None:
    """Scan the whole file in this process and print figures as JSON.

    `mode` "split" lets the scan share the read with a second process, as
    `scan_log` does by default; "single" keeps it in this process. `finder`
    "python" uses the pure-Python candidate search of platforms without
    Hyperscan.
    """
    if finder == "python":
        consume.default_finder = PythonFinder
    split_min_bytes = SPLIT_MIN_BYTES if mode == "split" else None
    started = time.perf_counter()
    # The checklist's settings: the default worker phrase and the nightly
    # job's start and completion phrases.
    result = scan_log(
        path, None, patterns=reconciliation_patterns(), split_min_bytes=split_min_bytes
    )
    elapsed = time.perf_counter() - started
    Path(state_out).write_text(json.dumps(result.state))
    figures = {
        "seconds": elapsed,
        "bytes_read": result.bytes_read,
        "records": result.records,
        "error": result.error_records,
        "fatal": result.fatal_records,
        "warn": result.warn_records,
        "max_rss_kib": peak_rss_kib(),
        # The peak of the process that read the second part, once it ended.
        "child_max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    print(json.dumps(figures))


def fastest(run: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    """Return the figures of the fastest of `repeat` runs."""
    return min((run() for _ in range(repeat)), key=lambda figures: figures["seconds"])


def full_scan(path: Path, state_file: Path, mode: str, finder: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child-scan", str(path), str(state_file)]
    done = subprocess.run(
        [*command, mode, finder],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def append_scans(path: Path, state: dict, block: bytes) -> list[float]:
    """Append 1 MB several times and time the scan of each append, in ms."""
    piece = block[: block.rfind(b"\n", 0, APPEND_BYTES) + 1]
    timings = []
    for _ in range(APPEND_ROUNDS):
        with open(path, "ab") as file:
            file.write(piece)
        started = time.perf_counter()
        result = scan_log(path, state, patterns=reconciliation_patterns())
        timings.append((time.perf_counter() - started) * 1000)
        state = result.state

    return timings


def report(args: argparse.Namespace, path: Path) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}")
    print(f"python {platform.python_version()}, LANG={os.environ.get('LANG', '')}")
    finder = "python" if args.finder == "python" else consume.default_finder().name
    print(f"candidate search: {finder}")

    started = time.perf_counter()
    block = make_block(seed=7, size=BASE_BLOCK_BYTES, mix=args.mix)
    repeats = write_log(path, block, args.size_mb)
    size = path.stat().st_size
    print(
        f"generated {size / 1e6:.0f} MB of {args.mix} log "
        f"({repeats} x {len(block) / 1e6:.1f} MB block) "
        f"in {time.perf_counter() - started:.1f} s"
    )

    expected = expected_counts(block)
    warm_cache(path)
    # Each measure is the fastest of `--repeat` runs, as other load on the
    # machine only ever slows a run down.
    grep_runs = [run_grep(path) for _ in range(args.repeat)]
    grep_count = grep_runs[0][0]
    grep_seconds = min(seconds for _, seconds in grep_runs)
    state_file = path.with_suffix(".state.json")
    single = fastest(
        lambda: full_scan(path, state_file, "single", args.finder), args.repeat
    )
    # The split runs come last, so the saved state is a split read's.
    figures = fastest(
        lambda: full_scan(path, state_file, "split", args.finder), args.repeat
    )
    state = json.loads(state_file.read_text())
    state_file.unlink()

    grep_mb_s = size / 1e6 / grep_seconds
    print(
        f"grep -ciE 'error|critical|fatal': {grep_count} lines, "
        f"{grep_seconds:.2f} s, {grep_mb_s:.0f} MB/s"
    )
    for label, run in (("one process", single), ("default, split", figures)):
        scan_mb_s = size / 1e6 / run["seconds"]
        print(
            f"scan_log full scan ({label}): {run['error']} error + {run['fatal']} "
            f"fatal records, {run['seconds']:.2f} s, {scan_mb_s:.0f} MB/s "
            f"({scan_mb_s / grep_mb_s:.0%} of grep)"
        )
    print(
        "peak memory of the full scan (VmHWM): "
        f"{single['max_rss_kib'] / 1024:.0f} MiB in one process; split: "
        f"{figures['max_rss_kib'] / 1024:.0f} MiB + "
        f"{figures['child_max_rss_kib'] / 1024:.0f} MiB in the second process"
    )

    for name, level in (
        ("records", None),
        ("error", Level.ERROR),
        ("fatal", Level.FATAL),
        ("warn", Level.WARN),
    ):
        want = expected["records" if level is None else level.value] * repeats
        found = (single[name], figures[name])
        verdict = "ok" if found == (want, want) else "MISMATCH"
        print(
            f"  {name}: one process {found[0]}, split {found[1]}, "
            f"line-by-line {want} -> {verdict}"
        )

    timings = append_scans(path, state, block)
    print(
        f"scan of 1 MB appended to the {size / 1e6:.0f} MB log: "
        f"median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms "
        f"over {len(timings)} appends"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mb",
        type=int,
        default=1024,
        help="size of the generated log in MB (default 1024)",
    )
    parser.add_argument(
        "--path",
        type=Path,
        help="file to write the log to (default: a temporary folder)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated log after the run"
    )
    parser.add_argument(
        "--mix",
        choices=["mixed", "pino"],
        default="mixed",
        help="content of the log: mixed formats (default) or pino JSON only",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of grep and of each full scan; the fastest counts (default 3)",
    )
    parser.add_argument(
        "--finder",
        choices=["auto", "python"],
        default="auto",
        help="candidate search: Hyperscan where installed (default) or pure Python",
    )
    parser.add_argument(
        "--child-scan",
        nargs=4,
        metavar=("LOG", "STATE", "MODE", "FINDER"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()

    if args.child_scan:
        child_scan(*args.child_scan)
        return

    folder = None
    if args.path is None:
        folder = Path(tempfile.mkdtemp(prefix="soakcheck-bench-"))
        path = folder / "app.log"
    else:
        path = args.path

    try:
        report(args, path)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Backend memory probe: resident memory of the process and its children.

A local backend is found by its listening port, a pid file or a command-line
pattern. A remote one reports its memory through a Prometheus `/metrics`
endpoint (`process_resident_memory_bytes`) or a health JSON path.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

_METRIC = re.compile(
    r"^process_resident_memory_bytes(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE
)


@dataclass
class ProcessMemory:
    """Resident memory of the backend, with how the process was found."""

    rss_bytes: int
    source: str
    pids: list[int] = field(default_factory=list)


def find_by_port(port: int) -> int | None:
    """Return the pid of the process listening on a TCP port, if visible."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        connections = []
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.pid
        ):
            return connection.pid

    # Without root, net_connections hides other users' sockets; ask each process.
    for process in psutil.process_iter(["pid"]):
        try:
            for connection in process.net_connections(kind="tcp"):
                if (
                    connection.status == psutil.CONN_LISTEN
                    and connection.laddr.port == port
                ):
                    return process.pid
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return None


def find_by_pid_file(path: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ProbeError(f"cannot read pid file {path}: {error.strerror}") from None
    if not text.isdigit():
        raise ProbeError(f"pid file {path} contains {text[:40]!r}, not a process id")
    return int(text)


def find_by_pattern(pattern: str) -> int | None:
    """Return the oldest process whose command line matches the regex."""
    regex = re.compile(pattern)
    matches: list[psutil.Process] = []
    for process in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if cmdline and regex.search(cmdline):
            matches.append(process)
    if not matches:
        return None
    return min(matches, key=lambda p: p.info["create_time"] or 0).pid


def tree_rss(pid: int) -> tuple[int, list[int]]:
    """Sum the resident memory of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        raise ProbeError(f"backend process {pid} no longer exists") from None
    except psutil.AccessDenied:
        raise ProbeError(
            f"access denied reading process {pid}; run as the backend's user"
        ) from None

    total = 0
    pids = []
    for process in processes:
        try:
            total += process.memory_info().rss
            pids.append(process.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return total, pids


def read_metrics(url: str, timeout_s: float) -> int:
    """Read `process_resident_memory_bytes` from a Prometheus text endpoint."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as error:
        raise ProbeError(f"metrics endpoint {url} failed: {error}") from None
    if response.status_code != 200:
        raise ProbeError(f"metrics endpoint {url} returned HTTP {response.status_code}")
    match = _METRIC.search(response.text)
    if not match:
        raise ProbeError(
            f"metrics endpoint {url} has no process_resident_memory_bytes sample"
        )
    return int(float(match.group(1)))


def read_process_memory(
    *,
    port: int | None = None,
    pid_file: Path | None = None,
    cmdline_pattern: str | None = None,
    metrics_url: str | None = None,
    timeout_s: float = 5.0,
) -> ProcessMemory | None:
    """Measure the backend's memory by the first configured method.

    Returns None when no method is configured; raises ProbeError when the
    configured method cannot measure.
    """
    if pid_file is not None:
        pid = find_by_pid_file(pid_file)
        rss, pids = tree_rss(pid)
        return ProcessMemory(rss, f"pid file {pid_file} (pid {pid})", pids)

    if port is not None:
        listener = find_by_port(port)
        if listener is None:
            raise ProbeError(f"no process is listening on port {port}")
        rss, pids = tree_rss(listener)
        source = f"process listening on port {port} (pid {listener})"
        return ProcessMemory(rss, source, pids)

    if cmdline_pattern:
        match = find_by_pattern(cmdline_pattern)
        if match is None:
            raise ProbeError(f"no process command line matches {cmdline_pattern!r}")
        rss, pids = tree_rss(match)
        return ProcessMemory(
            rss, f"command line /{cmdline_pattern}/ (pid {match})", pids
        )

    if metrics_url:
        rss = read_metrics(metrics_url, timeout_s)
        return ProcessMemory(rss, f"metrics endpoint {metrics_url}")

    return None

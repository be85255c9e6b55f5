"""Start real components on loopback for the demo and the self-tests.

RedisServer runs a throwaway redis-server and ReferenceBackend runs the
bundled billing backend. Both are context managers that always stop what
they started, and every wait in them has a deadline.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import redis

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
REDIS_SEARCH_PATHS = ("/usr/bin/redis-server", "/usr/sbin/redis-server")
REDIS_INSTALL_HINT = "install the redis-server package: apt-get install redis-server"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 0.05
OUTPUT_TAIL_BYTES = 4000


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on `host` right now.

    Another process may take the port before the caller binds it, so the
    callers retry with a new port when a server fails to start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _read_tail(path: Path, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """Return the last `limit` bytes of a file as text, or a note if unreadable."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"

    text = data.decode("utf-8", errors="replace").strip()
    if size > limit:
        text = "[... cut ...]\n" + text
    return text or "(empty)"


def _stop_process(process: subprocess.Popen[bytes], name: str, timeout: float) -> int:
    """Send SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s pid=%d did not stop within %.0f s after SIGTERM; sending SIGKILL",
                name,
                process.pid,
                timeout,
            )
            process.kill()
            process.wait(timeout=timeout)
    return int(process.returncode)


def find_redis_server(executable: str | None = None) -> str:
    """Return the path of redis-server, or raise RuntimeError saying what to install."""
    if executable is not None:
        if os.access(executable, os.X_OK):
            return executable
        raise RuntimeError(
            f"redis-server not found at {executable}; {REDIS_INSTALL_HINT}"
        )

    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in REDIS_SEARCH_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "redis-server not found on PATH or in /usr/bin or /usr/sbin; "
        + REDIS_INSTALL_HINT
    )


class RedisServer:
    """A throwaway redis-server on a free loopback port, in a temp directory.

    Persistence is off (`--save ""`, `--appendonly no`), so nothing outlives
    stop(). `maxmemory_policy` defaults to noeviction, the policy BullMQ needs.
    """

    def __init__(
        self,
        *,
        maxmemory_policy: str = "noeviction",
        password: str | None = None,
        executable: str | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        start_attempts: int = 3,
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.password = password
        self.maxmemory_policy = maxmemory_policy
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.start_attempts = start_attempts
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of database 0, without the password."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self._process else None

    def client(self, **options: Any) -> redis.Redis:
        """Return a synchronous client with short timeouts and the password."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "decode_responses": True,
        }
        settings.update(options)
        return redis.Redis(**settings)

    def _command(self, binary: str, directory: Path) -> list[str]:
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--logfile",
            str(directory / "redis.log"),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        return command

    def start(self) -> Self:
        """Start the server and wait until it replies to PING."""
        binary = find_redis_server(self.executable)
        self.directory = Path(tempfile.mkdtemp(prefix="soakcheck-redis-"))
        last_problem = ""
        for attempt in range(1, self.start_attempts + 1):
            self.port = free_port(self.host)
            output = (self.directory / "redis.out").open("ab")
            try:
                self._process = subprocess.Popen(
                    self._command(binary, self.directory),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                )
            finally:
                output.close()

            problem = self._wait_until_ready()
            if problem is None:
                logger.info(
                    "Redis started pid=%d port=%d policy=%s",
                    self._process.pid,
                    self.port,
                    self.maxmemory_policy,
                )
                return self

            last_problem = problem
            logger.warning(
                "Redis failed to start on port %d (attempt %d of %d): %s",
                self.port,
                attempt,
                self.start_attempts,
                problem,
            )
            _stop_process(self._process, "redis-server", self.stop_timeout)

        self._remove_directory()
        raise RuntimeError(
            f"redis-server did not start after {self.start_attempts} attempts: "
            f"{last_problem}"
        )

    def _wait_until_ready(self) -> str | None:
        """Return None once PING succeeds, else why the server is not ready."""
        assert self._process is not None and self.directory is not None
        deadline = time.monotonic() + self.startup_timeout
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    log_text = _read_tail(self.directory / "redis.log")
                    return (
                        f"exited with code {self._process.returncode}; "
                        f"its log ends with:\n{log_text}"
                    )
                try:
                    if client.ping():
                        return None
                except redis.exceptions.AuthenticationError:
                    return None
                except redis.exceptions.RedisError:
                    pass
                time.sleep(POLL_INTERVAL)
        finally:
            client.close()
        return f"no reply to PING within {self.startup_timeout:.0f} s"

    def stop(self) -> int | None:
        """Stop the server and remove its directory; return its exit code."""
        code = None
        if self._process is not None:
            code = _stop_process(self._process, "redis-server", self.stop_timeout)
            logger.info("Redis stopped pid=%d code=%s", self._process.pid, code)
            self._process = None
        self._remove_directory()
        return code

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ReferenceBackend:
    """The bundled billing backend as a subprocess on a free loopback port.

    Its stdout and stderr go to `<log name>.console.log` next to the log
    file. When `log_file` is None, both live in a temp directory removed by
    stop().
    """

    def __init__(
        self,
        redis_url: str,
        log_file: Path | str | None = None,
        *,
        allow_faults: bool = False,
        heartbeat_seconds: float = 30.0,
        debt_limit_cents: int = 50_000,
        prefix: str = "bull",
        stalled_interval_seconds: float | None = None,
        pid_file: Path | str | None = None,
        redis_password: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        start_attempts: int = 3,
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.redis_url = redis_url
        self.allow_faults = allow_faults
        self.heartbeat_seconds = heartbeat_seconds
        self.debt_limit_cents = debt_limit_cents
        self.prefix = prefix
        self.stalled_interval_seconds = stalled_interval_seconds
        # Absolute paths, because the backend runs with the project as its cwd.
        self.pid_file = Path(pid_file).absolute() if pid_file is not None else None
        self.redis_password = redis_password
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.start_attempts = start_attempts
        self._temp_dir: Path | None = None
        if log_file is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="soakcheck-backend-"))
            log_file = self._temp_dir / "backend.log"
        self.log_path = Path(log_file).absolute()
        self.output_path = self.log_path.with_name(self.log_path.stem + ".console.log")
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http:// URL of the backend, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the backend, or None before start()."""
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        """True while the backend process has not exited."""
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "soakcheck.reference_backend",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--redis-url",
            self.redis_url,
            "--log-file",
            str(self.log_path),
            "--prefix",
            self.prefix,
            "--heartbeat-seconds",
            str(self.heartbeat_seconds),
            "--debt-limit-cents",
            str(self.debt_limit_cents),
        ]
        if self.allow_faults:
            command.append("--allow-faults")
        if self.stalled_interval_seconds is not None:
            command += [
                "--stalled-interval-seconds",
                str(self.stalled_interval_seconds),
            ]
        if self.pid_file is not None:
            command += ["--pid-file", str(self.pid_file)]
        return command + self.extra_args

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        # The package is imported from this checkout even when the caller
        # runs from another directory or without installing it.
        paths = [str(PROJECT_ROOT), environment.get("PYTHONPATH", "")]
        environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        environment["PYTHONUNBUFFERED"] = "1"
        if self.redis_password is not None:
            environment["REDIS_PASSWORD"] = self.redis_password
        environment.update(self.env)
        return environment

    def start(self) -> Self:
        """Start the backend and wait until /health responds with JSON."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        last_problem = ""
        for attempt in range(1, self.start_attempts + 1):
            self.port = free_port(self.host)
            self._output = self.output_path.open("ab")
            self._process = subprocess.Popen(
                self._command(),
                stdout=self._output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=PROJECT_ROOT,
            )
            problem = self._wait_for_health()
            if problem is None:
                logger.info(
                    "Reference backend started pid=%d url=%s",
                    self._process.pid,
                    self.base_url,
                )
                return self

            last_problem = problem
            logger.warning(
                "Reference backend failed to start on port %d (attempt %d of %d): %s",
                self.port,
                attempt,
                self.start_attempts,
                problem,
            )
            self.stop(remove_temp_dir=False)

        raise RuntimeError(
            f"reference backend did not start after {self.start_attempts} "
            f"attempts (output in {self.output_path}): {last_problem}"
        )

    def _wait_for_health(self) -> str | None:
        """Return None once /health responds with JSON, else the reason it did not."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    return (
                        f"exited with code {self._process.returncode}; its output "
                        f"ends with:\n{_read_tail(self.output_path)}"
                    )
                try:
                    response = client.get(f"{self.base_url}/health")
                    response.json()
                    return None
                except (httpx.HTTPError, ValueError):
                    time.sleep(POLL_INTERVAL)
        return (
            f"/health did not respond within {self.startup_timeout:.0f} s; "
            f"output ends with:\n{_read_tail(self.output_path)}"
        )

    def wait_until_healthy(self, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until /health reports status ok; return the body.

        The workers start only once Redis is reachable, so the first
        responses after start() may still be "degraded". Raises TimeoutError
        with the last body when the deadline passes.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                try:
                    last = client.get(f"{self.base_url}/health").json()
                except (httpx.HTTPError, ValueError) as exc:
                    last = repr(exc)
                if isinstance(last, dict) and last.get("status") == "ok":
                    return last
                time.sleep(POLL_INTERVAL)
        raise TimeoutError(
            f"backend at {self.base_url} not healthy within {timeout:.0f} s; "
            f"last /health response: {last}"
        )

    def inject(self, name: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        """Inject a fault through POST /_faults/<name>; return the JSON response."""
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.post(f"{self.base_url}/_faults/{name}", json=params)
        if response.status_code >= 400:
            raise RuntimeError(
                f"injecting fault {name} with {params} failed: "
                f"HTTP {response.status_code} {response.text[:500]}"
            )
        logger.info("Injected fault %s into %s", name, self.base_url)
        return dict(response.json())

    def clear_faults(self, timeout: float = 15.0) -> dict[str, Any]:
        """Clear the faults through DELETE /_faults; return the JSON response."""
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.delete(f"{self.base_url}/_faults")
        if response.status_code >= 400:
            raise RuntimeError(
                f"clearing faults failed: HTTP {response.status_code} "
                f"{response.text[:500]}"
            )
        return dict(response.json())

    def stop(self, *, remove_temp_dir: bool = True) -> int | None:
        """Stop the backend: SIGTERM, wait, then SIGKILL; return its exit code."""
        if self._process is not None:
            self.returncode = _stop_process(
                self._process, "reference backend", self.stop_timeout
            )
            logger.info(
                "Reference backend stopped pid=%d code=%s",
                self._process.pid,
                self.returncode,
            )
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None
        if remove_temp_dir and self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        return self.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

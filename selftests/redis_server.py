"""A bare redis-server for probe self-tests that need its command-line options.

soakcheck.services.RedisServer covers the common case; these tests also start
servers with TLS, ACL users and raw options, and talk to them as admin.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from soakcheck.services import free_port

START_DEADLINE_S = 10.0


class RedisServer:
    """A redis-server on a free loopback port in its own folder, without saves."""

    def __init__(
        self, folder: Path, *options: str, tls: tuple[Path, Path] | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server not found: install it (apt-get install redis-server)"
            )

        self.port = free_port()
        self.password = None
        if "--requirepass" in options:
            self.password = options[options.index("--requirepass") + 1]

        command = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(folder), *options]
        if tls is None:
            command += ["--port", str(self.port)]
        else:
            cert, key = tls
            command += ["--port", "0", "--tls-port", str(self.port)]
            command += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            command += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server on port {self.port} did not start in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

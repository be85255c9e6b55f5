"""Real services for the self-tests: a Redis server and the reference backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from selftests.stack import Stack, secrets_env
from soakcheck.services import RedisServer, ReferenceBackend


def _start_stack(workdir: Path) -> Iterator[Stack]:
    with (
        RedisServer() as redis,
        ReferenceBackend(
            redis_url=redis.url,
            log_file=workdir / "backend.log",
            allow_faults=True,
            heartbeat_seconds=0.5,
            env=secrets_env(),
        ) as backend,
    ):
        yield Stack(redis, backend, workdir)


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Redis and backend for the tests of a module that leave no fault behind."""
    yield from _start_stack(tmp_path_factory.mktemp("shared-stack"))


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A Redis and backend of the test's own, for faults that cannot be undone."""
    yield from _start_stack(tmp_path)

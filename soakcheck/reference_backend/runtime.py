"""Everything one backend process runs: Redis client, queues, faults, tasks."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from .fault_state import FaultState
from .processors import RECORDING_QUEUE, WEBHOOK_QUEUE, Processors
from .queues import JobQueues
from .settings import Settings

logger = logging.getLogger(__name__)

# Short socket timeouts keep /health fast when Redis hangs; the workers use
# their own BullMQ connections and are not bound by these.
REDIS_CONNECT_TIMEOUT = 1.0
REDIS_SOCKET_TIMEOUT = 2.0


class Runtime:
    """The state of one running backend, shared by its routes and tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.connection_url,
            decode_responses=True,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
        )
        self.faults = FaultState()
        self.processors = Processors(self.client, settings.prefix, self.faults)
        self.queues = JobQueues(settings, self.client, self.processors)
        self.started_monotonic = time.monotonic()
        self._heartbeat_task: asyncio.Task[None] | None = None

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the process started serving."""
        return time.monotonic() - self.started_monotonic

    async def service_flags(self) -> dict[str, bool]:
        """Return the health flags: real for Redis and workers, simulated else."""
        redis_ok = await self.queues.redis_reachable()
        flags = {
            "database": True,
            "supabase": True,
            "backgroundJobs": redis_ok and self.queues.all_workers_running(),
            "webhookQueue": redis_ok and self.queues.worker_running(WEBHOOK_QUEUE),
        }
        for name in self.faults.down_services:
            flags[name] = False
        return flags

    def start(self) -> None:
        """Start the workers and the recording-worker heartbeat."""
        self.started_monotonic = time.monotonic()
        self.queues.start()
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        fields = {"queue": RECORDING_QUEUE}
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            if self.queues.worker_running(RECORDING_QUEUE):
                logger.info(
                    "RecordingQueueWorker running normally", extra={"fields": fields}
                )
            else:
                logger.warning(
                    "RecordingQueueWorker is not running", extra={"fields": fields}
                )

    async def close(self) -> None:
        """Stop the tasks, release held jobs, close the workers and Redis."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()

        # Held jobs would keep worker.close() waiting, so they go first.
        self.faults.release_held_resources()
        await self.queues.close()
        await self.client.aclose()

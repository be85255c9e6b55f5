"""BullMQ queues and supervised workers of the reference backend."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from bullmq import Job, Queue, Worker
from bullmq.timer import Timer
from redis.exceptions import RedisError

from .logfile import error_object
from .processors import (
    QUEUE_NAMES,
    RECONCILIATION_QUEUE,
    RECORDING_QUEUE,
    WEBHOOK_QUEUE,
    Processors,
)
from .settings import Settings

logger = logging.getLogger(__name__)

# Bound on one Redis operation made for an HTTP request. The client that
# bullmq 3.4.4 for Python creates retries a lost connection 20 times with a
# backoff of up to 20 s, so without a bound a request would hang for minutes.
REDIS_OPERATION_TIMEOUT = 5.0
REDIS_PING_TIMEOUT = 0.5
WORKER_CLOSE_TIMEOUT = 3.0
WORKER_RESTART_DELAY = 2.0
REDIS_POLL_INTERVAL = 1.0
SCHEDULER_ATTEMPTS = 12

WORKER_CONCURRENCY = 4
COUNT_STATES = (
    "waiting",
    "active",
    "completed",
    "failed",
    "delayed",
    "paused",
    "prioritized",
)

NIGHTLY_SCHEDULER_ID = "nightly-reconciliation"
NIGHTLY_PATTERN = "0 3 * * *"

# Webhook and recording jobs get three attempts with exponential backoff, a
# common BullMQ setup. A reconciliation run gets one attempt, so that a failed
# run shows up at once instead of after its backoff.
RETRYING_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": {"count": 1000},
    "removeOnFail": {"count": 5000},
}
SINGLE_ATTEMPT_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 1,
    "removeOnComplete": {"count": 1000},
    "removeOnFail": {"count": 5000},
}
DEFAULT_JOB_OPTIONS = {
    WEBHOOK_QUEUE: RETRYING_JOB_OPTIONS,
    RECORDING_QUEUE: RETRYING_JOB_OPTIONS,
    RECONCILIATION_QUEUE: SINGLE_ATTEMPT_JOB_OPTIONS,
}


class QueueUnavailable(Exception):
    """Redis did not complete a queue operation in time."""


async def bounded(operation: Awaitable[Any], what: str) -> Any:
    """Await a Redis operation for at most REDIS_OPERATION_TIMEOUT seconds.

    Raises QueueUnavailable naming `what` when Redis fails or is too slow.
    """
    try:
        return await asyncio.wait_for(operation, REDIS_OPERATION_TIMEOUT)
    except (RedisError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise QueueUnavailable(f"{what} failed: {reason}") from exc


class ErrorLogLimiter:
    """Let one log line through per interval and count the ones held back."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self._last = -math.inf
        self._held_back = 0

    def allow(self) -> int | None:
        """Return how many lines were held back, or None to skip this one."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held_back += 1
            return None

        held_back = self._held_back
        self._held_back = 0
        self._last = now
        return held_back


class SupervisedWorker:
    """A BullMQ Worker, started once Redis is reachable and restarted if it stops."""

    def __init__(
        self,
        queue_name: str,
        processor: Callable[[Job, str], Awaitable[Any]],
        options: dict[str, Any],
        wait_for_redis: Callable[[], Awaitable[None]],
    ) -> None:
        self.queue_name = queue_name
        self.processor = processor
        self.options = options
        self.wait_for_redis = wait_for_redis
        self.worker: Worker | None = None
        self.stalled_checks_stopped = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._error_limiter = ErrorLogLimiter()

    @property
    def running(self) -> bool:
        """True while the worker's loop runs and it is not closing."""
        worker = self.worker
        return bool(worker and worker.running and not worker.closing)

    def start(self) -> None:
        """Start supervising the worker in the background."""
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        fields = {"queue": self.queue_name}
        while not self._closing:
            await self.wait_for_redis()
            if self._closing:
                break

            worker = Worker(
                self.queue_name, self.processor, {**self.options, "autorun": False}
            )
            worker.on("failed", self._on_failed)
            worker.on("error", self._on_error)
            self.worker = worker
            logger.info(
                "Worker started for queue %s",
                self.queue_name,
                extra={"fields": fields},
            )

            try:
                await worker.run()
            except Exception as exc:
                # The supervisor outlives any worker failure, so catch all.
                logger.error(
                    "Worker for queue %s failed: %s",
                    self.queue_name,
                    exc,
                    extra={"fields": fields},
                )
            if self._closing:
                break

            logger.warning(
                "Worker for queue %s stopped; restarting in %.0f s",
                self.queue_name,
                WORKER_RESTART_DELAY,
                extra={"fields": fields},
            )
            await self._close_worker(worker)
            await asyncio.sleep(WORKER_RESTART_DELAY)

    def _on_failed(self, job: Job, err: BaseException) -> None:
        logger.error(
            "Job %s in queue %s failed: %s",
            job.id,
            self.queue_name,
            err,
            extra={
                "fields": {
                    "queue": self.queue_name,
                    "jobId": job.id,
                    "jobName": job.name,
                    "failedReason": str(err),
                }
            },
        )

    def _on_error(self, err: BaseException, job: Job | None = None) -> None:
        # A lost Redis connection makes the worker report the same error on
        # every retry, so the log gets one line per interval with a count.
        held_back = self._error_limiter.allow()
        if held_back is None:
            return

        logger.error(
            "Worker error in queue %s: %s",
            self.queue_name,
            err,
            extra={
                "fields": {
                    "queue": self.queue_name,
                    "err": error_object(err),
                    "repeatedSinceLastLine": held_back,
                }
            },
        )

    def stop_stalled_checks(self) -> bool:
        """Stop the worker's periodic stalled-job check; False if it cannot."""
        # NOTE: this reaches into Worker.stalledCheckTimer, an attribute of
        # bullmq 3.4.4 for Python that its public API does not cover.
        timer = getattr(self.worker, "stalledCheckTimer", None)
        if not isinstance(timer, Timer):
            return False

        timer.stop()
        self.stalled_checks_stopped = True
        logger.info(
            "Stalled-job checks stopped for queue %s",
            self.queue_name,
            extra={"fields": {"queue": self.queue_name}},
        )
        return True

    def restart_stalled_checks(self) -> None:
        """Start the stalled-job check again after stop_stalled_checks."""
        worker = self.worker
        if not self.stalled_checks_stopped or worker is None:
            return

        self.stalled_checks_stopped = False
        if not self.running:
            return

        interval = worker.opts["stalledInterval"] / 1000
        worker.stalledCheckTimer = Timer(
            interval, worker.runStalledJobsCheck, worker.emit
        )
        logger.info(
            "Stalled-job checks restarted for queue %s",
            self.queue_name,
            extra={"fields": {"queue": self.queue_name}},
        )

    async def _close_worker(self, worker: Worker) -> None:
        closing = asyncio.ensure_future(worker.close())
        done, _ = await asyncio.wait({closing}, timeout=WORKER_CLOSE_TIMEOUT)
        if done:
            return

        # Jobs still running, or retries sleeping while Redis is away, keep
        # close() waiting; cancelling them lets it finish.
        logger.warning(
            "Worker for queue %s did not close within %.0f s; cancelling its jobs",
            self.queue_name,
            WORKER_CLOSE_TIMEOUT,
            extra={"fields": {"queue": self.queue_name}},
        )
        worker.cancelProcessing()
        done, _ = await asyncio.wait({closing}, timeout=WORKER_CLOSE_TIMEOUT)
        if not done:
            closing.cancel()

    async def close(self) -> None:
        """Close the worker, waiting a bounded time for running jobs."""
        self._closing = True
        if self.worker is not None:
            await self._close_worker(self.worker)

        # With the worker closed, the supervisor only waits for Redis or for
        # its restart delay, so it can be cancelled at once.
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=WORKER_CLOSE_TIMEOUT)
        logger.info(
            "Worker closed for queue %s",
            self.queue_name,
            extra={"fields": {"queue": self.queue_name}},
        )


class JobQueues:
    """The three queues of the billing service and their workers."""

    def __init__(
        self, settings: Settings, client: aioredis.Redis, processors: Processors
    ) -> None:
        self.settings = settings
        self.client = client
        self.prefix = settings.prefix
        connection = {"connection": settings.connection_url, "prefix": settings.prefix}
        self.queues = {name: Queue(name, dict(connection)) for name in QUEUE_NAMES}

        worker_options = {
            **connection,
            "concurrency": WORKER_CONCURRENCY,
            "stalledInterval": int(settings.stalled_interval_seconds * 1000),
        }
        handlers = {
            WEBHOOK_QUEUE: processors.webhook,
            RECORDING_QUEUE: processors.recording,
            RECONCILIATION_QUEUE: processors.reconciliation,
        }
        self.workers = {
            name: SupervisedWorker(
                name, handlers[name], dict(worker_options), self.wait_for_redis
            )
            for name in QUEUE_NAMES
        }
        self._redis_limiter = ErrorLogLimiter()
        self._scheduler_task: asyncio.Task[None] | None = None

    def job_key(self, queue: str, job_id: str) -> str:
        """Return the Redis key of a job's hash, as BullMQ names it."""
        return f"{self.prefix}:{queue}:{job_id}"

    def queue_key(self, queue: str, suffix: str) -> str:
        """Return a queue-level key such as `bull:<queue>:active`."""
        return f"{self.prefix}:{queue}:{suffix}"

    async def redis_reachable(self, timeout: float = REDIS_PING_TIMEOUT) -> bool:
        """Return True when Redis replies to PING within `timeout` seconds."""
        try:
            return bool(await asyncio.wait_for(self.client.ping(), timeout))
        except (RedisError, OSError, TimeoutError):
            return False

    async def wait_for_redis(self) -> None:
        """Wait until Redis replies to PING, logging while it does not."""
        while not await self.redis_reachable(timeout=REDIS_POLL_INTERVAL):
            held_back = self._redis_limiter.allow()
            if held_back is not None:
                logger.warning(
                    "Redis at %s is not reachable (PING failed); workers wait for it",
                    self.settings.redacted_redis_url,
                )
            await asyncio.sleep(REDIS_POLL_INTERVAL)

    def start(self) -> None:
        """Start the workers and register the nightly reconciliation."""
        for worker in self.workers.values():
            worker.start()
        self._scheduler_task = asyncio.create_task(self._register_nightly_run())

    async def _register_nightly_run(self) -> None:
        queue = self.queues[RECONCILIATION_QUEUE]
        for attempt in range(1, SCHEDULER_ATTEMPTS + 1):
            await self.wait_for_redis()
            try:
                await asyncio.wait_for(
                    queue.upsertJobScheduler(
                        NIGHTLY_SCHEDULER_ID,
                        {"pattern": NIGHTLY_PATTERN, "tz": "UTC"},
                        NIGHTLY_SCHEDULER_ID,
                        {"trigger": "schedule"},
                        SINGLE_ATTEMPT_JOB_OPTIONS,
                    ),
                    REDIS_OPERATION_TIMEOUT,
                )
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning(
                    "Registering the nightly reconciliation failed "
                    "(attempt %d of %d): %s",
                    attempt,
                    SCHEDULER_ATTEMPTS,
                    exc,
                )
                await asyncio.sleep(REDIS_OPERATION_TIMEOUT)
                continue

            logger.info(
                "Nightly reconciliation scheduled with cron %s UTC",
                NIGHTLY_PATTERN,
                extra={"fields": {"queue": RECONCILIATION_QUEUE}},
            )
            return

        logger.error(
            "Nightly reconciliation not scheduled after %d attempts", SCHEDULER_ATTEMPTS
        )

    def worker_running(self, queue: str) -> bool:
        """True while the worker of `queue` runs."""
        return self.workers[queue].running

    def all_workers_running(self) -> bool:
        """True while every worker runs."""
        return all(worker.running for worker in self.workers.values())

    async def add(
        self,
        queue: str,
        name: str,
        data: Any,
        options: dict[str, Any] | None = None,
    ) -> Job:
        """Add a job with the queue's default options; raise QueueUnavailable."""
        merged = {**DEFAULT_JOB_OPTIONS[queue], **(options or {})}
        operation = self.queues[queue].add(name, data, merged)
        return await bounded(operation, f"adding a job to {queue}")

    async def counts(self) -> dict[str, dict[str, int]]:
        """Return the job counts of every queue by state."""
        result = {}
        for name, queue in self.queues.items():
            operation = queue.getJobCounts(*COUNT_STATES)
            counts = await bounded(operation, f"counting jobs of {name}")
            result[name] = {state: int(counts.get(state, 0)) for state in COUNT_STATES}
        return result

    async def job_state(self, queue: str, job_id: str) -> tuple[Job | None, str]:
        """Return a job and its state name, or (None, "unknown")."""
        bullmq_queue = self.queues[queue]

        # The state goes first: BullMQ writes failedReason and moves the job
        # to failed in one script, so a hash read after a terminal state
        # always carries the final fields.
        state = await bounded(
            bullmq_queue.getJobState(job_id), f"reading the state of job {job_id}"
        )
        job = await bounded(bullmq_queue.getJob(job_id), f"reading job {job_id}")
        if job is None:
            return None, "unknown"
        return job, str(state)

    async def close(self) -> None:
        """Close the workers, then the queues."""
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()

        await asyncio.gather(*(worker.close() for worker in self.workers.values()))
        for name, queue in self.queues.items():
            try:
                await asyncio.wait_for(queue.close(), WORKER_CLOSE_TIMEOUT)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.warning("Closing queue %s failed: %s", name, exc)

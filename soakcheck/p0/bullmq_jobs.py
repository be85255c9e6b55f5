"""Add a BullMQ job and read a job's state, straight from Redis.

BullMQ keeps a job's hash at `<prefix>:<queue>:<id>` and the ids of finished
jobs in the sorted sets `<prefix>:<queue>:completed` and `:failed`. A job
whose attempt failed but will be retried is in neither set, so membership
of one of them is final.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from bullmq import Queue

from soakcheck.probes.errors import ProbeError

log = logging.getLogger(__name__)

FINAL_STATES = ("completed", "failed")


@dataclass
class JobStatus:
    """A job's state: completed, failed, pending or missing.

    Pending covers waiting, active and delayed. Missing means the job was
    never added, or was removed after it finished.
    """

    queue: str
    job_id: str
    state: str
    failed_reason: str | None = None
    return_value: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def describe(self) -> str:
        text = f"job {self.job_id} of {self.queue}: {self.state}"
        if self.failed_reason:
            text += f" ({self.failed_reason})"
        return text


def job_key(prefix: str, queue: str, suffix: str) -> str:
    return f"{prefix}:{queue}:{suffix}"


def read_job_status(
    client: redis.Redis, prefix: str, queue: str, job_id: str
) -> JobStatus:
    """Read one job's state with four O(1) commands; raise ProbeError if Redis fails."""
    pipe = client.pipeline(transaction=False)
    pipe.zscore(job_key(prefix, queue, "completed"), job_id)
    pipe.zscore(job_key(prefix, queue, "failed"), job_id)
    pipe.exists(job_key(prefix, queue, job_id))
    pipe.hmget(job_key(prefix, queue, job_id), ["failedReason", "returnvalue"])
    try:
        completed, failed, exists, (failed_reason, return_value) = pipe.execute()
    except redis.RedisError as error:
        raise ProbeError(f"reading job {job_id} of {queue} failed: {error}") from None

    if completed is not None:
        state = "completed"
        # A retried job keeps the reason of its failed attempt.
        failed_reason = None
    elif failed is not None:
        state = "failed"
    elif exists:
        state = "pending"
    else:
        state = "missing"
    return JobStatus(queue, job_id, state, failed_reason or None, return_value)


def add_job(
    url: str,
    password: str | None,
    prefix: str,
    queue: str,
    name: str,
    data: dict[str, Any],
    *,
    timeout_s: float,
) -> str:
    """Add a job through BullMQ's own scripts and return its id."""
    try:
        return asyncio.run(
            asyncio.wait_for(
                _add_job(url, password, prefix, queue, name, data, timeout_s),
                timeout_s,
            )
        )
    except TimeoutError:
        raise ProbeError(
            f"adding a job to queue {queue} timed out after {timeout_s:g} s"
        ) from None
    except (redis.RedisError, OSError) as error:
        raise ProbeError(f"adding a job to queue {queue} failed: {error}") from None


async def _add_job(
    url: str,
    password: str | None,
    prefix: str,
    queue: str,
    name: str,
    data: dict[str, Any],
    timeout_s: float,
) -> str:
    client = aioredis.Redis.from_url(
        url,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
    )
    bull_queue = Queue(queue, {"connection": client, "prefix": prefix})
    try:
        job = await bull_queue.add(name, data, {"attempts": 1})
    finally:
        await bull_queue.close()
        await client.aclose()
    log.info("job added queue=%s id=%s name=%s", queue, job.id, name)
    return str(job.id)

"""Job processors of the three BullMQ queues, with the hooks the faults use."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import Job

from .fault_state import FAULT_MARKER, FaultState

logger = logging.getLogger(__name__)

WEBHOOK_QUEUE = "webhook-processing"
RECORDING_QUEUE = "recording-upload"
RECONCILIATION_QUEUE = "billing-reconciliation"
QUEUE_NAMES = (WEBHOOK_QUEUE, RECORDING_QUEUE, RECONCILIATION_QUEUE)

# Redis keys of the billing data, outside the BullMQ prefix.
DEBT_KEY = "billing:debt-cents"
CHARGES_KEY = "billing:charges"

# Failure messages of the failed_job fault, one per queue, worded like the
# errors these jobs meet in production.
FAILED_JOB_REASONS = {
    WEBHOOK_QUEUE: "Stripe API request failed: connect ETIMEDOUT after 80000 ms",
    RECORDING_QUEUE: "Upload to object storage failed: socket hang up (ECONNRESET)",
    RECONCILIATION_QUEUE: "Reconciliation aborted: ledger query timed out after 30 s",
}
RECONCILIATION_MISMATCH = (
    "Reconciliation failed: ledger total does not match the Stripe balance"
)


class InjectedJobFailure(Exception):
    """A job failure caused on purpose by a fault."""


class Processors:
    """The work done for each job, with access to Redis and the fault state."""

    def __init__(self, client: aioredis.Redis, prefix: str, faults: FaultState) -> None:
        self.client = client
        self.prefix = prefix
        self.faults = faults

    def job_key(self, queue: str, job_id: str) -> str:
        """Return the Redis key of a job's hash, as BullMQ names it."""
        return f"{self.prefix}:{queue}:{job_id}"

    async def _handle_fault_job(self, queue: str, job: Job) -> bool:
        """Run a job created by a fault; return False for an ordinary job."""
        data = job.data if isinstance(job.data, dict) else {}
        fault = data.get(FAULT_MARKER)
        if fault is None:
            return False

        if fault == "failed_job":
            raise InjectedJobFailure(FAILED_JOB_REASONS[queue])

        if fault == "long_running_job":
            await self._hold_long_running(queue, job, data)
        elif fault == "stalled_job":
            logger.info(
                "Recovered stalled job %s in queue %s",
                job.id,
                queue,
                extra={"fields": {"queue": queue, "jobId": job.id}},
            )
        return True

    async def _hold_long_running(
        self, queue: str, job: Job, data: dict[str, Any]
    ) -> None:
        hold = self.faults.long_running.get(str(data.get("holdId")))
        if hold is None:
            return

        # The worker set processedOn when it took the job. Moving it back makes
        # the job look active for `minutes` while the worker keeps renewing
        # its lock, as happens with a genuinely slow job.
        started_ms = int((time.time() - hold.minutes * 60) * 1000)
        await self.client.hset(self.job_key(queue, job.id), "processedOn", started_ms)
        hold.job_id = job.id
        hold.started.set()
        logger.info(
            "Long-running job %s in queue %s is held until the fault is cleared",
            job.id,
            queue,
            extra={"fields": {"queue": queue, "jobId": job.id}},
        )
        await hold.release.wait()

    async def webhook(self, job: Job, token: str) -> Any:
        """Process one verified Stripe event."""
        if await self._handle_fault_job(WEBHOOK_QUEUE, job):
            return None

        event = job.data if isinstance(job.data, dict) else {}
        event_id = event.get("id", job.id)
        event_type = event.get("type", job.name)
        logger.info(
            "Processed Stripe event %s type=%s",
            event_id,
            event_type,
            extra={"fields": {"queue": WEBHOOK_QUEUE, "jobId": job.id}},
        )
        return {"eventId": event_id}

    async def recording(self, job: Job, token: str) -> Any:
        """Upload one call recording, simulated by a short sleep."""
        if await self._handle_fault_job(RECORDING_QUEUE, job):
            return None

        await asyncio.sleep(0.05)
        data = job.data if isinstance(job.data, dict) else {}
        recording_id = data.get("recordingId", job.id)
        logger.info(
            "Recording %s uploaded",
            recording_id,
            extra={"fields": {"queue": RECORDING_QUEUE, "jobId": job.id}},
        )
        return {"recordingId": recording_id}

    async def reconciliation(self, job: Job, token: str) -> Any:
        """Reconcile the recorded charges; this reference version only counts them."""
        if await self._handle_fault_job(RECONCILIATION_QUEUE, job):
            return None

        fields = {"queue": RECONCILIATION_QUEUE, "jobId": job.id}
        logger.info("Reconciliation started run=%s", job.id, extra={"fields": fields})

        charges = await self.client.llen(CHARGES_KEY)
        customers = await self.client.hlen(DEBT_KEY)
        if self.faults.reconciliation_fails:
            raise InjectedJobFailure(RECONCILIATION_MISMATCH)

        logger.info(
            "Reconciliation completed run=%s charges=%d",
            job.id,
            charges,
            extra={"fields": {**fields, "customers": customers}},
        )
        return {"charges": charges, "customers": customers}

"""Fault injection: the /_faults routes and what each fault does.

The routes exist only when faults are allowed (--allow-faults or
SOAK_REFERENCE_FAULTS=1). POST /_faults/<name> injects one fault with
optional JSON parameters, GET /_faults lists the active ones and DELETE
/_faults clears every fault that can be undone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.typing import EncodableT, FieldT
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .fault_state import FAULT_MARKER, SERVICE_NAMES, FaultState, LongRunningHold
from .processors import (
    QUEUE_NAMES,
    RECONCILIATION_QUEUE,
    RECORDING_QUEUE,
    WEBHOOK_QUEUE,
)
from .queues import QueueUnavailable, bounded
from .runtime import Runtime
from .web import json_error, read_json_object, runtime_of

logger = logging.getLogger(__name__)

MAX_MEMORY_MB = 4096
PAGE_SIZE = 4096
LEAK_STEP_SECONDS = 0.25
FAULT_JOB_WAIT_SECONDS = 5.0
CRASH_DELAY_SECONDS = 0.2

# Job names the fault jobs carry, matching what each queue normally holds.
FAULT_JOB_NAMES = {
    WEBHOOK_QUEUE: "invoice.payment_succeeded",
    RECORDING_QUEUE: "upload-recording",
    RECONCILIATION_QUEUE: "manual-reconciliation",
}

# The page nginx returns when its upstream backend is down.
BAD_GATEWAY_PAGE = """<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""

# Error lines for the error_logs fault, shaped like pino's `err` field.
ERROR_LOG_SAMPLES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "Stripe API request failed",
        {
            "type": "StripeConnectionError",
            "message": "An error occurred with our connection to Stripe",
            "stack": "StripeConnectionError: An error occurred with our connection"
            " to Stripe\n    at /app/dist/billing/stripe-client.js:88:19",
        },
    ),
    (
        "Failed to upload recording to object storage",
        {
            "type": "Error",
            "message": "socket hang up",
            "code": "ECONNRESET",
            "stack": "Error: socket hang up\n    at TLSSocket.socketOnEnd"
            " (node:_http_client:524:23)",
        },
    ),
    (
        "Database query failed",
        {
            "type": "Error",
            "message": "Connection terminated due to connection timeout",
            "stack": "Error: Connection terminated due to connection timeout\n"
            "    at /app/node_modules/pg-pool/index.js:45:11",
        },
    ),
)


class FaultRejected(Exception):
    """Fault parameters that are invalid; the message names value and fix."""


class FaultParams:
    """The JSON parameters of one fault request, read with validation."""

    def __init__(self, fault: str, values: dict[str, Any]) -> None:
        self.fault = fault
        self.values = values
        self._read: set[str] = set()

    def _get(self, name: str, default: Any) -> Any:
        self._read.add(name)
        return self.values.get(name, default)

    def number(
        self, name: str, default: float, minimum: float, maximum: float
    ) -> float:
        """Read a number within [minimum, maximum]."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FaultRejected(f"{self.fault}: {name} must be a number, got {value!r}")
        if not minimum <= value <= maximum:
            raise FaultRejected(
                f"{self.fault}: {name}={value} is out of range; "
                f"use {minimum} to {maximum}"
            )
        return float(value)

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        """Read an integer within [minimum, maximum]."""
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultRejected(
                f"{self.fault}: {name} must be an integer, got {value!r}"
            )
        if not minimum <= value <= maximum:
            raise FaultRejected(
                f"{self.fault}: {name}={value} is out of range; "
                f"use {minimum} to {maximum}"
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """Read a JSON boolean."""
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise FaultRejected(
                f"{self.fault}: {name} must be true or false, got {value!r}"
            )
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """Read a string that must be one of `choices`."""
        value = self._get(name, default)
        if value not in choices:
            raise FaultRejected(
                f"{self.fault}: {name}={value!r} is not valid; "
                f"use one of {', '.join(choices)}"
            )
        return str(value)

    def finish(self) -> None:
        """Reject parameters that the fault does not read."""
        unknown = sorted(set(self.values) - self._read)
        if unknown:
            expected = ", ".join(sorted(self._read)) or "none"
            raise FaultRejected(
                f"{self.fault}: unknown parameter(s) {', '.join(unknown)}; "
                f"expected: {expected}"
            )


def allocate_touched(size_bytes: int) -> bytearray:
    """Allocate memory and write to every page, so resident memory grows."""
    block = bytearray(size_bytes)
    # A page that is never written may stay unbacked by RAM; one write per
    # page makes RSS grow by the whole size whatever the allocator does.
    block[::PAGE_SIZE] = b"\x01" * len(range(0, size_bytes, PAGE_SIZE))
    return block


async def _service_down(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    service = params.choice("service", "webhookQueue", SERVICE_NAMES)
    params.finish()
    runtime.faults.down_services.add(service)
    return {"service": service}


async def _memory_grow(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    mb = params.integer("mb", 300, 1, MAX_MEMORY_MB)
    params.finish()
    block = await asyncio.to_thread(allocate_touched, mb * 2**20)
    runtime.faults.memory_blocks.append(block)
    return {"mb": mb, "heldMb": runtime.faults.memory_bytes / 2**20}


async def _leak_memory(faults: FaultState, mb_per_second: float, max_mb: int) -> None:
    step_bytes = max(PAGE_SIZE, int(mb_per_second * 2**20 * LEAK_STEP_SECONDS))
    max_bytes = max_mb * 2**20
    leaked = 0

    while leaked + step_bytes <= max_bytes:
        faults.memory_blocks.append(allocate_touched(step_bytes))
        leaked += step_bytes
        await asyncio.sleep(LEAK_STEP_SECONDS)
    logger.info("memory_leak fault reached its cap of %d MB", max_mb)


async def _memory_leak(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    mb_per_second = params.number("mb_per_second", 20, 0.01, 1024)
    max_mb = params.integer("max_mb", 2000, 1, MAX_MEMORY_MB)
    params.finish()

    faults = runtime.faults
    if faults.leak_task is not None:
        faults.leak_task.cancel()
    faults.leak_task = asyncio.create_task(_leak_memory(faults, mb_per_second, max_mb))
    return {"mb_per_second": mb_per_second, "max_mb": max_mb}


async def _error_logs(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    count = params.integer("count", 3, 1, 1000)
    params.finish()
    for index in range(count):
        message, err = ERROR_LOG_SAMPLES[index % len(ERROR_LOG_SAMPLES)]
        logger.error(message, extra={"fields": {"err": err, "simulated": True}})
    return {"count": count}


async def _fatal_log(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    params.finish()
    logger.critical(
        "Uncaught exception in the billing service",
        extra={
            "fields": {
                "err": {
                    "type": "TypeError",
                    "message": "Cannot read properties of undefined "
                    "(reading 'customer')",
                    "stack": "TypeError: Cannot read properties of undefined "
                    "(reading 'customer')\n    at /app/dist/billing/invoices.js:41:27",
                },
                "simulated": True,
            }
        },
    )
    return {}


async def _wait_for_states(
    runtime: Runtime, queue: str, job_ids: list[str], wanted: str
) -> dict[str, str]:
    deadline = time.monotonic() + FAULT_JOB_WAIT_SECONDS
    states: dict[str, str] = {}
    while True:
        for job_id in job_ids:
            _, states[job_id] = await runtime.queues.job_state(queue, job_id)
        if all(state == wanted for state in states.values()):
            return states
        if time.monotonic() >= deadline:
            logger.warning(
                "Fault jobs in queue %s did not all reach state %s within %.0f s: %s",
                queue,
                wanted,
                FAULT_JOB_WAIT_SECONDS,
                states,
            )
            return states
        await asyncio.sleep(0.05)


async def _failed_job(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    queue = params.choice("queue", WEBHOOK_QUEUE, QUEUE_NAMES)
    count = params.integer("count", 1, 1, 100)
    params.finish()

    job_ids = []
    for _ in range(count):
        job = await runtime.queues.add(
            queue, FAULT_JOB_NAMES[queue], {FAULT_MARKER: "failed_job"}, {"attempts": 1}
        )
        job_ids.append(str(job.id))
        runtime.faults.failed_jobs.append((queue, str(job.id)))

    states = await _wait_for_states(runtime, queue, job_ids, "failed")
    return {"queue": queue, "jobIds": job_ids, "states": states}


async def _stalled_job(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    queue = params.choice("queue", WEBHOOK_QUEUE, QUEUE_NAMES)
    minutes = params.number("minutes", 15, 0, 7 * 24 * 60)
    hold = params.boolean("hold", True)
    params.finish()

    queues = runtime.queues
    # The worker's stalled check would see the missing lock and move the job
    # back to wait within one or two stalled intervals (its recovery path).
    # With hold=true the check stops until the fault is cleared, as when no
    # live worker runs the check for this queue.
    checks_stopped = False
    if hold:
        checks_stopped = queues.workers[queue].stop_stalled_checks()
        if checks_stopped:
            runtime.faults.held_stalled_checks.add(queue)
        else:
            logger.warning(
                "Worker for queue %s is not running, so its stalled check "
                "cannot be stopped",
                queue,
            )

    # BullMQ's layout of a job a worker took and then lost: the job hash with
    # processedOn set when the worker took it, the id pushed on the left of
    # the active list (as moveToActive does), and no <job key>:lock string.
    # The id comes from the queue's own counter, as for any added job.
    counter = runtime.client.incr(queues.queue_key(queue, "id"))
    job_id = str(await bounded(counter, f"allocating a job id in {queue}"))
    now_ms = int(time.time() * 1000)
    processed_on = now_ms - int(minutes * 60_000)

    job_hash: dict[FieldT, EncodableT] = {
        "name": FAULT_JOB_NAMES[queue],
        "data": json.dumps({FAULT_MARKER: "stalled_job"}),
        "opts": json.dumps({"attempts": 1}),
        "timestamp": processed_on - 1000,
        "delay": 0,
        "priority": 0,
        "processedOn": processed_on,
        "ats": 1,
    }

    pipeline = runtime.client.pipeline(transaction=True)
    pipeline.hset(queues.job_key(queue, job_id), mapping=job_hash)
    pipeline.lpush(queues.queue_key(queue, "active"), job_id)
    await bounded(pipeline.execute(), f"creating a stalled job in {queue}")
    runtime.faults.stalled_jobs.append((queue, job_id))

    return {
        "queue": queue,
        "jobId": job_id,
        "processedOn": processed_on,
        "stalledChecksStopped": checks_stopped,
    }


async def _long_running_job(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    queue = params.choice("queue", WEBHOOK_QUEUE, QUEUE_NAMES)
    minutes = params.number("minutes", 15, 0, 7 * 24 * 60)
    params.finish()

    hold_id = uuid.uuid4().hex
    hold = LongRunningHold(queue=queue, minutes=minutes)
    runtime.faults.long_running[hold_id] = hold

    data = {FAULT_MARKER: "long_running_job", "holdId": hold_id}
    job = await runtime.queues.add(queue, FAULT_JOB_NAMES[queue], data, {"attempts": 1})
    try:
        await asyncio.wait_for(hold.started.wait(), FAULT_JOB_WAIT_SECONDS)
    except TimeoutError:
        logger.warning(
            "Long-running job %s in queue %s was not taken by a worker within %.0f s",
            job.id,
            queue,
            FAULT_JOB_WAIT_SECONDS,
        )
    return {"queue": queue, "jobId": job.id, "started": hold.started.is_set()}


async def _pause_queue(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    queue = params.choice("queue", WEBHOOK_QUEUE, QUEUE_NAMES)
    params.finish()
    await bounded(runtime.queues.queues[queue].pause(), f"pausing {queue}")
    runtime.faults.paused_queues.add(queue)
    return {"queue": queue}


async def _slow_health(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    delay_ms = params.integer("delay_ms", 300, 0, 60_000)
    params.finish()
    runtime.faults.health_delay_ms = delay_ms
    return {"delay_ms": delay_ms}


async def _invalid_health(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    params.finish()
    runtime.faults.invalid_health = True
    return {}


async def _crash(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
    exit_code = params.integer("exit_code", 1, 0, 255)
    params.finish()
    logger.critical(
        "Unhandled promise rejection: billing worker state is corrupt; "
        "exiting with code %d",
        exit_code,
        extra={"fields": {"exitCode": exit_code, "simulated": True}},
    )
    # os._exit skips the shutdown hooks, as a crashing Node.js process does;
    # the delay lets the HTTP response go out first.
    asyncio.get_running_loop().call_later(CRASH_DELAY_SECONDS, os._exit, exit_code)
    return {"exitCode": exit_code, "exitInSeconds": CRASH_DELAY_SECONDS}


FaultHandler = Callable[[Runtime, FaultParams], Awaitable[dict[str, Any]]]


def _flag_fault(attribute: str) -> FaultHandler:
    async def set_flag(runtime: Runtime, params: FaultParams) -> dict[str, Any]:
        params.finish()
        setattr(runtime.faults, attribute, True)
        return {}

    return set_flag


FAULT_HANDLERS: dict[str, FaultHandler] = {
    "service_down": _service_down,
    "memory_leak": _memory_leak,
    "memory_grow": _memory_grow,
    "error_logs": _error_logs,
    "fatal_log": _fatal_log,
    "failed_job": _failed_job,
    "stalled_job": _stalled_job,
    "long_running_job": _long_running_job,
    "pause_queue": _pause_queue,
    "slow_health": _slow_health,
    "invalid_health": _invalid_health,
    "crash": _crash,
    "accept_bad_signature": _flag_fault("accept_bad_signature"),
    "process_duplicates": _flag_fault("process_duplicates"),
    "debt_limit_off": _flag_fault("debt_limit_off"),
    "reconciliation_fails": _flag_fault("reconciliation_fails"),
}


async def _remove_job(runtime: Runtime, queue: str, job_id: str) -> None:
    try:
        removed = await bounded(
            runtime.queues.queues[queue].remove(job_id), f"removing job {job_id}"
        )
    except QueueUnavailable as exc:
        logger.error("Could not remove fault job %s from %s: %s", job_id, queue, exc)
        return

    if not removed:
        logger.warning("Fault job %s in queue %s was not removed", job_id, queue)


async def clear_faults(runtime: Runtime, keep_jobs: bool) -> list[str]:
    """Undo every fault that can be undone; return the names that were active."""
    faults = runtime.faults
    cleared = sorted(faults.describe())

    faults.down_services.clear()
    faults.health_delay_ms = 0
    faults.invalid_health = False
    faults.accept_bad_signature = False
    faults.process_duplicates = False
    faults.debt_limit_off = False
    faults.reconciliation_fails = False
    faults.release_held_resources()

    # The fake stalled jobs go before the stalled checks restart, or a check
    # could move them to wait and a worker would run them.
    to_remove = list(faults.stalled_jobs)
    if not keep_jobs:
        to_remove += faults.failed_jobs
        faults.failed_jobs.clear()
    faults.stalled_jobs.clear()
    for queue, job_id in to_remove:
        await _remove_job(runtime, queue, job_id)

    for queue in sorted(faults.held_stalled_checks):
        runtime.queues.workers[queue].restart_stalled_checks()
    faults.held_stalled_checks.clear()

    for queue in sorted(faults.paused_queues):
        try:
            await bounded(runtime.queues.queues[queue].resume(), f"resuming {queue}")
        except QueueUnavailable as exc:
            logger.error("Could not resume queue %s: %s", queue, exc)
    faults.paused_queues.clear()
    return cleared


async def inject_fault(request: Request) -> JSONResponse:
    """POST /_faults/<name>: inject one fault."""
    name = request.path_params["name"]
    handler = FAULT_HANDLERS.get(name)
    if handler is None:
        return json_error(
            404, "unknown_fault", fault=name, known=sorted(FAULT_HANDLERS)
        )

    values = await read_json_object(request, required=False)
    runtime = runtime_of(request)
    try:
        details = await handler(runtime, FaultParams(name, values))
    except FaultRejected as exc:
        logger.warning("Fault %s rejected: %s", name, exc)
        return json_error(400, "invalid_fault_parameters", fault=name, message=str(exc))

    logger.info(
        "Fault injected: %s",
        name,
        extra={"fields": {"fault": name, "params": values}},
    )
    return JSONResponse({"fault": name, **details})


async def list_faults(request: Request) -> JSONResponse:
    """GET /_faults: list the active faults."""
    return JSONResponse({"active": runtime_of(request).faults.describe()})


async def delete_faults(request: Request) -> JSONResponse:
    """DELETE /_faults: clear the faults; ?keep_jobs=true keeps failed jobs."""
    keep_jobs = request.query_params.get("keep_jobs", "").lower() in ("1", "true")
    cleared = await clear_faults(runtime_of(request), keep_jobs)
    logger.info("Faults cleared: %s", ", ".join(cleared) or "none")
    return JSONResponse({"cleared": cleared})


def fault_routes() -> list[Route]:
    """Return the /_faults routes."""
    return [
        Route("/_faults", list_faults, methods=["GET"]),
        Route("/_faults", delete_faults, methods=["DELETE"]),
        Route("/_faults/{name}", inject_fault, methods=["POST"]),
    ]

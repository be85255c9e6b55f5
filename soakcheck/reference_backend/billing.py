"""Billing routes: charges under a debt limit, and reconciliation runs."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .processors import CHARGES_KEY, DEBT_KEY, RECONCILIATION_QUEUE
from .queues import bounded
from .web import (
    InvalidRequest,
    bearer_token_valid,
    json_error,
    read_json_object,
    runtime_of,
    unauthorized,
)

logger = logging.getLogger(__name__)

MAX_CUSTOMER_ID_LENGTH = 200
MAX_AMOUNT_CENTS = 100_000_000
# The charge log is capped so that a long soak does not grow Redis without end.
MAX_CHARGES_KEPT = 10_000

# Check and increment in one script, so two concurrent charges cannot both
# pass the limit. A negative limit turns the check off.
CHARGE_SCRIPT = """
local debt = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if limit >= 0 and debt + amount > limit then
  return {0, debt}
end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], amount)
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
return {1, total}
"""


def parse_charge(body: dict[str, Any]) -> tuple[str, int]:
    """Validate a charge request; return (customerId, amountCents)."""
    customer_id = body.get("customerId")
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise InvalidRequest("customerId", "customerId must be a non-empty string")
    if len(customer_id) > MAX_CUSTOMER_ID_LENGTH:
        raise InvalidRequest(
            "customerId",
            f"customerId must be at most {MAX_CUSTOMER_ID_LENGTH} characters",
        )

    amount = body.get("amountCents")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest(
            "amountCents", f"amountCents must be an integer, got {amount!r}"
        )
    if not 0 < amount <= MAX_AMOUNT_CENTS:
        raise InvalidRequest(
            "amountCents",
            f"amountCents must be between 1 and {MAX_AMOUNT_CENTS}, got {amount}",
        )
    return customer_id, amount


async def create_charge(request: Request) -> JSONResponse:
    """Charge a customer unless the charge takes their debt over the limit."""
    runtime = runtime_of(request)
    body = await read_json_object(request, required=True)
    customer_id, amount = parse_charge(body)

    limit = runtime.settings.debt_limit_cents
    checked_limit = -1 if runtime.faults.debt_limit_off else limit
    charge_id = f"ch_{uuid.uuid4().hex[:24]}"
    record = json.dumps(
        {
            "chargeId": charge_id,
            "customerId": customer_id,
            "amountCents": amount,
            "time": int(time.time() * 1000),
        }
    )
    script = runtime.client.register_script(CHARGE_SCRIPT)
    operation = script(
        keys=[DEBT_KEY, CHARGES_KEY],
        args=[customer_id, amount, checked_limit, record, MAX_CHARGES_KEPT],
    )
    accepted, debt = await bounded(operation, f"charging customer {customer_id}")

    fields = {"customerId": customer_id, "amountCents": amount, "limitCents": limit}
    if not accepted:
        logger.warning(
            "Charge rejected: debt %d + amount %d cents exceeds the limit of %d",
            debt,
            amount,
            limit,
            extra={"fields": {**fields, "debtCents": debt}},
        )
        return json_error(
            402, "debt_limit_exceeded", limitCents=limit, debtCents=int(debt)
        )

    logger.info(
        "Charge %s created",
        charge_id,
        extra={"fields": {**fields, "debtCents": debt}},
    )
    return JSONResponse(
        {
            "chargeId": charge_id,
            "customerId": customer_id,
            "amountCents": amount,
            "debtCents": int(debt),
            "limitCents": limit,
        },
        status_code=201,
    )


async def start_reconciliation(request: Request) -> JSONResponse:
    """Queue a manual reconciliation run (bearer token required)."""
    if not bearer_token_valid(request):
        return unauthorized()

    runtime = runtime_of(request)
    data = {"trigger": "manual", "requestedAt": datetime.now(UTC).isoformat()}
    job = await runtime.queues.add(RECONCILIATION_QUEUE, "manual-reconciliation", data)
    logger.info(
        "Reconciliation run %s queued",
        job.id,
        extra={"fields": {"queue": RECONCILIATION_QUEUE, "jobId": job.id}},
    )
    return JSONResponse({"jobId": job.id}, status_code=202)


async def reconciliation_status(request: Request) -> JSONResponse:
    """Return the state of a reconciliation run (bearer token required)."""
    if not bearer_token_valid(request):
        return unauthorized()

    job_id = request.path_params["job_id"]
    job, state = await runtime_of(request).queues.job_state(
        RECONCILIATION_QUEUE, job_id
    )
    if job is None:
        return json_error(404, "job_not_found", jobId=job_id)

    return JSONResponse(
        {
            "jobId": job_id,
            "state": state,
            "failedReason": job.failedReason or None,
            "result": job.returnvalue,
        }
    )

"""POST /api/webhooks/stripe: verify, deduplicate and enqueue Stripe events."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import stripe
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from .processors import WEBHOOK_QUEUE
from .queues import REDIS_OPERATION_TIMEOUT, QueueUnavailable, bounded
from .web import json_error, runtime_of

logger = logging.getLogger(__name__)

# Same as stripe-python's Webhook.DEFAULT_TOLERANCE: 300 s.
SIGNATURE_TOLERANCE_SECONDS = 300
# Stripe's webhook documentation says live-mode deliveries are retried for up
# to three days, so a week of remembered ids covers every retry.
DEDUPE_TTL_SECONDS = 7 * 24 * 3600


def dedupe_key(event_id: str) -> str:
    """Return the Redis key that marks a Stripe event id as received."""
    return f"billing:stripe-event:{event_id}"


def parse_event(payload: bytes) -> dict[str, Any] | str:
    """Return the event as a dict, or a message saying why it is invalid."""
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"Invalid JSON payload: {exc}"

    if not isinstance(event, dict):
        return "Invalid payload: a Stripe event must be a JSON object"
    if not isinstance(event.get("id"), str) or not event["id"]:
        return "Invalid payload: the event has no string id"
    if not isinstance(event.get("type"), str) or not event["type"]:
        return "Invalid payload: the event has no string type"
    return event


def verify_signature(payload: bytes, header: str | None, secret: str) -> str | None:
    """Check the Stripe-Signature header; return the library's message if invalid."""
    try:
        stripe.Webhook.construct_event(
            payload, header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        return exc.user_message or str(exc)
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        # The body is not UTF-8 JSON or not an event object. parse_event
        # rejects it with a message that names the problem.
        return None
    return None


async def _remember_event(request: Request, event_id: str) -> bool:
    """Mark the event as received; False when it was received before."""
    client = runtime_of(request).client
    operation = client.set(dedupe_key(event_id), "1", nx=True, ex=DEDUPE_TTL_SECONDS)
    return bool(await bounded(operation, f"recording Stripe event {event_id}"))


async def _forget_event(request: Request, event_id: str) -> None:
    # Without the marker, Stripe's next retry of this event is enqueued.
    client = runtime_of(request).client
    try:
        await asyncio.wait_for(
            client.delete(dedupe_key(event_id)), REDIS_OPERATION_TIMEOUT
        )
    except (RedisError, OSError, TimeoutError) as exc:
        logger.error(
            "Could not remove the dedupe key of Stripe event %s: %s", event_id, exc
        )


async def stripe_webhook(request: Request) -> JSONResponse:
    """Verify a Stripe webhook, drop duplicates and enqueue the rest."""
    runtime = runtime_of(request)
    faults = runtime.faults
    payload = await request.body()
    header = request.headers.get("stripe-signature")

    problem = verify_signature(payload, header, runtime.settings.webhook_secret)
    if problem is not None:
        if not faults.accept_bad_signature:
            logger.warning("Stripe webhook signature verification failed: %s", problem)
            return json_error(400, problem)
        logger.warning(
            "Accepting a Stripe webhook whose signature failed verification "
            "(accept_bad_signature fault): %s",
            problem,
        )

    event = parse_event(payload)
    if isinstance(event, str):
        logger.warning("Stripe webhook rejected: %s", event)
        return json_error(400, event)

    event_id, event_type = event["id"], event["type"]
    first_delivery = await _remember_event(request, event_id)
    if not first_delivery and not faults.process_duplicates:
        logger.info(
            "Duplicate Stripe event %s ignored",
            event_id,
            extra={"fields": {"eventId": event_id, "eventType": event_type}},
        )
        return JSONResponse({"received": True, "duplicate": True})

    # BullMQ ignores a second job with an existing id, so the
    # process_duplicates fault gives the repeat delivery an id of its own.
    job_id = event_id if first_delivery else f"{event_id}-redelivery-{uuid.uuid4().hex}"
    try:
        await runtime.queues.add(WEBHOOK_QUEUE, event_type, event, {"jobId": job_id})
    except QueueUnavailable:
        if first_delivery:
            await _forget_event(request, event_id)
        raise

    logger.info(
        "Stripe event %s queued",
        event_id,
        extra={"fields": {"eventId": event_id, "eventType": event_type}},
    )
    return JSONResponse({"received": True})

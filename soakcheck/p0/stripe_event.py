"""A realistic Stripe test-mode event, built fresh for each P0 delivery.

The shapes follow Stripe's API reference for events, invoices, payment
intents, charges, subscriptions and Checkout sessions. The data object
carries `metadata.soakcheck = "p0"` so the backend's team can tell the test
event from real traffic in their data.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

import stripe

# The API version the installed stripe library pins; a backend on a current
# SDK reads the event as it would read a real delivery.
API_VERSION: str = stripe.api_version
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 24
AMOUNT_CENTS = 2000
CURRENCY = "usd"
MARKER = {"soakcheck": "p0"}


def new_stripe_id(prefix: str) -> str:
    """Return a random id in Stripe's format, such as `evt_1Nq8Xb...` (24 chars)."""
    suffix = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    return f"{prefix}_{suffix}"


def build_event(event_type: str, customer_id: str, now: int) -> dict[str, Any]:
    """Build a test-mode event of `event_type` with a fresh `evt_` id."""
    return {
        "id": new_stripe_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": data_object(event_type, customer_id, now)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def serialize(event: dict[str, Any]) -> bytes:
    """Serialise the event once, indented as Stripe sends it; sign these bytes.

    Non-ASCII text stays raw UTF-8, as in Stripe's deliveries, so a backend
    that re-encodes the body before verifying it fails here too.
    """
    return json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")


def data_object(event_type: str, customer_id: str, now: int) -> dict[str, Any]:
    """Return the event's `data.object` for the resource `event_type` names."""
    resource = event_type.rsplit(".", 1)[0]
    builder = _BUILDERS.get(resource)
    if builder is not None:
        return builder(customer_id, now)

    # An event type without a sample object still gets an object of the
    # named resource, with the fields every Stripe object has.
    return {
        "id": new_stripe_id(resource.replace(".", "_")),
        "object": resource,
        "created": now,
        "livemode": False,
        "metadata": dict(MARKER),
    }


def _invoice(customer_id: str, now: int) -> dict[str, Any]:
    subscription = new_stripe_id("sub")
    period_start = now - 30 * 86400
    return {
        "id": new_stripe_id("in"),
        "object": "invoice",
        "amount_due": AMOUNT_CENTS,
        "amount_paid": AMOUNT_CENTS,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": CURRENCY,
        "customer": customer_id,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": new_stripe_id("il"),
                    "object": "line_item",
                    "amount": AMOUNT_CENTS,
                    "currency": CURRENCY,
                    "description": "1 × Soak test plan (at $20.00 / month)",
                    "period": {"start": period_start, "end": now},
                    "quantity": 1,
                }
            ],
            "has_more": False,
            "total_count": 1,
        },
        "livemode": False,
        "metadata": dict(MARKER),
        "number": f"SOAK-{now}",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription},
        },
        "period_end": now,
        "period_start": period_start,
        "status": "paid",
        "status_transitions": {"finalized_at": now, "paid_at": now},
        "subtotal": AMOUNT_CENTS,
        "total": AMOUNT_CENTS,
    }


def _payment_intent(customer_id: str, now: int) -> dict[str, Any]:
    return {
        "id": new_stripe_id("pi"),
        "object": "payment_intent",
        "amount": AMOUNT_CENTS,
        "amount_received": AMOUNT_CENTS,
        "capture_method": "automatic",
        "created": now,
        "currency": CURRENCY,
        "customer": customer_id,
        "latest_charge": new_stripe_id("ch"),
        "livemode": False,
        "metadata": dict(MARKER),
        "payment_method_types": ["card"],
        "status": "succeeded",
    }


def _charge(customer_id: str, now: int) -> dict[str, Any]:
    return {
        "id": new_stripe_id("ch"),
        "object": "charge",
        "amount": AMOUNT_CENTS,
        "amount_captured": AMOUNT_CENTS,
        "amount_refunded": 0,
        "captured": True,
        "created": now,
        "currency": CURRENCY,
        "customer": customer_id,
        "livemode": False,
        "metadata": dict(MARKER),
        "paid": True,
        "payment_intent": new_stripe_id("pi"),
        "refunded": False,
        "status": "succeeded",
    }


def _subscription(customer_id: str, now: int) -> dict[str, Any]:
    return {
        "id": new_stripe_id("sub"),
        "object": "subscription",
        "cancel_at_period_end": False,
        "created": now,
        "currency": CURRENCY,
        "customer": customer_id,
        "items": {"object": "list", "data": [], "has_more": False, "total_count": 0},
        "livemode": False,
        "metadata": dict(MARKER),
        "start_date": now,
        "status": "active",
    }


def _checkout_session(customer_id: str, now: int) -> dict[str, Any]:
    return {
        "id": new_stripe_id("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": AMOUNT_CENTS,
        "amount_total": AMOUNT_CENTS,
        "created": now,
        "currency": CURRENCY,
        "customer": customer_id,
        "expires_at": now + 86400,
        "livemode": False,
        "metadata": dict(MARKER),
        "mode": "subscription",
        "payment_status": "paid",
        "status": "complete",
        "subscription": new_stripe_id("sub"),
    }


_BUILDERS = {
    "invoice": _invoice,
    "payment_intent": _payment_intent,
    "charge": _charge,
    "customer.subscription": _subscription,
    "checkout.session": _checkout_session,
}

"""Sign and send Stripe webhook events as Stripe does, and explain a rejection.

Stripe signs `"<t>.<raw body>"` with HMAC-SHA256, keyed with the whole
endpoint secret (the `whsec_` prefix included), and sends
`Stripe-Signature: t=<t>,v1=<hex>` with no spaces. The backend must verify
the exact bytes it received, so the event is serialised once and those bytes
are both signed and sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from soakcheck.p0.client import HttpResponse, request
from soakcheck.p0.secret import Secret

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
# Stripe's deliveries carry this content type.
CONTENT_TYPE = "application/json; charset=utf-8"

# Messages of Stripe's SDKs (stripe-python, stripe-node) for each failure.
NO_MATCHING_SIGNATURE = "No signatures found matching the expected signature"
STALE_TIMESTAMP = "Timestamp outside the tolerance zone"
BAD_HEADER = ("No signatures found with expected scheme", "Unable to extract timestamp")


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Return the hex HMAC-SHA256 of `"<timestamp>.<payload>"` keyed with `secret`."""
    signed_payload = str(timestamp).encode("ascii") + b"." + payload
    key = secret.encode("utf-8")
    return hmac.new(key, signed_payload, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """Build the Stripe-Signature value `t=<timestamp>,v1=<hex>`."""
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


@dataclass
class Delivery:
    """One signed delivery: the event id, the signing time and the response."""

    event_id: str
    timestamp: int
    response: HttpResponse


def deliver(
    url: str,
    payload: bytes,
    event_id: str,
    secret: Secret,
    *,
    timeout_s: float,
    timestamp: int | None = None,
) -> Delivery:
    """Sign `payload` at `timestamp` (default now) and POST those exact bytes."""
    if timestamp is None:
        timestamp = int(time.time())
    headers = {
        "Content-Type": CONTENT_TYPE,
        SIGNATURE_HEADER: signature_header(payload, secret.reveal(), timestamp),
    }
    response = request(
        "POST", url, timeout_s=timeout_s, content=payload, headers=headers
    )
    log.info(
        "stripe test event sent event=%s t=%d status=%d",
        event_id,
        timestamp,
        response.status,
    )
    return Delivery(event_id, timestamp, response)


def explain_rejection(
    response: HttpResponse, *, secret: Secret, tolerance_s: int, sent_at: float
) -> str:
    """Say why the backend rejected a correctly signed event, and what to fix."""
    if STALE_TIMESTAMP in response.body:
        return _clock_skew(response, tolerance_s, sent_at)
    if NO_MATCHING_SIGNATURE in response.body:
        return (
            f"backend misconfigured (raw body or secret): it computed another "
            f"signature for the bytes sent. Either it verifies a parsed and "
            f"re-serialised body instead of the raw request body (a JSON body "
            f"parser runs before the webhook route), or its endpoint secret "
            f"differs from {secret.variable} ({secret.masked})"
            f"{_secret_kind_hint(secret)}"
        )
    if any(marker in response.body for marker in BAD_HEADER):
        return (
            f"the backend could not read the {SIGNATURE_HEADER} header "
            f"'t=<unix>,v1=<hex>'; check that a proxy passes it on unchanged"
        )
    if response.status in (401, 403):
        return (
            f"the webhook route requires authentication (HTTP {response.status}), "
            f"but Stripe sends only the {SIGNATURE_HEADER} header; exempt the route"
        )
    if response.status == 404:
        return "no route at that URL; check p0.stripe_webhook_path in the target file"
    if 300 <= response.status < 400:
        return (
            "the backend redirected the request, and Stripe counts any response "
            "but 2xx as a failed delivery; point p0.stripe_webhook_path at the "
            "final URL"
        )
    if response.status >= 500:
        return "the backend failed while handling the event; see its log"
    return "the response names no known Stripe verification error; see the backend log"


def _clock_skew(response: HttpResponse, tolerance_s: int, sent_at: float) -> str:
    text = (
        f"clock skew: the event was signed just now, yet the backend found its "
        f"timestamp older than the tolerance (p0.stripe_tolerance_s = "
        f"{tolerance_s} s)"
    )
    if response.server_date is not None:
        offset = response.server_date - sent_at
        text += f"; the backend's Date header is {offset:+.0f} s from this machine"
    return text + ". Synchronise both clocks with NTP"


def _secret_kind_hint(secret: Secret) -> str:
    if secret.reveal().startswith("whsec_"):
        return ""
    return (
        f"; {secret.variable} does not start with whsec_, so it is likely an API key "
        f"or another kind of secret instead of the endpoint's signing secret"
    )

"""Stripe webhook signing: known vectors, and stripe's own verifier as the judge."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import stripe

from soakcheck.p0.secret import Secret, mask_secret
from soakcheck.p0.stripe_event import build_event, serialize
from soakcheck.p0.stripe_webhook import compute_signature, signature_header

VECTORS = (
    Path(__file__).resolve().parent.parent / "fixtures" / "stripe" / "vectors.json"
)
SECRET = "whsec_selftest_signing_secret"
TOLERANCE_S = 300


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


@pytest.fixture
def signed() -> tuple[bytes, str]:
    """A fresh event, serialised once and signed now."""
    event = build_event("invoice.payment_succeeded", "cus_selftest", int(time.time()))
    payload = serialize(event)
    return payload, signature_header(payload, SECRET, int(time.time()))


def _negative(vectors: dict[str, Any], case_id: str) -> dict[str, Any]:
    return next(case for case in vectors["negative_cases"] if case["id"] == case_id)


def test_vector_header_reproduced(vectors: dict[str, Any]) -> None:
    """The signer reproduces the reference vector's header byte for byte."""
    vector = vectors["vectors"][0]
    payload = vector["payload"].encode("utf-8")

    header = signature_header(payload, vectors["secret"], vector["timestamp"])

    assert header == vector["header"]


def test_vector_keyed_with_whole_secret(vectors: dict[str, Any]) -> None:
    """The HMAC key is the whole secret, whsec_ prefix included."""
    vector = vectors["vectors"][0]
    payload = vector["payload"].encode("utf-8")
    stripped = _negative(vectors, "N5_whsec_prefix_stripped_before_hmac")

    with_prefix = compute_signature(payload, vectors["secret"], vector["timestamp"])
    without_prefix = compute_signature(
        payload, stripped["secret_used_as_key"], vector["timestamp"]
    )

    assert with_prefix == vector["expected_v1"]
    assert without_prefix == stripped["v1_produced"]
    assert without_prefix != vector["expected_v1"]


def test_vector_changed_bytes_change_signature(vectors: dict[str, Any]) -> None:
    """A re-serialised, newline-appended or CRLF body gets another signature."""
    vector = vectors["vectors"][0]
    reserialized = _negative(vectors, "N1_body_reserialized_by_json_parser")
    changed = [
        _negative(vectors, case_id)["payload"]
        for case_id in ("N2_trailing_newline_added", "N3_LF_converted_to_CRLF")
    ]

    reserialized_v1 = compute_signature(
        reserialized["payload"].encode("utf-8"), vectors["secret"], vector["timestamp"]
    )
    changed_v1 = [
        compute_signature(text.encode("utf-8"), vectors["secret"], vector["timestamp"])
        for text in changed
    ]

    assert reserialized_v1 == reserialized["v1_of_reserialized_body"]
    assert vector["expected_v1"] not in changed_v1


def test_vector_wrong_secret(vectors: dict[str, Any]) -> None:
    """Another endpoint's secret gives the vector's other signature."""
    vector = vectors["vectors"][0]
    rolled = _negative(vectors, "N4_wrong_endpoint_secret")

    signature = compute_signature(
        vector["payload"].encode("utf-8"), rolled["secret"], vector["timestamp"]
    )

    assert signature == rolled["v1_with_this_secret"]


def test_vector_verified_by_stripe(vectors: dict[str, Any]) -> None:
    """stripe accepts the vector with no tolerance and finds it stale at 300 s."""
    vector = vectors["vectors"][0]
    header = signature_header(
        vector["payload"].encode("utf-8"), vectors["secret"], vector["timestamp"]
    )

    accepted = stripe.WebhookSignature.verify_header(
        vector["payload"], header, vectors["secret"], tolerance=None
    )
    with pytest.raises(stripe.SignatureVerificationError) as stale:
        stripe.WebhookSignature.verify_header(
            vector["payload"], header, vectors["secret"], tolerance=TOLERANCE_S
        )

    assert accepted is True
    assert "Timestamp outside the tolerance zone" in str(stale.value)


def test_signed_event_accepted_by_stripe(signed: tuple[bytes, str]) -> None:
    """stripe's construct_event accepts a fresh event signed by the signer."""
    payload, header = signed

    event = stripe.Webhook.construct_event(payload, header, SECRET, tolerance=300)

    assert event["id"].startswith("evt_")
    assert event["type"] == "invoice.payment_succeeded"
    assert event["livemode"] is False


def test_signed_header_format(signed: tuple[bytes, str]) -> None:
    """The header is `t=<unix>,v1=<64 hex>` with no spaces."""
    _, header = signed
    timestamp, signature = header.split(",")

    assert " " not in header
    assert timestamp.startswith("t=")
    assert abs(int(timestamp[2:]) - time.time()) < 5
    assert signature.startswith("v1=")
    assert len(signature[3:]) == 64
    assert int(signature[3:], 16) >= 0


def test_tampered_body_rejected(signed: tuple[bytes, str]) -> None:
    """A body changed after signing fails stripe's verification."""
    payload, header = signed
    tampered = payload.replace(b'"amount_paid": 2000', b'"amount_paid": 9000')

    with pytest.raises(stripe.SignatureVerificationError) as rejected:
        stripe.WebhookSignature.verify_header(tampered, header, SECRET, tolerance=300)

    assert tampered != payload
    assert "No signatures found matching" in str(rejected.value)


def test_wrong_secret_rejected(signed: tuple[bytes, str]) -> None:
    """A signature made with another secret fails stripe's verification."""
    payload, header = signed

    with pytest.raises(stripe.SignatureVerificationError) as rejected:
        stripe.WebhookSignature.verify_header(
            payload, header, SECRET + "_rolled", tolerance=300
        )

    assert "No signatures found matching" in str(rejected.value)


def test_stale_timestamp_rejected() -> None:
    """An event signed 301 s ago fails stripe's verification with tolerance 300."""
    stale_at = int(time.time()) - (TOLERANCE_S + 1)
    payload = serialize(build_event("invoice.payment_succeeded", "cus_a", stale_at))
    header = signature_header(payload, SECRET, stale_at)

    with pytest.raises(stripe.SignatureVerificationError) as rejected:
        stripe.WebhookSignature.verify_header(payload, header, SECRET, tolerance=300)

    assert "Timestamp outside the tolerance zone" in str(rejected.value)


def test_space_after_comma_rejected(signed: tuple[bytes, str]) -> None:
    """A header with a space after the comma fails stripe's verification."""
    payload, header = signed
    spaced = header.replace(",", ", ")

    with pytest.raises(stripe.SignatureVerificationError) as rejected:
        stripe.WebhookSignature.verify_header(payload, spaced, SECRET, tolerance=300)

    assert "No signatures found with expected scheme" in str(rejected.value)


def test_payload_serialised_once() -> None:
    """The bytes signed are the event's JSON, indented and raw UTF-8 as Stripe sends."""
    event = build_event("invoice.payment_succeeded", "cus_a", 1_700_000_000)

    payload = serialize(event)

    assert json.loads(payload) == event
    assert payload.startswith(b'{\n  "id": "evt_')
    assert "×".encode() in payload


def test_event_ids_fresh() -> None:
    """Each built event gets its own evt_ id."""
    ids = {build_event("charge.succeeded", "cus_a", 1)["id"] for _ in range(50)}

    assert len(ids) == 50


@pytest.mark.parametrize(
    ("event_type", "object_name"),
    [
        pytest.param("invoice.payment_succeeded", "invoice", id="invoice"),
        pytest.param("payment_intent.succeeded", "payment_intent", id="payment-intent"),
        pytest.param("charge.succeeded", "charge", id="charge"),
        pytest.param(
            "customer.subscription.updated", "subscription", id="subscription"
        ),
        pytest.param("checkout.session.completed", "checkout.session", id="checkout"),
        pytest.param("payout.paid", "payout", id="other-resource"),
    ],
)
def test_event_object_matches_type(event_type: str, object_name: str) -> None:
    """The event's data object is the resource its type names, in test mode."""
    event = build_event(event_type, "cus_a", 1_700_000_000)
    data_object = event["data"]["object"]

    assert event["type"] == event_type
    assert event["object"] == "event"
    assert event["livemode"] is False
    assert data_object["object"] == object_name
    assert data_object["livemode"] is False
    assert data_object["metadata"] == {"soakcheck": "p0"}


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param("whsec_abcdefghijklmnop1234", "whsec_…1234", id="whsec"),
        pytest.param("sk_test_abcdefghijklmnopWXYZ", "sk_test_…WXYZ", id="api-key"),
        pytest.param("whsec_short", "whsec_…", id="short"),
        pytest.param("plainsecretvalue9876", "…9876", id="no-prefix"),
    ],
)
def test_mask_secret(secret: str, expected: str) -> None:
    """A secret is shown only as its kind and last 4 characters."""
    assert mask_secret(secret) == expected


def test_secret_repr_masked() -> None:
    """A wrapped secret shows only its variable, kind and last 4 characters."""
    secret = Secret("STRIPE_WEBHOOK_SECRET", "whsec_abcdefghijklmnop1234")

    renderings = [repr(secret), str(secret), repr([secret])]

    assert all("abcdefghijklmnop" not in text for text in renderings)
    assert repr(secret) == "Secret(STRIPE_WEBHOOK_SECRET=whsec_…1234)"
    assert secret.reveal() == "whsec_abcdefghijklmnop1234"

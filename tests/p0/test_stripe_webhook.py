"""P0: a signed Stripe test event is accepted and processed once.

A second delivery of the event is not processed again, and deliveries with a
forged signature or a stale timestamp are rejected.
"""

from __future__ import annotations

import secrets
import time

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.p0.secret import Secret
from soakcheck.p0.stripe_event import build_event, serialize
from soakcheck.p0.stripe_webhook import (
    NO_MATCHING_SIGNATURE,
    Delivery,
    deliver,
    explain_rejection,
)
from soakcheck.p0.webhook_exchange import Evidence, WebhookExchange
from soakcheck.probes.result import ProbeResult, attempt

pytestmark = pytest.mark.p0


def _send_new_event(target: Target, secret: Secret, timestamp: int) -> Delivery:
    """Sign a fresh event with `secret` at `timestamp` and deliver it."""
    p0 = target.p0
    event = build_event(p0.stripe_event_type, p0.stripe_customer_id, timestamp)
    url = target.backend.base_url + p0.stripe_webhook_path
    return attempt(
        "stripe webhook",
        lambda: deliver(
            url,
            serialize(event),
            event["id"],
            secret,
            timeout_s=target.backend.timeout,
            timestamp=timestamp,
        ),
    ).require()


def _processing_problems(
    target: Target, exchange: WebhookExchange, evidence: Evidence
) -> list[str]:
    """List what the evidence shows wrong, or cannot show, about one processing."""
    p0 = target.p0
    queue = p0.webhook_queue
    problems: list[str] = []
    if (
        evidence.job is None
        and evidence.job_error is None
        and evidence.log_lines is None
    ):
        problems.append(
            "no evidence of processing is configured: set webhook_queue under [p0], "
            "or list the log files under [logs] and set processed_log_pattern"
        )

    if evidence.job_error is not None:
        problems.append(f"cannot read the webhook job: {evidence.job_error}")
    elif evidence.job is not None and evidence.job.state == "failed":
        problems.append(evidence.job.describe())
    elif evidence.job is not None and evidence.job.state == "pending":
        problems.append(
            f"{evidence.job.describe()} after {p0.processing_timeout:g} s; is a "
            f"worker running for {queue}?"
        )
    elif evidence.job is not None and evidence.job.state == "missing":
        problems.append(
            f"no job {exchange.event_id} in queue {queue}: the backend does not use "
            f"the event id as job id, or removed the job once done; set "
            f'webhook_queue = "" under [p0] to rely on the log alone'
        )

    if evidence.log_count == 0:
        files = ", ".join(str(path) for path in target.logs.files)
        text = (
            f"no line {p0.processed_log_pattern!r} for {exchange.event_id} in "
            f"{files} within {evidence.waited_s:.0f} s"
        )
        if evidence.missing_logs:
            missing = ", ".join(str(path) for path in evidence.missing_logs)
            text += f" (not found: {missing})"
        problems.append(text)
    elif evidence.log_count is not None and evidence.log_count > 1:
        problems.append(
            f"event {exchange.event_id} was processed {evidence.log_count} times "
            f"after one delivery"
        )
    return problems


def _times_processed(evidence: Evidence) -> int:
    if evidence.log_count is not None:
        return evidence.log_count
    return int(evidence.job is not None and evidence.job.state == "completed")


@pytest.mark.check("p0.stripe_webhook[accepted]")
def test_webhook_accepted(
    target: Target,
    stripe_secret: ProbeResult[Secret],
    webhook_exchange: ProbeResult[WebhookExchange],
    observe: Observation,
) -> None:
    """A test event signed with the endpoint secret gets a 2xx response."""
    secret = stripe_secret.require()
    exchange = webhook_exchange.require()
    response = exchange.first.response
    observe.record(
        response.status,
        threshold=300,
        operator="<",
        subject=f"HTTP status of signed {exchange.event['type']} event",
    )
    observe.evidence = [f"event {exchange.event_id}", response.summary()]

    reason = ""
    if not response.ok:
        reason = explain_rejection(
            response,
            secret=secret,
            tolerance_s=target.p0.stripe_tolerance_s,
            sent_at=exchange.first.timestamp,
        )

    assert response.ok, (
        f"signed test event {exchange.event_id} got HTTP {response.status}: {reason}"
    )


@pytest.mark.check("p0.stripe_webhook[processed-once]")
def test_webhook_processed_once(
    target: Target,
    webhook_exchange: ProbeResult[WebhookExchange],
    observe: Observation,
) -> None:
    """The accepted event is processed exactly once, as the queue and log show."""
    exchange = webhook_exchange.require()
    if exchange.processed is None:
        pytest.fail(
            f"not processed: the backend rejected event {exchange.event_id} "
            f"(see p0.stripe_webhook[accepted])",
            pytrace=False,
        )
    evidence = exchange.processed
    observe.record(
        _times_processed(evidence),
        threshold=1,
        operator="==",
        subject=f"processing runs of event {exchange.event_id}",
    )
    if evidence.job is not None:
        observe.detail = evidence.job.describe()
    observe.evidence = evidence.log_lines or []

    problems = _processing_problems(target, exchange, evidence)

    assert not problems, "; ".join(problems)


@pytest.mark.check("p0.stripe_webhook[duplicate-ignored]")
def test_webhook_duplicate_ignored(
    target: Target,
    webhook_exchange: ProbeResult[WebhookExchange],
    observe: Observation,
) -> None:
    """A second delivery of the event gets a 2xx response and is not processed again."""
    exchange = webhook_exchange.require()
    if exchange.resend is None or exchange.after_resend is None:
        pytest.fail(
            f"not checked: the backend rejected event {exchange.event_id} "
            f"(see p0.stripe_webhook[accepted])",
            pytrace=False,
        )
    after = exchange.after_resend
    if after.log_count is None:
        pytest.fail(
            "cannot count processing runs: only the log shows a second run, so "
            "list the log files under [logs] and set processed_log_pattern under "
            "[p0]",
            pytrace=False,
        )
    response = exchange.resend.response
    observe.record(
        after.log_count,
        threshold=1,
        operator="==",
        subject=f"processing runs of event {exchange.event_id} after two deliveries",
    )
    observe.detail = f"second delivery got HTTP {response.status}"
    observe.evidence = [response.summary(), *after.log_lines]

    problems: list[str] = []
    if not response.ok:
        problems.append(
            f"the second delivery got HTTP {response.status}; respond to a "
            f"duplicate with 2xx, or Stripe keeps retrying it"
        )
    if after.log_count > 1:
        problems.append(
            f"the second delivery of {exchange.event_id} was processed again "
            f"({after.log_count} runs in {after.waited_s:.1f} s); deduplicate on "
            f"the event id"
        )
    if after.log_count == 0:
        problems.append("no processing of the event was seen at all")

    assert not problems, "; ".join(problems)


@pytest.mark.check("p0.stripe_webhook[bad-signature-rejected]")
def test_webhook_bad_signature_rejected(target: Target, observe: Observation) -> None:
    """An event signed with a wrong secret is rejected with 4xx."""
    wrong_secret = Secret("a random secret", f"whsec_{secrets.token_urlsafe(24)}")

    delivery = _send_new_event(target, wrong_secret, int(time.time()))
    response = delivery.response
    observe.record(
        response.status,
        threshold=400,
        operator=">=",
        subject="HTTP status of an event signed with a wrong secret",
    )
    observe.evidence = [f"event {delivery.event_id}", response.summary()]

    assert not response.ok, (
        f"the backend accepted event {delivery.event_id} signed with a wrong secret "
        f"(HTTP {response.status}): it does not verify the Stripe-Signature header, so "
        f"anyone can forge billing events"
    )
    assert response.status < 500, (
        f"the backend failed (HTTP {response.status}) on a forged signature instead of "
        f"rejecting it with 400"
    )
    assert response.status >= 400, (
        f"the backend responded to a forged signature with HTTP {response.status} "
        f"instead of 400"
    )


@pytest.mark.check("p0.stripe_webhook[stale-timestamp-rejected]")
def test_webhook_stale_timestamp_rejected(
    target: Target, stripe_secret: ProbeResult[Secret], observe: Observation
) -> None:
    """An event signed one second past the tolerance is rejected with 4xx."""
    secret = stripe_secret.require()
    age_s = target.p0.stripe_tolerance_s + 1

    delivery = _send_new_event(target, secret, int(time.time()) - age_s)
    response = delivery.response
    observe.record(
        response.status,
        threshold=400,
        operator=">=",
        subject=f"HTTP status of an event signed {age_s} s ago",
    )
    observe.evidence = [f"event {delivery.event_id}", response.summary()]
    if NO_MATCHING_SIGNATURE in response.body:
        observe.detail = (
            "rejected for its signature, not its age (see p0.stripe_webhook[accepted])"
        )

    assert not response.ok, (
        f"the backend accepted event {delivery.event_id} signed {age_s} s ago (HTTP "
        f"{response.status}): it does not enforce the {age_s - 1} s timestamp "
        f"tolerance, so a captured event can be replayed"
    )
    assert response.status < 500, (
        f"the backend failed (HTTP {response.status}) on a stale timestamp instead of "
        f"rejecting it with 400"
    )
    assert response.status >= 400, (
        f"the backend responded to a stale timestamp with HTTP {response.status} "
        f"instead of 400"
    )

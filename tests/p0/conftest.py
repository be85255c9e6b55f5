"""Fixtures of the P0 tests, which change state and so run only under `make p0`."""

from __future__ import annotations

import pytest

from soakcheck.config import Target
from soakcheck.p0.secret import Secret
from soakcheck.p0.webhook_exchange import WebhookExchange, run_exchange
from soakcheck.plugin import SESSION_KEY, SoakSession
from soakcheck.probes.result import ProbeResult, attempt

# Time for the HTTP requests and the process around the configured waits.
TIMEOUT_MARGIN_S = 60.0


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Give each P0 test a timeout longer than the waits its target configures.

    The project's default per-test timeout could otherwise stop the webhook
    exchange, which waits twice for processing, before its own deadlines.
    """
    soak = config.stash.get(SESSION_KEY, None)
    if soak is None:
        return
    p0, backend = soak.target.p0, soak.target.backend
    webhook_s = 2 * p0.processing_timeout + 4 * backend.timeout
    reconciliation_s = p0.reconciliation_timeout + 2 * backend.timeout
    budget_s = max(webhook_s, reconciliation_s) + TIMEOUT_MARGIN_S
    for item in items:
        if item.get_closest_marker("p0") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(budget_s))


@pytest.fixture(scope="session", autouse=True)
def p0_gate(soak: SoakSession, target: Target) -> None:
    """Skip every P0 test outside a P0 checkpoint of a target that allows them.

    Session scope makes this gate run before the session fixtures that send
    requests.
    """
    if soak.kind != "p0":
        pytest.skip(f"P0 tests run only in a P0 checkpoint (make p0), not {soak.kind}")
    if not target.p0.allowed:
        pytest.skip(
            f"P0 tests change state; set allowed = true under [p0] in "
            f"{target.source} to run them"
        )


@pytest.fixture(scope="session")
def stripe_secret(target: Target) -> ProbeResult[Secret]:
    """The endpoint's signing secret, or the reason it is missing."""
    variable = target.p0.stripe_secret_env
    value = target.secret(variable)
    if value is None:
        return ProbeResult(
            error=f"{variable} is not set: put the webhook endpoint's whsec_ signing "
            f"secret in the environment or in the .env file named by env_file"
        )
    return ProbeResult(value=Secret(variable, value))


@pytest.fixture(scope="session")
def webhook_exchange(
    target: Target, stripe_secret: ProbeResult[Secret]
) -> ProbeResult[WebhookExchange]:
    """One signed test event delivered, watched while processed, and delivered again."""
    if stripe_secret.error is not None:
        return ProbeResult(error=stripe_secret.error)
    secret = stripe_secret.value
    assert secret is not None
    return attempt("stripe webhook", lambda: run_exchange(target, secret))

"""Health endpoint: status, each service flag, and response time."""

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.probes.health import HealthFacts
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


@pytest.mark.check("health.status")
def test_health_status(health: ProbeResult[HealthFacts], observe: Observation) -> None:
    """The health endpoint returns 2xx with an ok status."""
    facts = health.require()
    observe.record(facts.status, threshold="ok", operator="==", subject="health status")
    observe.detail = f"HTTP {facts.http_status}"

    if facts.invalid_reason:
        pytest.fail(f"invalid health answer from {facts.url}: {facts.invalid_reason}")

    assert 200 <= facts.http_status < 300, (
        f"health HTTP status ({facts.http_status}) is 2xx; body {facts.body_excerpt}"
    )
    assert facts.overall in ("healthy", "healthy_with_warnings"), (
        f"health status ({facts.status!r}) is ok; body {facts.body_excerpt}"
    )


@pytest.mark.check("health.service")
def test_health_service(
    service: str,
    target: Target,
    health: ProbeResult[HealthFacts],
    observe: Observation,
) -> None:
    """Each configured service flag of the health response is true."""
    if service in target.backend.primary_services:
        observe.escalate("critical", "primary")
    facts = health.require()
    if facts.invalid_reason:
        pytest.fail(f"invalid health answer from {facts.url}: {facts.invalid_reason}")

    found = sorted(facts.services)
    assert service in facts.services, (
        f"service {service!r} is missing from the health answer (found: "
        f"{', '.join(found) or 'no services'}); fix backend.services in the target"
    )
    healthy = facts.services[service]
    observe.record(healthy, threshold=True, operator="==", subject=f"service {service}")
    observe.detail = facts.service_messages.get(service, "")

    assert observe.holds(), observe.describe()


@pytest.mark.check("health.latency")
def test_health_latency(
    target: Target, health: ProbeResult[HealthFacts], observe: Observation
) -> None:
    """The p95 of several health requests stays under the latency threshold."""
    facts = health.require()
    p95 = facts.latency_p95_ms
    observe.record(
        p95,
        threshold=target.backend.latency_p95_ms,
        unit="ms",
        operator="<",
        subject=f"health latency p95 of {len(facts.latencies_ms)} samples",
    )

    assert observe.holds(), observe.describe()

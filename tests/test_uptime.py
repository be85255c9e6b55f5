"""Backend uptime: it grows with the clock and never resets within the window."""

from datetime import datetime
from typing import Any

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.plugin import SoakSession
from soakcheck.probes.health import HealthFacts
from soakcheck.probes.result import ProbeResult

pytestmark = pytest.mark.checklist


def _uptimes(
    soak: SoakSession, previous: dict[str, Any] | None, health: ProbeResult[HealthFacts]
) -> tuple[float, float, float]:
    """Return (previous uptime, current uptime, seconds between the two)."""
    facts = health.require()
    if facts.uptime_s is None:
        pytest.fail(
            f"health answer has no uptime value; set backend.uptime_path "
            f"(body {facts.body_excerpt})"
        )
    last = (previous or {}).get("state", {}).get("uptime")
    if not last:
        pytest.skip("first checkpoint of the window: no earlier uptime to compare")
    elapsed = (soak.started_at - datetime.fromisoformat(last["at"])).total_seconds()
    return float(last["uptime_s"]), facts.uptime_s, elapsed


def _tolerance(target: Target, elapsed: float) -> float:
    backend = target.backend
    return max(backend.uptime_tolerance_s, backend.uptime_tolerance_ratio * elapsed)


@pytest.mark.check("uptime.delta")
def test_uptime_delta(
    soak: SoakSession,
    target: Target,
    previous: dict[str, Any] | None,
    health: ProbeResult[HealthFacts],
    observe: Observation,
) -> None:
    """Uptime grew by about the time since the last checkpoint."""
    before, now, elapsed = _uptimes(soak, previous, health)
    drift = abs((now - before) - elapsed)
    tolerance = _tolerance(target, elapsed)
    observe.record(
        round(drift, 1),
        threshold=round(tolerance, 1),
        unit="s",
        operator="<=",
        subject="uptime drift from the clock",
    )
    observe.detail = f"uptime {before:.0f} s -> {now:.0f} s over {elapsed:.0f} s"

    assert observe.holds(), observe.describe()


@pytest.mark.check("uptime.no_restart")
def test_uptime_no_restart(
    soak: SoakSession,
    target: Target,
    previous: dict[str, Any] | None,
    health: ProbeResult[HealthFacts],
    observe: Observation,
) -> None:
    """The backend did not restart since the last checkpoint."""
    before, now, elapsed = _uptimes(soak, previous, health)

    # A restart moves the process start time (now - uptime) forward.
    expected = before + elapsed
    observe.record(
        round(now, 1),
        threshold=round(max(0.0, expected - _tolerance(target, elapsed)), 1),
        unit="s",
        operator=">=",
        subject="backend uptime",
    )
    observe.detail = f"expected about {expected:.0f} s"
    if not observe.holds():
        observe.detail += ": the backend restarted"

    assert observe.holds(), observe.describe()

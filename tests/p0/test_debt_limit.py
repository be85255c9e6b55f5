"""P0: a charge over the debt limit is rejected; a control charge under it is not."""

from __future__ import annotations

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.p0.debt_limit import explain_status, send_charge
from soakcheck.probes.result import attempt

pytestmark = pytest.mark.p0


@pytest.mark.check("p0.debt_limit[over-limit-rejected]")
def test_debt_over_limit_rejected(target: Target, observe: Observation) -> None:
    """A charge that takes the customer over the debt limit gets the expected status."""
    expected = target.p0.debt_limit_status

    response = attempt(
        "debt limit", lambda: send_charge(target, target.p0.debt_limit_over)
    ).require()
    observe.record(
        response.status,
        threshold=expected,
        operator="==",
        subject="HTTP status of a charge over the debt limit",
    )
    observe.evidence = [response.summary()]

    assert response.status == expected, (
        f"charge over the debt limit got HTTP {response.status}, expected "
        f"{expected}: {explain_status(response)}"
    )


@pytest.mark.check("p0.debt_limit[under-limit-accepted]")
def test_debt_under_limit_accepted(target: Target, observe: Observation) -> None:
    """A control charge under the limit succeeds, so the limit caused the rejection."""
    response = attempt(
        "debt limit", lambda: send_charge(target, target.p0.debt_limit_under)
    ).require()
    observe.record(
        response.status,
        threshold=300,
        operator="<",
        subject="HTTP status of a control charge under the debt limit",
    )
    observe.evidence = [response.summary()]

    hint = "check p0.debt_limit_under in the target file"
    if response.status == target.p0.debt_limit_status:
        hint = (
            "the control customer's debt is over the limit too, so choose another "
            "customer or a smaller amount in p0.debt_limit_under"
        )

    assert response.ok, (
        f"control charge under the debt limit got HTTP {response.status}, so the "
        f"over-limit rejection proves nothing: {hint}"
    )

"""P0: a manually triggered reconciliation run finishes without errors."""

from __future__ import annotations

import pytest

from soakcheck.config import Target
from soakcheck.observation import Observation
from soakcheck.p0.reconciliation import run_reconciliation
from soakcheck.probes.result import attempt

pytestmark = pytest.mark.p0


@pytest.mark.check("p0.reconciliation")
def test_reconciliation_completes(target: Target, observe: Observation) -> None:
    """A triggered reconciliation job reaches completed within the timeout."""
    timeout_s = target.p0.reconciliation_timeout

    run = attempt("reconciliation", lambda: run_reconciliation(target)).require()
    report = run.report
    observe.record(
        report.state,
        threshold="completed",
        operator="==",
        subject=f"reconciliation job {run.job_id}",
    )
    observe.detail = f"{run.trigger}, waited {run.waited_s:.1f} s"
    if report.result is not None:
        observe.evidence = [f"result: {report.result}"]

    assert report.state != "failed", (
        f"reconciliation job {run.job_id} failed: "
        f"{report.failed_reason or 'no failedReason recorded'}"
    )
    assert report.finished, (
        f"reconciliation job {run.job_id} still {report.state} after "
        f"{timeout_s:g} s; is a worker running for the reconciliation queue?"
    )
    assert not report.failed_reason, (
        f"reconciliation job {run.job_id} completed but recorded failedReason "
        f"{report.failed_reason!r}"
    )

"""Verdict: the default policy over crafted windows, one per decision."""

from pathlib import Path

from selftests.verdict_windows import (
    add_record,
    after,
    fill,
    healthy_results,
    make_window,
    result,
)
from soakcheck.verdict import decide
from soakcheck.verdict_report import write_reports

P0 = ["p0.stripe_webhook", "p0.debt_limit", "p0.reconciliation"]


def test_all_passed_approved(tmp_path: Path) -> None:
    """Every slot passing every check gives APPROVED with exit code 0."""
    window = make_window(tmp_path)
    fill(window)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "APPROVED"
    assert verdict.exit_code == 0
    assert verdict.reasons == []


def test_primary_critical_rejected(tmp_path: Path) -> None:
    """A critical failure of a primary criterion at one slot gives REJECTED."""
    window = make_window(tmp_path)
    fill(window)
    failing = healthy_results()
    failing[0] = result("health.status", "failed", message="backend unreachable")
    add_record(window, 5, failing)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "REJECTED"
    assert verdict.exit_code == 2
    assert verdict.issues[0].check == "health.status"
    assert verdict.issues[0].first_slot == "Hour 10"


def test_warning_conditional(tmp_path: Path) -> None:
    """A warning-level failure gives CONDITIONAL and names the check and slot."""
    window = make_window(tmp_path)
    fill(window)
    warned = healthy_results() + [
        result("logs.errors[app.log]", "failed", value=3, threshold=0)
    ]
    add_record(window, 3, warned)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"
    assert verdict.exit_code == 1
    assert "logs.errors[app.log]" in verdict.reasons[0].text
    assert "Hour 6" in verdict.reasons[0].text


def test_primary_warning_conditional(tmp_path: Path) -> None:
    """Backend memory over the primary limit but under the critical one is CONDITIONAL."""
    window = make_window(tmp_path)
    fill(window)
    heavy = healthy_results()
    heavy[4] = result("backend.memory", "failed", value=700, threshold=500, unit="MB")
    add_record(window, 2, heavy)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"


def test_missed_slot_conditional(tmp_path: Path) -> None:
    """A slot with no checkpoint makes the decision CONDITIONAL, naming the slot."""
    window = make_window(tmp_path)
    fill(window, skip={4})

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"
    assert verdict.missed_slots == ["Hour 8"]


def test_p0_not_run_conditional(tmp_path: Path) -> None:
    """A required P0 test that did not run makes the decision CONDITIONAL."""
    window = make_window(tmp_path, policy={"required_p0": P0})
    fill(window)
    add_record(
        window,
        1,
        [result("p0.stripe_webhook"), result("p0.debt_limit")],
        kind="p0",
    )

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"
    assert [r.check for r in verdict.reasons] == ["p0.reconciliation"]


def test_p0_all_passed_approved(tmp_path: Path) -> None:
    """All required P0 tests passed and every slot clean gives APPROVED."""
    window = make_window(tmp_path, policy={"required_p0": P0})
    fill(window)
    add_record(window, 1, [result(check) for check in P0], kind="p0")

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "APPROVED"


def test_unfinished_window_conditional(tmp_path: Path) -> None:
    """A window with slots still to come is not APPROVED."""
    window = make_window(tmp_path)
    for index in range(3):
        add_record(window, index)
    moment = window.slot(3).due

    verdict = decide(window, moment=moment)

    assert verdict.decision == "CONDITIONAL"
    assert not verdict.complete
    assert "still to come" in verdict.reasons[0].text


def test_issue_tracks_first_last_worst(tmp_path: Path) -> None:
    """An issue across slots keeps its first and last slot and its worst value."""
    window = make_window(tmp_path)
    fill(window)
    for index, value in ((2, 60.0), (3, 80.0), (4, 70.0)):
        rows = healthy_results()
        rows[3] = result(
            "redis.memory", "failed", value=value, threshold=50, unit="MB",
            criterion="secondary",
        )
        add_record(window, index, rows)

    verdict = decide(window, moment=after(window))
    issue = verdict.issues[0]

    assert issue.first_slot == "Hour 4"
    assert issue.last_slot == "Hour 8"
    assert issue.occurrences == 3
    assert issue.worst_value == 80.0


def test_reports_written_and_escaped(tmp_path: Path) -> None:
    """verdict.html, .md and .json are written, with log text escaped in HTML."""
    window = make_window(tmp_path)
    fill(window)
    rows = healthy_results() + [
        result("logs.errors[app.log]", "failed", message="<script>alert(1)</script>")
    ]
    add_record(window, 1, rows)

    verdict = decide(window, moment=after(window))
    paths = write_reports(verdict, window.directory)
    page = paths["html"].read_text()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
    assert "CONDITIONAL" in paths["md"].read_text()
    assert paths["json"].exists()


def test_unreadable_record_skipped(tmp_path: Path) -> None:
    """A corrupt record file is skipped, not fatal, and its slot counts as missed."""
    window = make_window(tmp_path)
    fill(window, skip={2})
    (window.directory / "hour-04.json").write_text('{"schema": 1, "results": [')

    verdict = decide(window, moment=after(window))

    assert verdict.missed_slots == ["Hour 4"]

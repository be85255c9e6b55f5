"""Verdict: the default policy over crafted windows, one per decision."""

from datetime import timedelta
from pathlib import Path

import pytest

from selftests.verdict_windows import (
    START,
    add_record,
    after,
    fill,
    healthy_results,
    make_window,
    result,
    write_alerts,
)
from soakcheck.notes import add_note, add_planned, add_resolution
from soakcheck.verdict import decide
from soakcheck.verdict_report import write_reports
from soakcheck.window import new_window

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
    """Backend memory over the primary but under the critical limit is CONDITIONAL."""
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
            "redis.memory",
            "failed",
            value=value,
            threshold=50,
            unit="MB",
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
    unreadable = [r for r in verdict.reasons if r.kind == "unreadable"]

    assert verdict.missed_slots == ["Hour 4"]
    assert len(unreadable) == 1
    assert unreadable[0].text.endswith(": hour-04.json")


def test_all_records_unreadable_named(tmp_path: Path) -> None:
    """A window whose records are all unreadable names each file in the verdict."""
    window = make_window(tmp_path)
    for name in ("hour-00.json", "hour-02.json"):
        (window.directory / name).write_text("not json")

    verdict = decide(window, moment=after(window))
    texts = [reason.text for reason in verdict.reasons]

    assert verdict.decision == "CONDITIONAL"
    assert any(text.endswith(": hour-00.json, hour-02.json") for text in texts)
    assert any("unreadable checkpoint records" in step for step in verdict.next_steps)


def _uptime_reset() -> list[dict]:
    return healthy_results() + [
        result(
            "uptime.no_restart",
            "failed",
            value=120,
            threshold=7000,
            unit="s",
            operator=">=",
            message="backend uptime (120 s) >= 7000 s",
        )
    ]


def _logs_error() -> list[dict]:
    return healthy_results() + [
        result("logs.errors[app.log]", "failed", value=3, threshold=0, operator="==")
    ]


def test_resolved_warning_approved(tmp_path: Path) -> None:
    """A resolved warning no longer makes the verdict CONDITIONAL; it is listed."""
    window = make_window(tmp_path)
    fill(window)
    add_record(window, 3, _logs_error())
    add_resolution(
        window.directory,
        "logs.errors",
        "sandbox 404s",
        author="bob",
        moment=after(window),
    )

    verdict = decide(window, moment=after(window))
    page = write_reports(verdict, window.directory)["md"].read_text()

    assert verdict.decision == "APPROVED"
    assert verdict.issues[0].status == "resolved"
    assert verdict.excused[0].check == "logs.errors[app.log]"
    assert "resolved: sandbox 404s (bob)" in page


def test_failure_after_resolution_open(tmp_path: Path) -> None:
    """A resolution covers earlier failures only; a later failure stays open."""
    window = make_window(tmp_path)
    fill(window)
    add_record(window, 3, _logs_error())
    add_resolution(window.directory, "logs.errors", "fixed", moment=window.slot(2).due)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"
    assert verdict.issues[0].status == "open"


def test_resolution_can_be_disabled(tmp_path: Path) -> None:
    """With resolution_clears_conditional = false a resolved warning still counts."""
    window = make_window(tmp_path, policy={"resolution_clears_conditional": False})
    fill(window)
    add_record(window, 3, _logs_error())
    add_resolution(window.directory, "logs.errors", "fixed", moment=after(window))

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "CONDITIONAL"
    assert "resolution_clears_conditional = false" in verdict.reasons[0].text


def test_resolved_primary_critical_rejected(tmp_path: Path) -> None:
    """A resolved primary critical failure still rejects under the default policy."""
    window = make_window(tmp_path)
    fill(window)
    failing = healthy_results()
    failing[6] = result("queues.failed[webhook-processing]", "failed", value=2)
    add_record(window, 4, failing)
    add_resolution(
        window.directory, "queues.failed", "replayed the jobs", moment=after(window)
    )

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "REJECTED"
    assert verdict.issues[0].status == "resolved"
    assert "resolution_overrides_primary = true" in verdict.reasons[0].text


def test_primary_override_by_policy(tmp_path: Path) -> None:
    """resolution_overrides_primary = true lets a resolved critical failure go."""
    window = make_window(tmp_path, policy={"resolution_overrides_primary": True})
    fill(window)
    failing = healthy_results()
    failing[6] = result("queues.failed[webhook-processing]", "failed", value=2)
    add_record(window, 4, failing)
    add_resolution(
        window.directory, "queues.failed", "replayed the jobs", moment=after(window)
    )

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "APPROVED"
    assert verdict.excused[0].decision == "REJECTED"


def test_planned_restart_not_counted(tmp_path: Path) -> None:
    """Downtime inside a planned period and the uptime reset after it do not count."""
    window = make_window(tmp_path)
    fill(window)
    down = healthy_results()
    down[0] = result("health.status", "failed", message="connection refused")
    add_record(window, 4, down)
    add_record(window, 5, _uptime_reset())
    add_planned(
        window.directory,
        window.slot(4).due - timedelta(minutes=5),
        window.slot(4).due + timedelta(minutes=20),
        "deploy v1.4",
    )

    verdict = decide(window, moment=after(window))
    statuses = {issue.check: issue.status for issue in verdict.issues}

    assert verdict.decision == "APPROVED"
    assert statuses == {"health.status": "planned", "uptime.no_restart": "planned"}
    assert verdict.counts["planned"] == 2
    assert verdict.counts["critical"] == 0
    assert verdict.uptime["checkpoints_planned_down"] == 1
    assert verdict.timeline["health.status"]["Hour 8"] == "planned"
    assert verdict.planned[0]["slots"] == ["Hour 8"]


def test_planned_covers_only_next_checkpoint(tmp_path: Path) -> None:
    """An uptime reset two checkpoints after a planned period counts again."""
    window = make_window(tmp_path)
    fill(window)
    add_record(window, 6, _uptime_reset())
    add_planned(
        window.directory,
        window.slot(4).due - timedelta(minutes=5),
        window.slot(4).due + timedelta(minutes=20),
        "deploy v1.4",
    )

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "REJECTED"
    assert verdict.issues[0].status == "open"


def test_planned_does_not_cover_queues(tmp_path: Path) -> None:
    """A failed job inside a planned period still rejects: queues are not planned."""
    window = make_window(tmp_path)
    fill(window)
    failing = healthy_results()
    failing[6] = result("queues.failed[webhook-processing]", "failed", value=1)
    add_record(window, 4, failing)
    add_planned(
        window.directory,
        window.slot(4).due - timedelta(minutes=5),
        window.slot(4).due + timedelta(minutes=20),
        "deploy v1.4",
    )

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "REJECTED"


def test_notes_shown_and_escaped(tmp_path: Path) -> None:
    """Notes appear in every report, and a script in a note is escaped in HTML."""
    window = make_window(tmp_path)
    fill(window)
    add_note(
        window.directory,
        "<script>alert('note')</script>",
        author="eve",
        moment=after(window),
    )

    verdict = decide(window, moment=after(window))
    paths = write_reports(verdict, window.directory)
    page = paths["html"].read_text()
    markdown = paths["md"].read_text()

    assert "<script>alert('note')</script>" not in page
    assert "&lt;script&gt;alert(&#x27;note&#x27;)&lt;/script&gt;" in page
    assert "<script>" not in markdown
    assert "&lt;script&gt;" in markdown
    assert "<script>" in paths["json"].read_text()
    assert verdict.notes[0]["author"] == "eve"


def test_alerts_counted(tmp_path: Path) -> None:
    """The alerts file's sent alerts and resolved messages are counted."""
    window = make_window(tmp_path)
    fill(window)
    write_alerts(
        window,
        [
            {"check": "logs.errors[app.log]", "kind": "alert", "sent_at": "t1"},
            {"check": "health.latency", "kind": "alert", "sent_at": "t2"},
            {"check": "logs.errors[app.log]", "kind": "resolved", "sent_at": "t3"},
        ],
    )

    verdict = decide(window, moment=after(window))
    page = write_reports(verdict, window.directory)["html"].read_text()

    assert verdict.alerts["sent"] == 2
    assert verdict.alerts["resolved"] == 1
    assert "2 alert(s) sent" in page


def test_no_alerts_file_zero(tmp_path: Path) -> None:
    """Without an alerts file the count is zero."""
    window = make_window(tmp_path)
    fill(window)

    verdict = decide(window, moment=after(window))

    assert verdict.alerts["sent"] == 0
    assert verdict.alerts["error"] == ""


def test_report_sections_present(tmp_path: Path) -> None:
    """The HTML report contains every section of the post-monitoring report."""
    window = make_window(tmp_path)
    fill(window, skip={3})

    verdict = decide(window, moment=after(window))
    page = write_reports(verdict, window.directory)["html"].read_text()

    for heading in (
        "Availability at checkpoints",
        "Backend uptime at the last checkpoint",
        "Events",
        "Issues encountered",
        "Resolutions and notes",
        "Planned maintenance",
        "Criteria",
        "Timeline",
        "Next steps",
        "Approver name",
        "Date:",
    ):
        assert heading in page, heading
    assert "<td class='missed'>missed</td>" in page


def test_next_steps_name_checks(tmp_path: Path) -> None:
    """CONDITIONAL next steps name the open issues and the note command."""
    window = make_window(tmp_path)
    fill(window)
    add_record(window, 3, _logs_error())

    verdict = decide(window, moment=after(window))

    assert "logs.errors[app.log]" in verdict.next_steps[0]
    assert "--resolve CHECK" in verdict.next_steps[0]


def test_long_timeline_grouped(tmp_path: Path) -> None:
    """A window of hundreds of slots shows at most 49 timeline columns."""
    window = new_window(tmp_path, "api", 300 * 60, 60, start=START)
    for index in range(window.slot_count):
        add_record(window, index)

    verdict = decide(window, moment=after(window))
    page = write_reports(verdict, window.directory)["html"].read_text()
    timeline = page[page.index("class='timeline'") :]
    header = timeline[: timeline.index("</tr>")]

    assert header.count("<th>") - 1 <= 49
    assert "Minute 0–Minute 6" in header


def test_policy_type_checked(tmp_path: Path) -> None:
    """A policy value of the wrong type is rejected with its key and the fix."""
    window = make_window(tmp_path, policy={"resolution_overrides_primary": "yes"})

    with pytest.raises(ValueError) as error:
        decide(window, moment=after(window))

    assert "resolution_overrides_primary" in str(error.value)
    assert "'yes'" in str(error.value)


def test_info_failure_not_counted(tmp_path: Path) -> None:
    """A failed info-level check is listed but leaves the decision APPROVED."""
    window = make_window(tmp_path)
    fill(window)
    quiet_worker = healthy_results() + [
        result("logs.worker_alive", "failed", value="not seen", threshold="seen")
    ]
    add_record(window, 3, quiet_worker)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "APPROVED"
    assert verdict.issues[0].check == "logs.worker_alive"
    assert verdict.counts["info"] == 1


def test_trend_needs_spread_points(tmp_path: Path) -> None:
    """Rising memory over checkpoints minutes apart in one slot fits no trend."""
    window = make_window(tmp_path)
    for minute, megabytes in enumerate((100, 140, 180, 220), start=1):
        add_record(
            window,
            0,
            measurements={"backend_rss_bytes": megabytes * 1024 * 1024},
            late_s=minute * 60,
            rerun=minute,
        )
    moment = window.slot(0).due + timedelta(minutes=30)

    verdict = decide(window, moment=moment)
    backend = next(chart for chart in verdict.charts if chart.check == "backend.memory")

    assert len(verdict.checkpoints) == 4
    assert backend.trend is not None
    assert backend.trend.points == 4
    assert backend.trend.slope_per_hour is None
    assert [r for r in verdict.reasons if r.kind == "trend"] == []

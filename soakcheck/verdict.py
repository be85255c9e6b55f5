"""The go/no-go decision over a window's checkpoint records.

Default policy, as the readiness checklist states it:
- REJECTED: a primary criterion failed with critical severity.
- CONDITIONAL: any other failed check, a missed slot, a required P0 test that
  did not run or did not pass, a window that has not ended yet, or a memory
  trend that crosses its cap before the window ends.
- APPROVED: every criterion passed at every slot and all P0 tests passed.

The notes recorded during the window (see soakcheck.notes) change the
decision only where the policy allows it. A failure inside a planned
maintenance period does not count. A resolved failure stops counting unless
it is a primary critical one, which still rejects unless the policy sets
`resolution_overrides_primary`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from soakcheck.checklist import CHECKS, family_of
from soakcheck.notes import Notebook, Planned, read_notes
from soakcheck.plots import (
    CHARTED_CHECKS,
    CHARTED_MEASUREMENTS,
    Chart,
    build_charts,
    is_number,
)
from soakcheck.record import NOT_RECORDS, RECORD_SUFFIX, read_record
from soakcheck.window import Window, now_utc

log = logging.getLogger(__name__)

APPROVED = "APPROVED"
CONDITIONAL = "CONDITIONAL"
REJECTED = "REJECTED"
EXIT_CODES = {APPROVED: 0, CONDITIONAL: 1, REJECTED: 2}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
ALERTS_FILE = "alerts.json"

# The policy keys the decision reads from `window.policy`, with their defaults.
# A P0 family of several tests is as bad as its worst member.
P0_OUTCOME_RANK = {"passed": 0, "skipped": 1, "failed": 2}

POLICY_DEFAULTS: dict[str, Any] = {
    # P0 tests that must have run and passed.
    "required_p0": [],
    # Whether a slot with no checkpoint makes the verdict CONDITIONAL.
    "missed_slot_is_conditional": True,
    # Whether a resolved failure that is not primary critical stops counting.
    "resolution_clears_conditional": True,
    # Whether a resolved primary critical failure stops counting too. Off,
    # because the checklist rejects every primary critical failure.
    "resolution_overrides_primary": False,
    # Check families (fnmatch patterns) whose failures inside a planned
    # maintenance period do not count.
    "planned_checks": ["uptime.no_restart", "uptime.delta", "health.*", "logs.*"],
    # Check families that may also fail at the first checkpoint after the
    # period, because the restarted backend's uptime begins again at zero.
    "planned_after_checks": ["uptime.no_restart", "uptime.delta"],
    # Caps the memory trends are projected to. None takes the backend.memory
    # threshold of the records and the checklist's 100 MB Redis limit.
    "backend_memory_cap_mb": None,
    "redis_memory_cap_mb": None,
    # Fewest measured checkpoints a trend is fitted over.
    "trend_min_points": 3,
    # Hours after the window end in which a projected crossing still warns.
    "trend_horizon_h": 0.0,
}


@dataclass
class Issue:
    """One check that failed at one or more checkpoints."""

    check: str
    severity: str
    criterion: str
    area: str
    first_slot: str
    last_slot: str
    occurrences: int
    worst_value: Any
    threshold: Any
    unit: str
    operator: str
    message: str
    status: str = "open"  # open, resolved or planned
    effect: str = ""  # the decision it forces, or "" when it does not count
    open_occurrences: int = 0
    resolved_occurrences: int = 0
    planned_occurrences: int = 0
    resolution: dict[str, Any] | None = None
    planned_reason: str = ""


@dataclass
class Reason:
    """One line of the decision's justification."""

    decision: str
    text: str
    check: str = ""
    slot: str = ""
    kind: str = ""  # issue, trend, missed, p0, unfinished, empty or unreadable


@dataclass
class Verdict:
    """The decision and everything the post-monitoring report shows."""

    decision: str
    window: dict[str, Any]
    generated_at: str
    complete: bool
    reasons: list[Reason]
    issues: list[Issue]
    slots: list[dict[str, Any]]
    missed_slots: list[str]
    p0: dict[str, dict[str, Any]]
    criteria: list[dict[str, Any]]
    counts: dict[str, int]
    uptime: dict[str, Any]
    timeline: dict[str, dict[str, str]]
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    # Failures and trends the policy lets go because of a note.
    excused: list[Reason] = field(default_factory=list)
    trends: dict[str, dict[str, Any]] = field(default_factory=dict)
    charts: list[Chart] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    planned: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready data, sharing its plain containers.

        `asdict` would deep-copy the timeline and the checkpoint list, which
        takes seconds on a window of thousands of checkpoints. Only the fields
        that hold dataclasses are converted.
        """
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        for name in ("reasons", "issues", "excused"):
            data[name] = [asdict(item) for item in data[name]]
        data["charts"] = [chart.to_dict() for chart in self.charts]
        data["exit_code"] = self.exit_code
        return data


def effective_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """Merge a window's policy over the defaults, raising ValueError on bad types."""
    merged = {**POLICY_DEFAULTS, **{k: v for k, v in policy.items() if v is not None}}
    for key, default in POLICY_DEFAULTS.items():
        value = merged[key]
        if isinstance(default, bool):
            valid, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, list):
            valid = isinstance(value, list) and all(isinstance(v, str) for v in value)
            expected = "a list of check ids"
        else:
            valid = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool)
            )
            expected = "a number"
        if not valid:
            raise ValueError(
                f"window policy {key}: expected {expected}, got {value!r}; "
                f"fix [policy] in the target file or the window's window.json"
            )
    return merged


def decide(
    window: Window,
    records: Iterable[dict[str, Any]] | None = None,
    *,
    required_p0: list[str] | None = None,
    moment: datetime | None = None,
) -> Verdict:
    """Apply the window's policy to its records, notes and alerts.

    Without `records`, the window's record files are read one at a time and
    each is dropped once counted, so memory does not grow with their size.
    """
    moment = moment or now_utc()
    policy = effective_policy(window.policy)
    if required_p0 is None:
        required_p0 = list(policy["required_p0"])
    notebook = read_notes(window.directory)

    collector = _Collector(window, notebook, policy)
    unreadable: list[str] = []
    for record in records if records is not None else iter_records(window, unreadable):
        collector.add(record)
    collector.finish()
    verdict = _judge(window, collector, notebook, policy, required_p0, moment)
    if unreadable:
        _add_unreadable(verdict, sorted(unreadable))
    return verdict


def iter_records(
    window: Window, unreadable: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield a window's readable checkpoint records, in no particular order.

    The names of record files that cannot be read are appended to
    `unreadable` when it is given.
    """
    if not window.directory.is_dir():
        return
    for path in window.directory.glob(f"*{RECORD_SUFFIX}"):
        if path.name in NOT_RECORDS or path.name.startswith("."):
            continue
        record = read_record(path)
        if record is not None:
            yield record
        elif unreadable is not None:
            unreadable.append(path.name)


def _add_unreadable(verdict: Verdict, names: list[str]) -> None:
    """Make unreadable record files a CONDITIONAL reason that names them."""
    listed = ", ".join(names[:10])
    if len(names) > 10:
        listed += f" and {len(names) - 10} more"
    verdict.reasons.append(
        Reason(
            CONDITIONAL,
            f"{len(names)} checkpoint record(s) could not be read and were not "
            f"counted: {listed}",
            kind="unreadable",
        )
    )
    if verdict.decision == APPROVED:
        verdict.decision = CONDITIONAL
    verdict.next_steps = next_steps(
        verdict.decision, verdict.reasons, verdict.window["id"]
    )


def _judge(
    window: Window,
    collector: _Collector,
    notebook: Notebook,
    policy: dict[str, Any],
    required_p0: list[str],
    moment: datetime,
) -> Verdict:
    """Turn the collected facts into reasons, then into the decision."""
    slots, missed = _slot_table(window, collector.slot_runs, moment)
    complete = window.is_over(moment) or all(s["status"] != "upcoming" for s in slots)
    charts = collector.charts()

    issues = collector.issues()
    reasons: list[Reason] = []
    excused: list[Reason] = []
    for issue in issues:
        judged = _judge_issue(
            issue,
            collector.open_primary.get(issue.check, 0),
            collector.resolved_primary.get(issue.check, 0),
            policy,
        )
        (reasons if issue.effect else excused).append(judged)
    criteria = collector.criteria(required_p0)
    for chart in charts:
        _judge_trend(chart, window, notebook, policy, reasons, excused)
        if chart.trend is not None and chart.trend.status == "warning":
            _mark_trend(criteria, chart.check)
    if policy["missed_slot_is_conditional"]:
        reasons += [
            Reason(CONDITIONAL, f"slot {slot} was missed", slot=slot, kind="missed")
            for slot in missed
        ]
    reasons += _p0_reasons(required_p0, collector.p0)
    if not complete:
        upcoming = [s["label"] for s in slots if s["status"] == "upcoming"]
        reasons.append(
            Reason(
                CONDITIONAL,
                f"window not finished: {len(upcoming)} slot(s) still to come "
                f"({upcoming[0]} … {upcoming[-1]})",
                kind="unfinished",
            )
        )
    if not collector.scheduled:
        reasons.append(
            Reason(
                CONDITIONAL, "no checkpoint was recorded in the window", kind="empty"
            )
        )

    if any(reason.decision == REJECTED for reason in reasons):
        decision = REJECTED
    elif reasons:
        decision = CONDITIONAL
    else:
        decision = APPROVED
    reasons.sort(key=lambda r: r.decision != REJECTED)

    return Verdict(
        decision=decision,
        window=window.to_dict(),
        generated_at=moment.isoformat(timespec="seconds"),
        complete=complete,
        reasons=reasons,
        issues=issues,
        slots=slots,
        missed_slots=missed,
        p0=collector.p0,
        criteria=criteria,
        counts=collector.counts,
        uptime=collector.uptime(),
        timeline=collector.timeline,
        checkpoints=[run.summary() for run in collector.runs],
        excused=excused,
        trends={chart.key: asdict(chart.trend) for chart in charts if chart.trend},
        charts=charts,
        notes=notebook.entries,
        planned=collector.planned_periods(),
        alerts=read_alerts(window.directory),
        policy=policy,
        next_steps=next_steps(decision, reasons, window.id),
    )


def _slot_table(
    window: Window, slot_runs: dict[int, list[str]], moment: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    grace = timedelta(seconds=window.interval_s / 2)
    table, missed = [], []
    for slot in window.slots():
        done = slot_runs.get(slot.index, [])
        if done:
            status = "done"
        elif moment > slot.due + grace:
            status = "missed"
            missed.append(slot.label)
        else:
            status = "upcoming"
        table.append(
            {
                "index": slot.index,
                "id": slot.id,
                "label": slot.label,
                "due": slot.due.isoformat(),
                "status": status,
                "checkpoints": done,
            }
        )
    return table, missed


@dataclass(slots=True)
class _Run:
    """The part of a checkpoint record the verdict keeps once it is counted."""

    id: str | None
    kind: str
    slot: str
    slot_index: int | None
    started: datetime
    finished: datetime
    totals: dict[str, Any]
    measured: dict[str, Any]

    @classmethod
    def of(cls, window: Window, record: dict[str, Any]) -> _Run:
        checkpoint = record.get("checkpoint") or {}
        index = checkpoint.get("slot_index")
        index = index if isinstance(index, int) else None
        started, finished = _times(window, checkpoint, index)
        measurements = record.get("measurements") or {}
        return cls(
            id=checkpoint.get("id"),
            kind=checkpoint.get("kind", ""),
            slot=checkpoint.get("slot_label") or checkpoint.get("id") or "?",
            slot_index=index,
            started=started,
            finished=finished,
            totals=record.get("summary", {}),
            measured={key: measurements.get(key) for key in MEASUREMENTS},
        )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "slot": self.slot,
            "finished_at": self.finished.isoformat(),
            "summary": self.totals,
        }


# The measurements the charts and the uptime summary read from each record.
MEASUREMENTS = (*CHARTED_MEASUREMENTS, "uptime_s")


def _times(
    window: Window, checkpoint: dict[str, Any], index: int | None
) -> tuple[datetime, datetime]:
    """Return when a checkpoint started and finished, from its record or its slot."""
    started = _parse_time(checkpoint.get("started_at"))
    finished = _parse_time(checkpoint.get("finished_at"))
    due = window.start + timedelta(seconds=(index or 0) * window.interval_s)
    started = started or finished or due
    return started, finished or started


def _parse_time(value: Any) -> datetime | None:
    """Parse an ISO time from a record, taking one without an offset as UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _matches(check: str, patterns: list[str]) -> bool:
    family = family_of(check)
    return any(check == p or fnmatchcase(family, p) for p in patterns)


def _worse(value: Any, other: Any, operator: str) -> Any:
    numbers = isinstance(value, int | float) and isinstance(other, int | float)
    if not numbers or isinstance(value, bool) or isinstance(other, bool):
        return other
    if operator in ("<", "<=", "=="):
        return max(value, other)
    return min(value, other)


class _Collector:
    """The tallies of a window's records, counted as they arrive in any order.

    Passed and skipped results are counted on arrival and then dropped. Failed
    results are kept until `finish`, because whether one falls just after a
    planned period depends on every checkpoint's time.
    """

    def __init__(
        self, window: Window, notebook: Notebook, policy: dict[str, Any]
    ) -> None:
        self.window = window
        self.notebook = notebook
        self.planned_checks = list(policy["planned_checks"])
        self.after_checks = list(policy["planned_after_checks"])
        self.policy = policy

        self.runs: list[_Run] = []
        self.scheduled: list[_Run] = []
        self.slot_runs: dict[int, list[str]] = {}
        self.failures: list[tuple[_Run, dict[str, Any]]] = []
        # The newest run per (kind, slot label) owns that timeline column.
        self.owners: dict[tuple[str, str], _Run] = {}
        self.thresholds: dict[str, tuple[datetime, float]] = {}

        self.by_check: dict[str, Issue] = {}
        # Primary critical failures per check, open and resolved.
        self.open_primary: dict[str, int] = {}
        self.resolved_primary: dict[str, int] = {}
        self.timeline: dict[str, dict[str, str]] = {}
        self.counts = {"critical": 0, "warning": 0, "info": 0, "planned": 0}
        self.rows = _criteria_rows()
        self.up = self.down = self.planned_down = 0
        self.p0: dict[str, dict[str, Any]] = {}
        self.p0_times: dict[str, datetime] = {}
        self.covered: dict[int, list[str]] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Count one record's passed results and keep its failed ones."""
        run = _Run.of(self.window, record)
        if run.kind not in ("scheduled", "p0"):
            return
        self.runs.append(run)
        if run.kind == "scheduled":
            self.scheduled.append(run)

        owner = self.owners.get((run.kind, run.slot))
        newest = owner is None or run.finished >= owner.finished
        if newest:
            self.owners[(run.kind, run.slot)] = run
        cells = self.timeline
        rows = self.rows
        for result in record.get("results", []):
            check = result["check"]
            outcome = result["outcome"]
            if check.startswith("p0."):
                self._p0_result(run, result)
            if run.kind == "scheduled" and check.startswith(CHARTED_CHECKS):
                self._threshold(run, check, result)
            if outcome == "failed":
                self.failures.append((run, result))
                continue
            if newest:
                cells.setdefault(check, {})[run.slot] = outcome
            row = rows.get((result.get("criterion", ""), result.get("area", "")))
            if row is not None and outcome == "passed":
                row["passed"] += 1
            if check == "health.status" and outcome == "passed":
                self.up += run.kind == "scheduled"

    def _p0_result(self, run: _Run, result: dict[str, Any]) -> None:
        """Keep the newest P0 run per family, failed if any of its tests failed."""
        family = family_of(result["check"])
        known = self.p0_times.get(family)
        if known is not None and known > run.finished:
            return
        if known == run.finished:
            current = self.p0[family]["outcome"]
            if P0_OUTCOME_RANK[result["outcome"]] <= P0_OUTCOME_RANK[current]:
                return
        self.p0_times[family] = run.finished
        self.p0[family] = {
            "outcome": result["outcome"],
            "message": result.get("message", ""),
            "at": run.finished.isoformat(),
        }

    def _threshold(self, run: _Run, check: str, result: dict[str, Any]) -> None:
        """Keep the newest numeric threshold of each charted check."""
        family = family_of(check)
        value = result.get("threshold")
        if family not in CHARTED_CHECKS or not is_number(value):
            return
        known = self.thresholds.get(family)
        if known is None or run.finished >= known[0]:
            self.thresholds[family] = (run.finished, float(value))

    def finish(self) -> None:
        """Sort the runs by time and classify every kept failure."""
        self.runs.sort(key=lambda run: run.finished)
        self.scheduled.sort(key=lambda run: run.finished)
        for run in self.scheduled:
            if run.slot_index is not None:
                self.slot_runs.setdefault(run.slot_index, []).append(run.id or "?")
        for number, period in enumerate(self.notebook.planned):
            self.covered[number] = [
                run.slot
                for run in self.runs
                if period.covers(run.started, run.finished)
            ]
        first_after = self._first_after()

        self.failures.sort(key=lambda pair: pair[0].finished)
        for run, result in self.failures:
            status = self._failure(run, result, first_after.get(id(run)))
            if self.owners.get((run.kind, run.slot)) is run:
                cell = result.get("severity", "warning") if status == "open" else status
                self.timeline.setdefault(result["check"], {})[run.slot] = cell
            key = (result.get("criterion", ""), result.get("area", ""))
            row = self.rows.get(key)
            if row is not None:
                row["failed" if status == "open" else status] += 1
            if result["check"] == "health.status" and run.kind == "scheduled":
                if status == "planned":
                    self.planned_down += 1
                else:
                    self.down += 1
        self.failures = []

    def _first_after(self) -> dict[int, Planned]:
        """Map the first scheduled checkpoint started after each period to it."""
        first: dict[int, Planned] = {}
        by_start = sorted(self.scheduled, key=lambda run: run.started)
        for period in self.notebook.planned:
            for run in by_start:
                if run.started > period.end:
                    first.setdefault(id(run), period)
                    break
        return first

    def _failure(self, run: _Run, result: dict[str, Any], after: Planned | None) -> str:
        """Record one failed result and return its status: open, resolved, planned."""
        check = result["check"]
        severity = result.get("severity", "warning")
        criterion = result.get("criterion", "secondary")
        issue = self._issue(result, run.slot)

        period = None
        if _matches(check, self.planned_checks):
            period = next(
                (
                    p
                    for p in self.notebook.planned
                    if p.covers(run.started, run.finished)
                ),
                None,
            )
        if period is None and after is not None and _matches(check, self.after_checks):
            period = after
        if period is not None:
            self.counts["planned"] += 1
            issue.planned_occurrences += 1
            issue.planned_reason = period.reason
            return "planned"

        self.counts[severity] = self.counts.get(severity, 0) + 1
        self._escalate(issue, severity, criterion, result)
        primary_critical = criterion == "primary" and severity == "critical"
        resolution = self.notebook.resolution_for(check, run.finished)
        if resolution is None:
            issue.open_occurrences += 1
            if primary_critical:
                self.open_primary[check] = self.open_primary.get(check, 0) + 1
            return "open"

        issue.resolved_occurrences += 1
        issue.resolution = {
            "reason": resolution.reason,
            "author": resolution.author,
            "at": resolution.at.isoformat(timespec="seconds"),
        }
        if primary_critical:
            self.resolved_primary[check] = self.resolved_primary.get(check, 0) + 1
        return "resolved"

    def _issue(self, result: dict[str, Any], slot: str) -> Issue:
        check = result["check"]
        issue = self.by_check.get(check)
        if issue is None:
            issue = Issue(
                check=check,
                severity="info",
                criterion=result.get("criterion", "secondary"),
                area=result.get("area", ""),
                first_slot=slot,
                last_slot=slot,
                occurrences=0,
                worst_value=result.get("value"),
                threshold=result.get("threshold"),
                unit=result.get("unit", ""),
                operator=result.get("operator", ""),
                message=result.get("message", ""),
            )
            self.by_check[check] = issue
        else:
            issue.last_slot = slot
            issue.worst_value = _worse(
                issue.worst_value, result.get("value"), issue.operator
            )
        issue.occurrences += 1
        return issue

    @staticmethod
    def _escalate(
        issue: Issue, severity: str, criterion: str, result: dict[str, Any]
    ) -> None:
        """Keep the worst severity and criterion among the failures that count."""
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(issue.severity, 0):
            issue.severity = severity
            issue.message = result.get("message", issue.message)
        if criterion == "primary":
            issue.criterion = "primary"

    def issues(self) -> list[Issue]:
        for issue in self.by_check.values():
            if issue.open_occurrences:
                issue.status = "open"
            elif issue.resolved_occurrences:
                issue.status = "resolved"
            else:
                issue.status = "planned"
                # Planned failures never escalate an issue, so show the check's own.
                issue.severity = CHECKS[family_of(issue.check)].severity
        return sorted(
            self.by_check.values(),
            key=lambda i: (
                i.status != "open",
                -SEVERITY_RANK.get(i.severity, 0),
                i.criterion != "primary",
            ),
        )

    def charts(self) -> list[Chart]:
        start = self.window.start
        return build_charts(
            self.window,
            [(run.finished - start).total_seconds() for run in self.scheduled],
            [run.measured for run in self.scheduled],
            {family: value for family, (_, value) in self.thresholds.items()},
            self.policy,
        )

    def criteria(self, required_p0: list[str]) -> list[dict[str, Any]]:
        """Summarise each (criterion, area) pair: passed everywhere or not."""
        table = []
        for row in self.rows.values():
            if row["failed"]:
                status = "failed"
            elif row["resolved"]:
                status = "resolved"
            elif row["passed"] or row["planned"]:
                status = "passed"
            else:
                status = "not measured"
            table.append({**row, "checks": sorted(row["checks"]), "status": status})
        for check in sorted(set(required_p0) | set(self.p0)):
            outcome = self.p0.get(check, {}).get("outcome", "not run")
            table.append(
                {
                    "criterion": "manual",
                    "area": check,
                    "checks": [check],
                    "status": outcome,
                }
            )
        order = {"primary": 0, "secondary": 1, "manual": 2}
        return sorted(table, key=lambda row: (order[row["criterion"]], row["area"]))

    def uptime(self) -> dict[str, Any]:
        """Availability at checkpoints; planned maintenance is left out of it."""
        measured = self.up + self.down
        uptimes = [
            run.measured["uptime_s"]
            for run in self.scheduled
            if run.measured.get("uptime_s") is not None
        ]
        return {
            "checkpoints_up": self.up,
            "checkpoints_down": self.down,
            "checkpoints_planned_down": self.planned_down,
            "availability_percent": (
                round(100 * self.up / measured, 1) if measured else None
            ),
            "last_backend_uptime_s": uptimes[-1] if uptimes else None,
        }

    def planned_periods(self) -> list[dict[str, Any]]:
        return [
            {
                "from": period.start.isoformat(),
                "to": period.end.isoformat(),
                "reason": period.reason,
                "author": period.author,
                "at": period.at.isoformat(timespec="seconds"),
                "slots": list(dict.fromkeys(self.covered.get(number, []))),
            }
            for number, period in enumerate(self.notebook.planned)
        ]


def _criteria_rows() -> dict[tuple[str, str], dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in CHECKS.values():
        if spec.criterion in ("primary", "secondary"):
            row = rows.setdefault(
                (spec.criterion, spec.area),
                {
                    "criterion": spec.criterion,
                    "area": spec.area,
                    "checks": set(),
                    "failed": 0,
                    "resolved": 0,
                    "planned": 0,
                    "passed": 0,
                },
            )
            row["checks"].add(spec.family)
    return rows


def _judge_issue(
    issue: Issue, open_primary: int, resolved_primary: int, policy: dict[str, Any]
) -> Reason:
    """Set the issue's effect on the decision and return the line explaining it.

    `open_primary` and `resolved_primary` count its primary critical failures.
    An issue that does not count gets a line with the decision it would force
    without its notes.
    """
    text = (
        f"{issue.check} failed at {issue.occurrences} checkpoint(s), "
        f"first {issue.first_slot}, last {issue.last_slot}: {issue.message}"
    )
    waived = []
    if issue.resolved_occurrences:
        waived.append(f"{issue.resolved_occurrences} resolved")
    if issue.planned_occurrences:
        waived.append(f"{issue.planned_occurrences} planned")
    if waived and (issue.open_occurrences or len(waived) > 1):
        text += f" ({', '.join(waived)})"

    if issue.criterion == "info" and issue.severity == "info":
        # Info checks are shown, but the checklist decides nothing on them.
        issue.effect = ""
        return Reason(
            "INFO", text + "; informational", issue.check, issue.first_slot, "issue"
        )
    if open_primary:
        issue.effect = REJECTED
    elif resolved_primary and not policy["resolution_overrides_primary"]:
        issue.effect = REJECTED
        text += (
            f"; resolved ({_resolution_text(issue)}), but a resolution does not "
            f"clear a primary critical failure unless the policy sets "
            f"resolution_overrides_primary = true"
        )
    elif issue.open_occurrences:
        issue.effect = CONDITIONAL
    elif issue.resolved_occurrences and not policy["resolution_clears_conditional"]:
        issue.effect = CONDITIONAL
        text += (
            f"; resolved ({_resolution_text(issue)}), but the policy sets "
            f"resolution_clears_conditional = false"
        )
    else:
        issue.effect = ""
    if issue.effect:
        return Reason(issue.effect, text, issue.check, issue.first_slot, "issue")

    if issue.status == "resolved":
        text += f"; resolved: {_resolution_text(issue)}"
    else:
        text += f"; during planned maintenance: {issue.planned_reason}"
    spec = CHECKS[family_of(issue.check)]
    primary_critical = spec.criterion == "primary" and spec.severity == "critical"
    would_be = REJECTED if resolved_primary or primary_critical else CONDITIONAL
    return Reason(would_be, text, issue.check, issue.first_slot, "issue")


def _resolution_text(issue: Issue) -> str:
    resolution = issue.resolution or {}
    return (
        f"{resolution.get('reason', '')}, by {resolution.get('author', '?')} "
        f"at {resolution.get('at', '?')}"
    )


def _judge_trend(
    chart: Chart,
    window: Window,
    notebook: Notebook,
    policy: dict[str, Any],
    reasons: list[Reason],
    excused: list[Reason],
) -> None:
    """Warn about a memory series whose trend crosses its cap before the end."""
    trend = chart.trend
    if not chart.warns or trend is None or not trend.crosses_before_end:
        return
    assert trend.slope_per_hour is not None and trend.crossing_s is not None

    # Times are named like the slot labels, such as "Hour 17.5".
    unit_s, unit = 1, "Second"
    for size, name in ((3600, "Hour"), (60, "Minute")):
        if window.interval_s >= size and (window.interval_s / size).is_integer():
            unit_s, unit = size, name
            break
    crossing = f"{unit} {trend.crossing_s / unit_s:.1f}"
    end = f"{unit} {window.length_s / unit_s:g}"
    text = (
        f"{chart.title} grows {trend.slope_per_hour:.1f} MB/h (least-squares fit "
        f"over {trend.points} checkpoints, last value {trend.last_value:.1f} MB); "
        f"at that rate it crosses the {trend.cap:g} MB cap ({trend.cap_source}) "
        f"at {crossing} ({trend.crossing_at}), before the window ends at {end}"
    )
    if policy["trend_horizon_h"]:
        text += f" plus the {policy['trend_horizon_h']:g} h trend horizon"

    # A resolution recorded after the last measured checkpoint explains the
    # growth; an older one predates it.
    last = window.start + timedelta(seconds=max(chart.x_s, default=0.0))
    resolution = notebook.resolution_for(chart.check, last)
    if resolution is not None and policy["resolution_clears_conditional"]:
        trend.status = "resolved"
        text += (
            f"; resolved: {resolution.reason}, by {resolution.author} "
            f"at {resolution.at.isoformat(timespec='seconds')}"
        )
        excused.append(Reason(CONDITIONAL, text, chart.check, kind="trend"))
        return
    trend.status = "warning"
    reasons.append(Reason(CONDITIONAL, text, chart.check, kind="trend"))


def _mark_trend(criteria: list[dict[str, Any]], check: str) -> None:
    """Show a trend warning in the criteria row of the check it projects."""
    spec = CHECKS[family_of(check)]
    for row in criteria:
        if (row["criterion"], row["area"]) == (spec.criterion, spec.area):
            if row["status"] in ("passed", "resolved"):
                row["status"] = f"{row['status']}, trend warning"


def _p0_reasons(required: list[str], p0: dict[str, dict[str, Any]]) -> list[Reason]:
    reasons = []
    for check in required:
        outcome = p0.get(check, {}).get("outcome")
        if outcome is None:
            text = f"P0 test {check} did not run"
        elif outcome != "passed":
            text = f"P0 test {check} {outcome}"
        else:
            continue
        reasons.append(Reason(CONDITIONAL, text, check, kind="p0"))
    return reasons


def read_alerts(directory: Path) -> dict[str, Any]:
    """Count the alerts sent during the window, from `alerts.json` if present."""
    summary: dict[str, Any] = {"sent": 0, "resolved": 0, "checks": [], "error": ""}
    path = directory / ALERTS_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return summary
    except (OSError, ValueError) as error:
        log.warning("alerts file %s unreadable: %s", path, error)
        summary["error"] = f"{ALERTS_FILE} unreadable: {error}"
        return summary
    if not isinstance(entries, list):
        summary["error"] = f"{ALERTS_FILE} is not a list of alerts"
        return summary

    checks = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("kind") == "alert":
            summary["sent"] += 1
            checks.add(str(entry.get("check", "?")))
        elif entry.get("kind") == "resolved":
            summary["resolved"] += 1
    summary["checks"] = sorted(checks)
    return summary


def next_steps(decision: str, reasons: list[Reason], window_id: str) -> list[str]:
    """Say what to do after this decision, naming the reasons' checks."""
    if decision == APPROVED:
        return [
            "Sign below and schedule the go-live.",
            "Keep the alerts and the scheduled checkpoint running after launch.",
        ]
    kinds: dict[str, list[Reason]] = {}
    for reason in reasons:
        kinds.setdefault(reason.kind, []).append(reason)

    if decision == REJECTED:
        critical = sorted({r.check for r in reasons if r.decision == REJECTED})
        steps = [
            f"Do not go live: fix {', '.join(critical)}.",
            "Start a new soak window once the fixes are deployed.",
        ]
        if "trend" in kinds:
            steps.append(_trend_step(kinds["trend"]))
        return steps

    steps = []
    note = f"python -m soakcheck note --window {window_id}"
    issues = sorted({r.check for r in kinds.get("issue", [])})
    if issues:
        steps.append(
            f"Fix or accept {', '.join(issues)}, then record why: "
            f'`{note} --resolve CHECK --reason "..."`.'
        )
    if "trend" in kinds:
        steps.append(_trend_step(kinds["trend"]))
    if "missed" in kinds:
        slots = ", ".join(r.slot for r in kinds["missed"])
        steps.append(
            f"Explain the missed slots ({slots}) in a note, or run a new window."
        )
    if "p0" in kinds:
        steps.append("Run the P0 tests that did not run or pass: `make p0`.")
    if "unfinished" in kinds:
        steps.append("Wait for the remaining slots, then run `make verdict` again.")
    if "empty" in kinds:
        steps.append("Record checkpoints with `make check` or `make monitor`.")
    if "unreadable" in kinds:
        steps.append(
            "Restore or remove the unreadable checkpoint records named above; "
            "the log of `make verdict` says what is wrong with each."
        )
    steps.append("Decide with the approver whether the remaining risk allows go-live.")
    return steps


def _trend_step(reasons: list[Reason]) -> str:
    checks = ", ".join(sorted({r.check for r in reasons}))
    return (
        f"Find the cause of the memory growth ({checks}) before go-live, for "
        f"example from heap snapshots a few hours apart, or record why it stops "
        f"with `--resolve {checks.split(', ')[0]}`."
    )

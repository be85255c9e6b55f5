"""The go/no-go decision over a window's checkpoint records.

Default policy, as the readiness checklist states it:
- REJECTED: a primary criterion failed with critical severity.
- CONDITIONAL: any other failed check, a missed slot, a required P0 test that
  did not run or did not pass, or a window that has not ended yet.
- APPROVED: every criterion passed at every slot and all P0 tests passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from soakcheck.checklist import CHECKS, family_of
from soakcheck.record import list_records
from soakcheck.window import Window, now_utc

APPROVED = "APPROVED"
CONDITIONAL = "CONDITIONAL"
REJECTED = "REJECTED"
EXIT_CODES = {APPROVED: 0, CONDITIONAL: 1, REJECTED: 2}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


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


@dataclass
class Reason:
    """One line of the decision's justification."""

    decision: str
    text: str
    check: str = ""
    slot: str = ""


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

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        return data


def _slot_name(record: dict[str, Any]) -> str:
    checkpoint = record.get("checkpoint", {})
    return checkpoint.get("slot_label") or checkpoint.get("id") or "?"


def _worse(value: Any, other: Any, operator: str) -> Any:
    numbers = isinstance(value, int | float) and isinstance(other, int | float)
    if not numbers or isinstance(value, bool) or isinstance(other, bool):
        return other
    if operator in ("<", "<=", "==") :
        return max(value, other)
    return min(value, other)


def decide(
    window: Window,
    records: list[dict[str, Any]] | None = None,
    *,
    required_p0: list[str] | None = None,
    moment: datetime | None = None,
) -> Verdict:
    """Apply the default policy to a window's records."""
    moment = moment or now_utc()
    if records is None:
        records = list_records(window.directory)
    if required_p0 is None:
        required_p0 = list(window.policy.get("required_p0", []))

    scheduled = [r for r in records if r.get("checkpoint", {}).get("kind") == "scheduled"]
    p0_records = [r for r in records if r.get("checkpoint", {}).get("kind") == "p0"]

    slots, missed = _slot_table(window, scheduled, moment)
    issues, timeline, counts = _collect_failures(scheduled + p0_records)
    p0 = _p0_outcomes(p0_records + scheduled)
    complete = window.is_over(moment) or all(s["status"] != "upcoming" for s in slots)

    reasons: list[Reason] = []
    for issue in issues:
        primary_critical = issue.criterion == "primary" and issue.severity == "critical"
        reasons.append(
            Reason(
                REJECTED if primary_critical else CONDITIONAL,
                f"{issue.check} failed at {issue.occurrences} checkpoint(s), "
                f"first {issue.first_slot}, last {issue.last_slot}: {issue.message}",
                issue.check,
                issue.first_slot,
            )
        )
    for slot in missed:
        reasons.append(Reason(CONDITIONAL, f"slot {slot} was missed", slot=slot))
    for check in required_p0:
        outcome = p0.get(check, {}).get("outcome")
        if outcome is None:
            reasons.append(Reason(CONDITIONAL, f"P0 test {check} did not run", check))
        elif outcome != "passed":
            reasons.append(
                Reason(CONDITIONAL, f"P0 test {check} {outcome}", check)
            )
    if not complete:
        upcoming = [s["label"] for s in slots if s["status"] == "upcoming"]
        reasons.append(
            Reason(
                CONDITIONAL,
                f"window not finished: {len(upcoming)} slot(s) still to come "
                f"({upcoming[0]} … {upcoming[-1]})",
            )
        )
    if not scheduled:
        reasons.append(Reason(CONDITIONAL, "no checkpoint was recorded in the window"))

    if any(reason.decision == REJECTED for reason in reasons):
        decision = REJECTED
    elif reasons:
        decision = CONDITIONAL
    else:
        decision = APPROVED

    return Verdict(
        decision=decision,
        window=window.to_dict(),
        generated_at=moment.isoformat(timespec="seconds"),
        complete=complete,
        reasons=sorted(reasons, key=lambda r: r.decision != REJECTED),
        issues=issues,
        slots=slots,
        missed_slots=missed,
        p0=p0,
        criteria=_criteria(scheduled + p0_records, required_p0, p0),
        counts=counts,
        uptime=_uptime(scheduled),
        timeline=timeline,
        checkpoints=[_checkpoint_summary(r) for r in scheduled + p0_records],
    )


def _slot_table(
    window: Window, scheduled: list[dict[str, Any]], moment: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    by_slot: dict[int, list[dict[str, Any]]] = {}
    for record in scheduled:
        index = record.get("checkpoint", {}).get("slot_index")
        if isinstance(index, int):
            by_slot.setdefault(index, []).append(record)

    grace = timedelta(seconds=window.interval_s / 2)
    table, missed = [], []
    for slot in window.slots():
        done = by_slot.get(slot.index, [])
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
                "checkpoints": [r["checkpoint"]["id"] for r in done],
            }
        )
    return table, missed


def _collect_failures(
    records: list[dict[str, Any]],
) -> tuple[list[Issue], dict[str, dict[str, str]], dict[str, int]]:
    issues: dict[str, Issue] = {}
    timeline: dict[str, dict[str, str]] = {}
    counts = {"critical": 0, "warning": 0, "info": 0}

    for record in records:
        slot = _slot_name(record)
        for result in record.get("results", []):
            check = result["check"]
            timeline.setdefault(check, {})[slot] = _cell(result)
            if result["outcome"] != "failed":
                continue
            severity = result.get("severity", "warning")
            counts[severity] = counts.get(severity, 0) + 1
            issue = issues.get(check)
            if issue is None:
                issues[check] = Issue(
                    check=check,
                    severity=severity,
                    criterion=result.get("criterion", "secondary"),
                    area=result.get("area", ""),
                    first_slot=slot,
                    last_slot=slot,
                    occurrences=1,
                    worst_value=result.get("value"),
                    threshold=result.get("threshold"),
                    unit=result.get("unit", ""),
                    operator=result.get("operator", ""),
                    message=result.get("message", ""),
                )
                continue
            issue.last_slot = slot
            issue.occurrences += 1
            issue.worst_value = _worse(
                issue.worst_value, result.get("value"), issue.operator
            )
            if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(issue.severity, 0):
                issue.severity = severity
                issue.message = result.get("message", issue.message)
            if result.get("criterion") == "primary":
                issue.criterion = "primary"

    ordered = sorted(
        issues.values(),
        key=lambda i: (-SEVERITY_RANK.get(i.severity, 0), i.criterion != "primary"),
    )
    return ordered, timeline, counts


def _cell(result: dict[str, Any]) -> str:
    if result["outcome"] == "failed":
        return result.get("severity", "warning")
    return result["outcome"]


def _p0_outcomes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    outcomes: dict[str, dict[str, Any]] = {}
    for record in records:
        for result in record.get("results", []):
            if family_of(result["check"]).startswith("p0."):
                outcomes[family_of(result["check"])] = {
                    "outcome": result["outcome"],
                    "message": result.get("message", ""),
                    "at": record.get("checkpoint", {}).get("finished_at"),
                }
    return outcomes


def _criteria(
    records: list[dict[str, Any]],
    required_p0: list[str],
    p0: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Summarise each (criterion, area) pair: passed everywhere or not."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in CHECKS.values():
        if spec.criterion in ("primary", "secondary"):
            rows.setdefault(
                (spec.criterion, spec.area),
                {"criterion": spec.criterion, "area": spec.area, "checks": set(),
                 "failed": 0, "passed": 0},
            )["checks"].add(spec.family)
    for record in records:
        for result in record.get("results", []):
            key = (result.get("criterion", ""), result.get("area", ""))
            row = rows.get(key)
            if row is None:
                continue
            if result["outcome"] == "failed":
                row["failed"] += 1
            elif result["outcome"] == "passed":
                row["passed"] += 1

    table = []
    for row in rows.values():
        if row["failed"]:
            status = "failed"
        elif row["passed"]:
            status = "passed"
        else:
            status = "not measured"
        table.append({**row, "checks": sorted(row["checks"]), "status": status})
    for check in sorted(set(required_p0) | set(p0)):
        outcome = p0.get(check, {}).get("outcome", "not run")
        table.append(
            {"criterion": "manual", "area": check, "checks": [check], "status": outcome}
        )
    order = {"primary": 0, "secondary": 1, "manual": 2}
    return sorted(table, key=lambda row: (order[row["criterion"]], row["area"]))


def _uptime(scheduled: list[dict[str, Any]]) -> dict[str, Any]:
    up = down = 0
    last_uptime = None
    for record in scheduled:
        status = [r for r in record.get("results", []) if r["check"] == "health.status"]
        if status and status[0]["outcome"] == "passed":
            up += 1
        elif status:
            down += 1
        value = record.get("measurements", {}).get("uptime_s")
        if value is not None:
            last_uptime = value
    measured = up + down
    return {
        "checkpoints_up": up,
        "checkpoints_down": down,
        "availability_percent": round(100 * up / measured, 1) if measured else None,
        "last_backend_uptime_s": last_uptime,
    }


def _checkpoint_summary(record: dict[str, Any]) -> dict[str, Any]:
    checkpoint = record.get("checkpoint", {})
    return {
        "id": checkpoint.get("id"),
        "kind": checkpoint.get("kind"),
        "slot": checkpoint.get("slot_label"),
        "finished_at": checkpoint.get("finished_at"),
        "summary": record.get("summary", {}),
    }

"""Post-monitoring report: the verdict as JSON, Markdown and HTML."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from soakcheck.observation import with_unit
from soakcheck.record import write_bytes_atomic, write_json_atomic
from soakcheck.verdict import APPROVED, CONDITIONAL, REJECTED, Verdict

NEXT_STEPS = {
    APPROVED: [
        "Sign below and schedule the go-live.",
        "Keep the soak's alerts and the scheduled checkpoint running after launch.",
    ],
    CONDITIONAL: [
        "Resolve or accept each issue listed, and record the resolution as a note.",
        "Run the P0 tests that did not run (`make p0`) and any missed slots again.",
        "Decide with the approver whether the remaining risk allows go-live.",
    ],
    REJECTED: [
        "Do not go live: fix every critical issue listed above.",
        "Start a new soak window once the fixes are deployed.",
    ],
}


def write_reports(verdict: Verdict, directory: Path) -> dict[str, Path]:
    """Write verdict.json, verdict.md and verdict.html into the window folder."""
    paths = {
        "json": directory / "verdict.json",
        "md": directory / "verdict.md",
        "html": directory / "verdict.html",
    }
    write_json_atomic(paths["json"], verdict.to_dict())
    write_bytes_atomic(paths["md"], render_markdown(verdict).encode("utf-8"))
    write_bytes_atomic(paths["html"], render_html(verdict).encode("utf-8"))
    return paths


def _value(value: Any, unit: str) -> str:
    return "" if value is None else with_unit(value, unit)


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(verdict: Verdict) -> str:
    window = verdict.window
    lines = [
        f"# Soak verdict: {verdict.decision}",
        "",
        f"- Target: {window['target']}",
        f"- Window: {window['id']} (from {window['start']}, "
        f"{window['length_s'] / 3600:g} h, a checkpoint every "
        f"{window['interval_s'] / 60:g} min)",
        f"- Generated: {verdict.generated_at}",
        f"- Window complete: {'yes' if verdict.complete else 'no'}",
        "",
        "## Summary",
        "",
        f"- Availability at checkpoints: "
        f"{verdict.uptime['availability_percent']}% "
        f"({verdict.uptime['checkpoints_up']} up, "
        f"{verdict.uptime['checkpoints_down']} down)",
        f"- Backend uptime at the last checkpoint: "
        f"{_value(verdict.uptime['last_backend_uptime_s'], 's')}",
        f"- Events: {verdict.counts.get('critical', 0)} critical, "
        f"{verdict.counts.get('warning', 0)} warning, "
        f"{verdict.counts.get('info', 0)} info",
        f"- Missed slots: {', '.join(verdict.missed_slots) or 'none'}",
        "",
        "## Reasons",
        "",
    ]
    lines += [f"- **{r.decision}**: {r.text}" for r in verdict.reasons] or [
        "- every criterion passed at every slot and every required P0 test passed"
    ]
    lines += ["", "## Issues encountered", ""]
    if verdict.issues:
        lines += [
            "| check | severity | criterion | first | last | times | worst | limit |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for issue in verdict.issues:
            limit = f"{issue.operator} {_value(issue.threshold, issue.unit)}"
            lines.append(
                f"| {issue.check} | {issue.severity} | {issue.criterion} | "
                f"{issue.first_slot} | {issue.last_slot} | {issue.occurrences} | "
                f"{_md_cell(_value(issue.worst_value, issue.unit))} | "
                f"{_md_cell(limit)} |"
            )
    else:
        lines.append("None.")
    lines += ["", "## Criteria", "", "| criterion | area | status |", "|---|---|---|"]
    for row in verdict.criteria:
        lines.append(f"| {row['criterion']} | {row['area']} | {row['status']} |")
    lines += ["", "## Timeline", ""]
    lines += _markdown_timeline(verdict)
    lines += ["", "## Next steps", ""]
    lines += [f"- {step}" for step in NEXT_STEPS[verdict.decision]]
    lines += [
        "",
        "## Approval",
        "",
        "- Approver name: ______________________",
        "- Date: ______________________",
        "- Decision signed: APPROVED / CONDITIONAL / REJECTED",
        "",
    ]
    return "\n".join(lines)


def _markdown_timeline(verdict: Verdict) -> list[str]:
    slots = [s["label"] for s in verdict.slots if s["status"] == "done"]
    extra = [c["slot"] or c["id"] for c in verdict.checkpoints if c["kind"] == "p0"]
    columns = slots + [c for c in extra if c not in slots]
    if not columns:
        return ["No checkpoint recorded."]
    symbols = {"passed": "ok", "skipped": "–", "critical": "CRIT", "warning": "WARN",
               "info": "info"}
    lines = [
        "| check | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for check in sorted(verdict.timeline):
        cells = [symbols.get(verdict.timeline[check].get(c, ""), "") for c in columns]
        lines.append(f"| {check} | " + " | ".join(cells) + " |")
    return lines


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d1d1f; }
h1 span { padding: .1em .5em; border-radius: .3em; color: #fff; }
.APPROVED { background: #1a7f37; } .CONDITIONAL { background: #b26b00; }
.REJECTED { background: #c62828; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left; }
th { background: #f6f8fa; }
td.passed { background: #dafbe1; } td.critical { background: #ffd7d5; }
td.warning { background: #fff1c2; } td.skipped { color: #777; }
td.failed { background: #ffd7d5; } td.info { background: #ddf4ff; }
.sign { margin-top: 2em; } .sign div { margin: 1em 0; }
"""


def render_html(verdict: Verdict) -> str:
    e = html.escape
    window = verdict.window
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Soak verdict {e(window['id'])}: {verdict.decision}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Soak verdict: <span class='{verdict.decision}'>"
        f"{verdict.decision}</span></h1>",
        "<table>",
        f"<tr><th>Target</th><td>{e(window['target'])}</td></tr>",
        f"<tr><th>Window</th><td>{e(window['id'])}, from {e(window['start'])}</td></tr>",
        f"<tr><th>Generated</th><td>{e(verdict.generated_at)}</td></tr>",
        f"<tr><th>Availability at checkpoints</th>"
        f"<td>{verdict.uptime['availability_percent']}%</td></tr>",
        f"<tr><th>Events</th><td>{verdict.counts.get('critical', 0)} critical, "
        f"{verdict.counts.get('warning', 0)} warning, "
        f"{verdict.counts.get('info', 0)} info</td></tr>",
        f"<tr><th>Missed slots</th>"
        f"<td>{e(', '.join(verdict.missed_slots) or 'none')}</td></tr>",
        "</table>",
        "<h2>Reasons</h2><ul>",
    ]
    if verdict.reasons:
        parts += [f"<li><b>{r.decision}</b>: {e(r.text)}</li>" for r in verdict.reasons]
    else:
        parts.append("<li>Every criterion passed at every slot.</li>")
    parts.append("</ul><h2>Issues encountered</h2>")
    if verdict.issues:
        parts.append(
            "<table><tr><th>check</th><th>severity</th><th>criterion</th>"
            "<th>first</th><th>last</th><th>times</th><th>worst</th><th>limit</th>"
            "<th>message</th></tr>"
        )
        for issue in verdict.issues:
            limit = f"{issue.operator} {_value(issue.threshold, issue.unit)}"
            parts.append(
                f"<tr><td>{e(issue.check)}</td><td class='{issue.severity}'>"
                f"{issue.severity}</td><td>{issue.criterion}</td>"
                f"<td>{e(issue.first_slot)}</td><td>{e(issue.last_slot)}</td>"
                f"<td>{issue.occurrences}</td>"
                f"<td>{e(_value(issue.worst_value, issue.unit))}</td>"
                f"<td>{e(limit)}</td><td>{e(issue.message)}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Criteria</h2><table><tr><th>criterion</th><th>area</th>"
                 "<th>status</th></tr>")
    for row in verdict.criteria:
        css = "passed" if row["status"] == "passed" else (
            "failed" if row["status"] == "failed" else "skipped")
        parts.append(
            f"<tr><td>{row['criterion']}</td><td>{e(row['area'])}</td>"
            f"<td class='{css}'>{e(row['status'])}</td></tr>"
        )
    parts.append("</table><h2>Timeline</h2>")
    parts.append(_html_timeline(verdict))
    parts.append("<h2>Next steps</h2><ul>")
    parts += [f"<li>{e(step)}</li>" for step in NEXT_STEPS[verdict.decision]]
    parts.append(
        "</ul><div class='sign'><div>Approver name: ______________________</div>"
        "<div>Date: ______________________</div></div></body></html>"
    )
    return "\n".join(parts)


def _html_timeline(verdict: Verdict) -> str:
    e = html.escape
    columns = [s["label"] for s in verdict.slots]
    extra = [c["slot"] or c["id"] for c in verdict.checkpoints if c["kind"] == "p0"]
    columns += [c for c in extra if c not in columns]
    status = {s["label"]: s["status"] for s in verdict.slots}
    rows = ["<table><tr><th>check</th>"]
    for column in columns:
        rows.append(f"<th>{e(column)}</th>")
    rows.append("</tr>")
    for check in sorted(verdict.timeline):
        rows.append(f"<tr><td>{e(check)}</td>")
        for column in columns:
            cell = verdict.timeline[check].get(column)
            if cell is None:
                cell = "missed" if status.get(column) == "missed" else ""
            rows.append(f"<td class='{e(cell)}'>{e(cell)}</td>")
        rows.append("</tr>")
    rows.append("</table>")
    return "".join(rows)

"""Post-monitoring report: the verdict as JSON, Markdown and HTML.

The HTML page is self-contained, with inline base64 PNG charts and an inline
style sheet, so it can be mailed or archived as one file. All text
that comes from records or notes is escaped, because log lines can hold HTML.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from soakcheck.observation import with_unit
from soakcheck.plots import render_png, time_unit
from soakcheck.record import write_bytes_atomic
from soakcheck.verdict import Issue, Reason, Verdict

log = logging.getLogger(__name__)

# A longer timeline groups consecutive slots into one column showing the
# worst cell, so a window of thousands of checkpoints stays readable.
MAX_TIMELINE_COLUMNS = 49

# Cell states, worst first. A grouped timeline column shows its worst state.
CELL_ORDER = [
    "critical",
    "warning",
    "info",
    "resolved",
    "planned",
    "missed",
    "passed",
    "skipped",
    "",
]
CELL_TEXT = {
    "critical": "CRIT",
    "warning": "WARN",
    "info": "info",
    "resolved": "resolved",
    "planned": "planned",
    "missed": "missed",
    "passed": "ok",
    "skipped": "–",
    "": "",
}


def write_reports(verdict: Verdict, directory: Path) -> dict[str, Path]:
    """Write verdict.json, verdict.md and verdict.html into the window folder."""
    paths = {
        "json": directory / "verdict.json",
        "md": directory / "verdict.md",
        "html": directory / "verdict.html",
    }

    # Compact, because programs read this file. With `indent` the standard
    # library encodes in Python instead of C: 0.36 s instead of 0.20 s for
    # the 10,000-checkpoint window of bench/bench_verdict.py.
    text = json.dumps(verdict.to_dict(), default=str, separators=(",", ":"))
    write_bytes_atomic(paths["json"], (text + "\n").encode("utf-8"))
    write_bytes_atomic(paths["md"], render_markdown(verdict).encode("utf-8"))
    write_bytes_atomic(paths["html"], render_html(verdict).encode("utf-8"))
    log.info("verdict written window=%s decision=%s", directory.name, verdict.decision)
    return paths


def _value(value: Any, unit: str) -> str:
    return "" if value is None else with_unit(value, unit)


def _limit(issue: Issue) -> str:
    return f"{issue.operator} {_value(issue.threshold, issue.unit)}".strip()


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "not measured"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h ({seconds:.0f} s)"
    return f"{seconds:.0f} s"


def _span(seconds: float) -> str:
    """Format a duration in hours, minutes or seconds, the largest unit it fills."""
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:g} s"


def _availability(verdict: Verdict) -> str:
    uptime = verdict.uptime
    percent = uptime["availability_percent"]
    text = "not measured" if percent is None else f"{percent}%"
    text += f" ({uptime['checkpoints_up']} up, {uptime['checkpoints_down']} down"
    if uptime.get("checkpoints_planned_down"):
        text += (
            f", {uptime['checkpoints_planned_down']} down during planned maintenance"
        )
    return text + ")"


def _events(verdict: Verdict) -> str:
    counts = verdict.counts
    text = (
        f"{counts.get('critical', 0)} critical, {counts.get('warning', 0)} warning, "
        f"{counts.get('info', 0)} info"
    )
    if counts.get("planned"):
        text += f"; {counts['planned']} during planned maintenance"
    return text


def _alerts(verdict: Verdict) -> str:
    alerts = verdict.alerts
    if alerts.get("error"):
        return f"unknown: {alerts['error']}"
    text = f"{alerts.get('sent', 0)} alert(s) sent"
    if alerts.get("checks"):
        text += f" ({', '.join(alerts['checks'])})"
    return text + f", {alerts.get('resolved', 0)} resolved message(s)"


def _summary_rows(verdict: Verdict) -> list[tuple[str, str]]:
    window = verdict.window
    return [
        ("Target", window["target"]),
        (
            "Window",
            f"{window['id']}, from {window['start']}, "
            f"{_span(window['length_s'])} long, "
            f"a checkpoint every {_span(window['interval_s'])}",
        ),
        ("Generated", verdict.generated_at),
        ("Window complete", "yes" if verdict.complete else "no"),
        ("Availability at checkpoints", _availability(verdict)),
        (
            "Backend uptime at the last checkpoint",
            _duration(verdict.uptime["last_backend_uptime_s"]),
        ),
        ("Events", _events(verdict)),
        ("Alerts", _alerts(verdict)),
        ("Missed slots", ", ".join(verdict.missed_slots) or "none"),
        ("Notes recorded", str(len(verdict.notes))),
    ]


def _issue_status(issue: Issue) -> str:
    if issue.status == "resolved" and issue.resolution:
        return f"resolved: {issue.resolution['reason']} ({issue.resolution['author']})"
    if issue.status == "planned":
        return f"planned: {issue.planned_reason}"
    return issue.status


def _note_subject(entry: dict[str, Any]) -> str:
    if entry["kind"] == "resolution":
        return f"resolves {entry['check']}"
    if entry["kind"] == "planned":
        return f"planned {entry['from']} to {entry['to']}"
    return "note"


def _note_text(entry: dict[str, Any]) -> str:
    return entry.get("text") or entry.get("reason") or ""


def _trend_rows(verdict: Verdict) -> list[list[str]]:
    rows = []
    for chart in verdict.charts:
        trend = chart.trend
        if trend is None:
            continue
        slope = (
            "—"
            if trend.slope_per_hour is None
            else f"{trend.slope_per_hour:+.3g} {chart.unit}/h"
        )
        cap = "—" if trend.cap is None else f"{trend.cap:g} {chart.unit}"
        if trend.cap_source:
            cap += f" ({trend.cap_source})"
        crossing = trend.crossing_at or "—"
        if trend.crossing_s is not None:
            scale, unit = time_unit(trend.crossing_s)
            elapsed = trend.crossing_s / scale
            crossing = f"{elapsed:.1f} {unit} after the start, {crossing}"
        rows.append(
            [
                chart.title,
                str(trend.points),
                slope,
                _value(trend.last_value, chart.unit) or "—",
                cap,
                crossing,
                trend.status,
            ]
        )
    return rows


TREND_HEADERS = [
    "series",
    "points",
    "slope",
    "last",
    "cap",
    "projected crossing",
    "status",
]


def _timeline_columns(verdict: Verdict) -> list[tuple[str, list[str]]]:
    """Return (heading, slot labels) per column, grouping slots when too many."""
    labels = [slot["label"] for slot in verdict.slots]
    extra = [c["slot"] or c["id"] for c in verdict.checkpoints if c["kind"] == "p0"]
    labels += [label for label in dict.fromkeys(extra) if label not in labels]
    if len(labels) <= MAX_TIMELINE_COLUMNS:
        return [(label, [label]) for label in labels]

    size = -(-len(labels) // MAX_TIMELINE_COLUMNS)
    columns = []
    for start in range(0, len(labels), size):
        group = labels[start : start + size]
        heading = group[0] if len(group) == 1 else f"{group[0]}–{group[-1]}"
        columns.append((heading, group))
    return columns


def _timeline_grid(verdict: Verdict) -> tuple[list[str], list[list[str]]]:
    """Return the column headings and, per check, its name and worst cells."""
    columns = _timeline_columns(verdict)
    status = {slot["label"]: slot["status"] for slot in verdict.slots}
    rank = {cell: number for number, cell in enumerate(CELL_ORDER)}
    rows = []
    for check in sorted(verdict.timeline):
        cells = verdict.timeline[check]
        row = [check]
        for _, group in columns:
            worst = ""
            for label in group:
                cell = cells.get(label)
                if cell is None:
                    cell = "missed" if status.get(label) == "missed" else ""
                if rank.get(cell, len(CELL_ORDER)) < rank[worst]:
                    worst = cell
            row.append(worst)
        rows.append(row)
    return [heading for heading, _ in columns], rows


def _md(text: object) -> str:
    """Escape text for a Markdown table cell or line, HTML included."""
    escaped = html.escape(str(text), quote=False)
    return escaped.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def render_markdown(verdict: Verdict) -> str:
    """Render the verdict as Markdown, which has the trend table but no charts."""
    lines = [f"# Soak verdict: {verdict.decision}", ""]
    lines += [f"- {name}: {_md(value)}" for name, value in _summary_rows(verdict)]

    lines += ["", "## Reasons", ""]
    lines += [f"- **{r.decision}**: {_md(r.text)}" for r in verdict.reasons] or [
        "- every criterion passed at every slot and every required P0 test passed"
    ]
    if verdict.excused:
        lines += ["", "Not counted, as the policy allows:", ""]
        lines += [f"- {_excused_label(r)}: {_md(r.text)}" for r in verdict.excused]

    lines += ["", "## Trends", "", "Plots are in verdict.html.", ""]
    lines += _md_table(TREND_HEADERS, _trend_rows(verdict))

    lines += ["", "## Issues encountered", ""]
    if verdict.issues:
        rows = [_issue_row(issue) for issue in verdict.issues]
        lines += _md_table(ISSUE_HEADERS, rows)
    else:
        lines.append("None.")

    lines += ["", "## Resolutions and notes", ""]
    if verdict.notes:
        rows = [
            [entry["at"], entry["author"], _note_subject(entry), _note_text(entry)]
            for entry in verdict.notes
        ]
        lines += _md_table(["time", "author", "kind", "text"], rows)
    else:
        lines.append("None recorded.")

    lines += ["", "## Planned maintenance", ""]
    if verdict.planned:
        rows = [
            [p["from"], p["to"], p["reason"], p["author"], ", ".join(p["slots"]) or "—"]
            for p in verdict.planned
        ]
        lines += _md_table(["from", "to", "reason", "author", "checkpoints"], rows)
    else:
        lines.append("None declared.")

    lines += ["", "## Criteria", ""]
    rows = [[r["criterion"], r["area"], r["status"]] for r in verdict.criteria]
    lines += _md_table(["criterion", "area", "status"], rows)

    lines += ["", "## Timeline", ""]
    lines += _markdown_timeline(verdict)
    lines += ["", "## Next steps", ""]
    lines += [f"- {_md(step)}" for step in verdict.next_steps]
    lines += [
        "",
        "## Approval",
        "",
        "- Approver name: ______________________",
        "- Date: ______________________",
        "- Decision signed: APPROVED / CONDITIONAL / REJECTED",
        "- Signature: ______________________",
        "",
    ]
    return "\n".join(lines)


def _markdown_timeline(verdict: Verdict) -> list[str]:
    headings, rows = _timeline_grid(verdict)
    if not rows:
        return ["No checkpoint recorded."]
    symbols = [
        [row[0]] + [CELL_TEXT.get(cell, cell) for cell in row[1:]] for row in rows
    ]
    return _md_table(["check", *headings], symbols)


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d1d1f;
       max-width: 1400px; }
h1 span { padding: .1em .5em; border-radius: .3em; color: #fff; }
.APPROVED { background: #1a7f37; } .CONDITIONAL { background: #b26b00; }
.REJECTED { background: #c62828; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.passed { background: #dafbe1; } td.critical { background: #ffd7d5; }
td.warning { background: #fff1c2; } td.skipped { color: #777; }
td.failed { background: #ffd7d5; } td.info { background: #ddf4ff; }
td.resolved { background: #e6f4ea; color: #1a7f37; font-style: italic; }
td.planned { background: #eaeef2; color: #57606a; font-style: italic; }
td.missed { background: repeating-linear-gradient(45deg, #fff, #fff 4px,
            #ffd7d5 4px, #ffd7d5 8px); }
td.open { background: #ffd7d5; }
table.timeline td, table.timeline th { font-size: 11px; padding: .15em .35em;
                                       text-align: center; }
table.timeline td:first-child { text-align: left; }
.charts { display: grid; gap: 1em;
  grid-template-columns: repeat(auto-fit, minmax(420px, 640px)); }
.charts img { border: 1px solid #d0d7de; max-width: 100%; height: auto; }
li.excused { color: #57606a; }
.sign div { margin: 1.2em 0; }
"""


def _html_table(
    headers: list[str], rows: list[list[str]], classes: list[list[str]] | None = None
) -> str:
    """Render a table, escaping every cell."""
    e = html.escape
    parts = ["<table><tr>"]
    parts += [f"<th>{e(header)}</th>" for header in headers]
    parts.append("</tr>")
    for number, row in enumerate(rows):
        parts.append("<tr>")
        for column, cell in enumerate(row):
            css = classes[number][column] if classes else ""
            attribute = f" class='{e(css)}'" if css else ""
            parts.append(f"<td{attribute}>{e(cell)}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def render_html(verdict: Verdict) -> str:
    """Render the verdict as one self-contained HTML page."""
    e = html.escape
    window = verdict.window
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Soak verdict {e(window['id'])}: {e(verdict.decision)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Soak verdict: <span class='{e(verdict.decision)}'>"
        f"{e(verdict.decision)}</span></h1>",
        "<table>",
    ]
    parts += [
        f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>"
        for name, value in _summary_rows(verdict)
    ]
    parts.append("</table><h2>Reasons</h2><ul>")
    if verdict.reasons:
        parts += [
            f"<li><b>{e(r.decision)}</b>: {e(r.text)}</li>" for r in verdict.reasons
        ]
    else:
        parts.append("<li>Every criterion passed at every slot.</li>")
    parts += [
        f"<li class='excused'>Not counted, {e(_excused_label(r))}: {e(r.text)}</li>"
        for r in verdict.excused
    ]
    parts.append("</ul>")

    parts.append("<h2>Measurements and trends</h2>")
    parts.append(_html_charts(verdict))
    parts.append(_html_table(TREND_HEADERS, _trend_rows(verdict)))

    parts.append("<h2>Issues encountered</h2>")
    parts.append(_html_issues(verdict))
    parts.append("<h2>Resolutions and notes</h2>")
    if verdict.notes:
        rows = [
            [entry["at"], entry["author"], _note_subject(entry), _note_text(entry)]
            for entry in verdict.notes
        ]
        parts.append(_html_table(["time", "author", "kind", "text"], rows))
    else:
        parts.append("<p>None recorded.</p>")
    parts.append("<h2>Planned maintenance</h2>")
    if verdict.planned:
        rows = [
            [p["from"], p["to"], p["reason"], p["author"], ", ".join(p["slots"]) or "—"]
            for p in verdict.planned
        ]
        parts.append(
            _html_table(["from", "to", "reason", "author", "checkpoints"], rows)
        )
    else:
        parts.append("<p>None declared.</p>")

    parts.append("<h2>Criteria</h2>")
    rows = [[r["criterion"], r["area"], r["status"]] for r in verdict.criteria]
    classes = [["", "", _criterion_class(r["status"])] for r in verdict.criteria]
    parts.append(_html_table(["criterion", "area", "status"], rows, classes))

    parts.append("<h2>Timeline</h2>")
    parts.append(_html_timeline(verdict))
    parts.append("<h2>Next steps</h2><ul>")
    parts += [f"<li>{_code_spans(e(step))}</li>" for step in verdict.next_steps]
    parts.append(
        "</ul><h2>Approval</h2><div class='sign'>"
        "<div>Approver name: ______________________</div>"
        "<div>Date: ______________________</div>"
        "<div>Decision signed: APPROVED / CONDITIONAL / REJECTED</div>"
        "<div>Signature: ______________________</div></div></body></html>"
    )
    return "\n".join(parts)


def _code_spans(escaped: str) -> str:
    """Turn Markdown `code` spans of already escaped text into <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _criterion_class(status: str) -> str:
    if status.endswith("trend warning"):
        return "warning"
    if status in ("passed", "failed", "resolved"):
        return status
    return "skipped"


ISSUE_HEADERS = [
    "check",
    "severity",
    "criterion",
    "status",
    "first",
    "last",
    "times",
    "worst",
    "limit",
]


def _issue_row(issue: Issue) -> list[str]:
    """Return an issue's cells in ISSUE_HEADERS order, for both report formats."""
    return [
        issue.check,
        issue.severity,
        issue.criterion,
        _issue_status(issue),
        issue.first_slot,
        issue.last_slot,
        str(issue.occurrences),
        _value(issue.worst_value, issue.unit),
        _limit(issue),
    ]


def _html_issues(verdict: Verdict) -> str:
    if not verdict.issues:
        return "<p>None.</p>"
    headers = [*ISSUE_HEADERS, "message"]
    rows, classes = [], []
    for issue in verdict.issues:
        rows.append(
            [
                *_issue_row(issue),
                issue.message,
            ]
        )
        classes.append(["", issue.severity, "", issue.status] + [""] * 6)
    return _html_table(headers, rows, classes)


def _html_charts(verdict: Verdict) -> str:
    start = datetime.fromisoformat(verdict.window["start"])
    spans = [
        (
            (datetime.fromisoformat(p["from"]) - start).total_seconds(),
            (datetime.fromisoformat(p["to"]) - start).total_seconds(),
        )
        for p in verdict.planned
    ]
    images = []
    for chart in verdict.charts:
        png = render_png(
            chart, verdict.window["length_s"], verdict.window["interval_s"], spans
        )
        encoded = base64.b64encode(png).decode("ascii")
        images.append(
            f"<img alt='{html.escape(chart.title)}' width='640' "
            f"src='data:image/png;base64,{encoded}'>"
        )
    return "<div class='charts'>" + "".join(images) + "</div>"


def _html_timeline(verdict: Verdict) -> str:
    e = html.escape
    headings, rows = _timeline_grid(verdict)
    if not rows:
        return "<p>No checkpoint recorded.</p>"
    parts = ["<table class='timeline'><tr><th>check</th>"]
    parts += [f"<th>{e(heading)}</th>" for heading in headings]
    parts.append("</tr>")
    for row in rows:
        parts.append(f"<tr><td>{e(row[0])}</td>")
        parts += [
            f"<td class='{e(cell)}'>{e(CELL_TEXT.get(cell, cell))}</td>"
            for cell in row[1:]
        ]
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def _excused_label(reason: Reason) -> str:
    if reason.decision == "INFO":
        return "informational"
    return f"would be {reason.decision}"

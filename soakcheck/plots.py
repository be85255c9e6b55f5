"""Charts of a window's measurements, with their limits and least-squares trends.

Each chart follows one measurement across the window's scheduled checkpoints:
backend memory, Redis memory, health latency p95 and the log's ERROR and FATAL
records. The x axis is the time since the window start. A checkpoint that
could not measure (backend down, Redis unreachable) leaves a gap in the line,
never a zero. The trend is a least-squares line through the measured points,
extended to the window end, so a slow leak shows before it crosses its cap.

Charts are drawn with matplotlib's Agg canvas directly, without pyplot, so
no display and no global figure state are involved.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, TypeGuard

import numpy as np

from soakcheck.window import Window

MB = 1024 * 1024

# A line with more points is drawn as the min and max of half as many
# buckets, because a PNG 640 pixels wide cannot show more. The fit uses
# every point.
MAX_DRAWN_POINTS = 1200

# Defaults of the checklist, used when neither the records nor the policy
# give a cap.
DEFAULT_BACKEND_CAP_MB = 500.0
DEFAULT_REDIS_CAP_MB = 100.0

# The measurements and the check thresholds the charts are drawn from.
CHARTED_MEASUREMENTS = (
    "backend_rss_bytes",
    "redis_used_memory_bytes",
    "health_latency_p95_ms",
    "log_error_records",
    "log_fatal_records",
)
CHARTED_CHECKS = ("backend.memory", "redis.memory", "health.latency", "logs.error_rate")

# A projected crossing further away than this is not reported.
MAX_PROJECTION_S = 365 * 24 * 3600.0


@dataclass
class Limit:
    """A horizontal threshold line on a chart."""

    label: str
    value: float
    role: str  # "cap" is the limit the trend is projected to, "check" any other
    source: str = ""


@dataclass
class Line:
    """One measured series; None marks a checkpoint that did not measure it."""

    label: str
    values: list[float | None]


@dataclass
class Trend:
    """The least-squares line of a chart's first series and where it leads."""

    points: int
    slope_per_hour: float | None = None
    value_at_start: float | None = None
    last_value: float | None = None
    cap: float | None = None
    cap_source: str = ""
    crossing_s: float | None = None
    crossing_at: str | None = None
    crosses_before_end: bool = False
    status: str = "too few points"


@dataclass
class Chart:
    """One plotted measurement over the window, with its limits and trend."""

    key: str
    title: str
    unit: str
    check: str
    x_s: list[float]
    lines: list[Line]
    limits: list[Limit] = field(default_factory=list)
    trend: Trend | None = None
    warns: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the chart as JSON-ready data, sharing its value lists."""
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["lines"] = [
            {"label": line.label, "values": line.values} for line in self.lines
        ]
        data["limits"] = [asdict(limit) for limit in self.limits]
        data["trend"] = asdict(self.trend) if self.trend else None
        return data


def build_charts(
    window: Window,
    x_s: list[float],
    measured: list[dict[str, Any]],
    thresholds: dict[str, float],
    policy: dict[str, Any],
) -> list[Chart]:
    """Build the four charts of a window from its scheduled checkpoints.

    `x_s` holds when each checkpoint ran, in seconds since the window start,
    and `measured` its measurements, in the same order. `thresholds` maps the
    charted check families to their newest numeric threshold. Policy keys
    read: `backend_memory_cap_mb`, `redis_memory_cap_mb`, `trend_min_points`,
    `trend_horizon_h`.
    """
    charts = [
        _backend_chart(x_s, measured, thresholds, policy),
        _redis_chart(x_s, measured, thresholds, policy),
        _latency_chart(x_s, measured, thresholds),
        _logs_chart(x_s, measured, thresholds),
    ]

    horizon_s = window.length_s + 3600 * float(policy.get("trend_horizon_h") or 0)
    for chart in charts:
        # Checkpoints minutes apart show little about a day, so a trend needs
        # points spread over at least two slot intervals.
        trend = fit_trend(
            chart.x_s,
            chart.lines[0].values,
            int(policy.get("trend_min_points", 3)),
            min_span_s=2 * window.interval_s,
        )
        cap = next((limit for limit in chart.limits if limit.role == "cap"), None)
        if cap is not None:
            trend.cap_source = cap.source
            project(trend, cap.value, horizon_s, window.start)
        chart.trend = trend
    return charts


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: object, scale: float = 1.0) -> float | None:
    if not is_number(value) or not math.isfinite(value):
        return None
    return float(value) / scale


def _backend_chart(
    x_s: list[float],
    measured: list[dict[str, Any]],
    thresholds: dict[str, float],
    policy: dict[str, Any],
) -> Chart:
    values = [_number(m.get("backend_rss_bytes"), MB) for m in measured]
    if policy.get("backend_memory_cap_mb") is not None:
        cap = float(policy["backend_memory_cap_mb"])
        source = "policy backend_memory_cap_mb"
    elif "backend.memory" in thresholds:
        cap = thresholds["backend.memory"]
        source = "backend.memory threshold in the records"
    else:
        cap = DEFAULT_BACKEND_CAP_MB
        source = "checklist default"
    return Chart(
        key="backend_memory",
        title="Backend memory (RSS)",
        unit="MB",
        check="backend.memory",
        x_s=x_s,
        lines=[Line("backend RSS", values)],
        limits=[Limit(f"primary cap {cap:g} MB ({source})", cap, "cap", source)],
        warns=True,
    )


def _redis_chart(
    x_s: list[float],
    measured: list[dict[str, Any]],
    thresholds: dict[str, float],
    policy: dict[str, Any],
) -> Chart:
    values = [_number(m.get("redis_used_memory_bytes"), MB) for m in measured]

    # The records hold the check threshold (50 MB by default), not the
    # primary limit, so the cap comes from the policy or the checklist.
    if policy.get("redis_memory_cap_mb") is not None:
        cap = float(policy["redis_memory_cap_mb"])
        source = "policy redis_memory_cap_mb"
    else:
        cap = DEFAULT_REDIS_CAP_MB
        source = "checklist default"
    limits = [Limit(f"primary cap {cap:g} MB ({source})", cap, "cap", source)]
    if "redis.memory" in thresholds:
        check = thresholds["redis.memory"]
        limits.append(Limit(f"check threshold {check:g} MB", check, "check"))
    return Chart(
        key="redis_memory",
        title="Redis used_memory",
        unit="MB",
        check="redis.memory",
        x_s=x_s,
        lines=[Line("Redis used_memory", values)],
        limits=limits,
        warns=True,
    )


def _latency_chart(
    x_s: list[float], measured: list[dict[str, Any]], thresholds: dict[str, float]
) -> Chart:
    values = [_number(m.get("health_latency_p95_ms")) for m in measured]
    limits = []
    if "health.latency" in thresholds:
        limit = thresholds["health.latency"]
        source = "health.latency threshold in the records"
        limits.append(Limit(f"limit {limit:g} ms", limit, "cap", source))
    return Chart(
        key="health_latency",
        title="Health latency p95",
        unit="ms",
        check="health.latency",
        x_s=x_s,
        lines=[Line("p95", values)],
        limits=limits,
    )


def _logs_chart(
    x_s: list[float], measured: list[dict[str, Any]], thresholds: dict[str, float]
) -> Chart:
    errors = [_number(m.get("log_error_records")) for m in measured]
    fatals = [_number(m.get("log_fatal_records")) for m in measured]
    limits = [Limit("no ERROR or FATAL record: 0", 0.0, "check")]
    if "logs.error_rate" in thresholds:
        rate = thresholds["logs.error_rate"]
        limits.append(Limit(f"ERROR rate limit {rate:g} per hour", rate, "check"))
    return Chart(
        key="log_errors",
        title="ERROR and FATAL log records per checkpoint",
        unit="records",
        check="logs.errors",
        x_s=x_s,
        lines=[Line("ERROR", errors), Line("FATAL", fatals)],
        limits=limits,
    )


def fit_trend(
    x_s: list[float],
    values: list[float | None],
    min_points: int,
    *,
    min_span_s: float = 0.0,
) -> Trend:
    """Fit a least-squares line through the measured points of a series.

    No line is fitted through fewer than `min_points` points or through
    points that span less than `min_span_s` seconds.
    """
    x = np.asarray(x_s, dtype=float)
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    known = np.isfinite(y)
    count = int(known.sum())
    trend = Trend(points=count)
    if count:
        trend.last_value = float(y[known][-1])
    if count < max(min_points, 2) or np.ptp(x[known]) <= max(min_span_s, 0.0):
        return trend

    slope, value_at_start = np.polyfit(x[known], y[known], 1)

    # A flat series fits a slope of rounding noise, such as 1e-14 MB/h.
    change = abs(slope) * np.ptp(x[known])
    if change < 1e-9 * max(1.0, float(np.abs(y[known]).max())):
        slope, value_at_start = 0.0, float(y[known].mean())
    trend.slope_per_hour = float(slope) * 3600
    trend.value_at_start = float(value_at_start)
    trend.status = "fitted"
    return trend


def project(trend: Trend, cap: float, horizon_s: float, start: datetime) -> None:
    """Find when the trend line reaches the cap, and whether that is in time."""
    trend.cap = cap
    if trend.slope_per_hour is None or trend.value_at_start is None:
        return
    if trend.last_value is not None and trend.last_value >= cap:
        trend.status = "above cap"
        return
    if trend.slope_per_hour <= 0:
        trend.status = "flat or falling"
        return

    crossing_s = (cap - trend.value_at_start) / (trend.slope_per_hour / 3600)
    if crossing_s > MAX_PROJECTION_S:
        # Rounding noise on a flat series gives a crossing centuries away.
        trend.status = "under cap at end"
        return
    trend.crossing_s = round(crossing_s, 1)
    trend.crossing_at = (start + timedelta(seconds=crossing_s)).isoformat(
        timespec="seconds"
    )
    trend.crosses_before_end = crossing_s <= horizon_s
    trend.status = "crosses cap" if trend.crosses_before_end else "under cap at end"


def time_unit(length_s: float) -> tuple[float, str]:
    """Pick the x axis unit for a window: hours, minutes or seconds."""
    if length_s >= 3 * 3600:
        return 3600.0, "hours"
    if length_s >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def envelope(
    x: np.ndarray, y: np.ndarray, max_points: int = MAX_DRAWN_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a long series to the min and max of each bucket, keeping its spikes.

    A bucket whose points are all missing stays missing, so long outages
    still show as gaps. A single missing point inside a bucket does not.
    """
    if len(x) <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, len(x), buckets + 1).astype(int)
    starts = edges[:-1]
    low = np.fmin.reduceat(y, starts)
    high = np.fmax.reduceat(y, starts)
    centres = np.add.reduceat(x, starts) / np.diff(edges)
    return np.repeat(centres, 2), np.column_stack([low, high]).ravel()


def break_gaps(
    x: np.ndarray, y: np.ndarray, max_step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Insert a missing point wherever consecutive checkpoints are too far apart.

    A missed slot leaves no record at all, and without the break the line
    would join its neighbours as if it had been measured.
    """
    if len(x) < 2:
        return x, y
    jumps = np.nonzero(np.diff(x) > max_step)[0] + 1
    return np.insert(x, jumps, np.nan), np.insert(y, jumps, np.nan)


def render_png(
    chart: Chart,
    length_s: float,
    interval_s: float,
    planned_spans: list[tuple[float, float]] | None = None,
) -> bytes:
    """Draw a chart as a PNG: its lines, limits, trend and planned periods."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale, unit_name = time_unit(length_s)
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    figure.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.36)

    x = np.asarray(chart.x_s, dtype=float) / scale
    highest = _draw_lines(axes, chart, x, 1.5 * interval_s / scale)
    highest = max([highest] + [limit.value for limit in chart.limits])
    for limit in chart.limits:
        colour = "#c62828" if limit.role == "cap" else "#b26b00"
        axes.axhline(
            limit.value, color=colour, linestyle="--", linewidth=1.1, label=limit.label
        )
    # Checkpoints can finish a little after the window end.
    end_s = max(length_s, max(chart.x_s, default=0.0))
    highest = _draw_trend(axes, chart, end_s, scale, highest)
    for span_start_s, span_end_s in planned_spans or []:
        axes.axvspan(
            span_start_s / scale,
            span_end_s / scale,
            color="#8c959f",
            alpha=0.18,
            label="planned maintenance",
        )

    axes.set_xlim(0, end_s / scale)
    axes.set_ylim(0, highest * 1.1 if highest > 0 else 1)
    axes.set_title(chart.title, fontsize=10)
    axes.set_ylabel(chart.unit, fontsize=8)
    axes.set_xlabel(f"{unit_name} since window start", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    _legend(axes)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_lines(axes: Any, chart: Chart, x: np.ndarray, max_step: float) -> float:
    """Draw the measured lines and return their highest value."""
    colours = ["#0969da", "#c62828"]
    highest = 0.0
    measured_any = False
    for colour, line in zip(colours, chart.lines, strict=False):
        y = np.asarray([np.nan if v is None else v for v in line.values], dtype=float)
        if np.isfinite(y).any():
            measured_any = True
            highest = max(highest, float(np.nanmax(y)))
        drawn_x, drawn_y = envelope(*break_gaps(x, y, max_step))
        marker = "o" if len(drawn_x) <= 80 else None
        axes.plot(
            drawn_x,
            drawn_y,
            color=colour,
            marker=marker,
            markersize=3.5,
            linewidth=1.4,
            label=line.label,
        )
    if not measured_any:
        axes.text(
            0.5,
            0.5,
            "not measured at any checkpoint",
            ha="center",
            va="center",
            transform=axes.transAxes,
            color="#57606a",
        )
    return highest


def _draw_trend(
    axes: Any, chart: Chart, end_s: float, scale: float, highest: float
) -> float:
    """Draw the trend line across the x axis and return the new highest value."""
    trend = chart.trend
    if trend is None or trend.slope_per_hour is None or trend.value_at_start is None:
        return highest
    slope_per_s = trend.slope_per_hour / 3600
    end_value = trend.value_at_start + slope_per_s * end_s

    # The trend may run far above the data, so the y axis stops at twice the
    # highest value to keep the data readable.
    shown_end = min(end_value, 2 * highest) if highest > 0 else end_value
    highest = max(highest, shown_end)
    axes.plot(
        [0, end_s / scale],
        [trend.value_at_start, end_value],
        color="#57606a",
        linestyle=":",
        linewidth=1.6,
        label=f"trend {trend.slope_per_hour:+.3g} {chart.unit}/h",
    )
    if trend.crossing_s is not None and 0 <= trend.crossing_s <= end_s:
        axes.plot(
            [trend.crossing_s / scale],
            [trend.cap],
            marker="X",
            markersize=9,
            color="#c62828",
            linestyle="none",
            label="projected crossing",
        )
    return highest


def _legend(axes: Any) -> None:
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(
        unique.values(),
        unique.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        ncol=2,
        fontsize=7,
        frameon=False,
    )

"""Charts and trends: one PNG per series, gaps, caps and the slow-leak warning."""

import base64
import re
from datetime import timedelta
from pathlib import Path

import numpy as np

from selftests.verdict_windows import (
    add_memory_series,
    after,
    make_window,
)
from soakcheck.notes import add_resolution
from soakcheck.plots import break_gaps, envelope, fit_trend, time_unit
from soakcheck.verdict import decide
from soakcheck.verdict_report import write_reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 100 MB at Hour 0 to 380 MB at Hour 12: every value under the 500 MB cap,
# but the line reaches it near Hour 17, before the 24 h window ends.
SLOW_LEAK = [100.0 + 280.0 * hour / 12 for hour in range(0, 13, 2)]


def _leak_moment(window):
    return window.slot(6).due + timedelta(minutes=30)


def test_html_has_one_png_per_series(tmp_path: Path) -> None:
    """verdict.html embeds four PNG charts: backend, Redis, latency and logs."""
    window = make_window(tmp_path)
    add_memory_series(window, [200.0] * 13)

    verdict = decide(window, moment=after(window))
    page = write_reports(verdict, window.directory)["html"].read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)

    assert len(images) == 4
    assert all(base64.b64decode(image).startswith(PNG_SIGNATURE) for image in images)
    assert [chart.key for chart in verdict.charts] == [
        "backend_memory",
        "redis_memory",
        "health_latency",
        "log_errors",
    ]


def test_slow_leak_warns(tmp_path: Path) -> None:
    """A leak whose every value passes still warns when its trend crosses the cap."""
    window = make_window(tmp_path)
    add_memory_series(window, SLOW_LEAK)

    verdict = decide(window, moment=_leak_moment(window))
    trend = verdict.trends["backend_memory"]
    warnings = [r for r in verdict.reasons if r.kind == "trend"]

    assert verdict.issues == []
    assert len(warnings) == 1
    assert warnings[0].decision == "CONDITIONAL"
    assert warnings[0].check == "backend.memory"
    assert "23.3 MB/h" in warnings[0].text
    assert "Hour 17.1" in warnings[0].text
    assert round(trend["slope_per_hour"], 1) == 23.3
    assert trend["crosses_before_end"] is True
    assert trend["status"] == "warning"
    assert trend["cap"] == 500.0
    assert trend["cap_source"] == "backend.memory threshold in the records"


def test_flat_series_no_warning(tmp_path: Path) -> None:
    """A flat memory series over a whole window gives no trend warning."""
    window = make_window(tmp_path)
    add_memory_series(window, [200.0] * 13)

    verdict = decide(window, moment=after(window))

    assert verdict.decision == "APPROVED"
    assert verdict.trends["backend_memory"]["crosses_before_end"] is False


def test_leak_needs_three_points(tmp_path: Path) -> None:
    """Two points are too few to fit a trend, so they never warn."""
    window = make_window(tmp_path)
    add_memory_series(window, [100.0, 450.0])

    verdict = decide(window, moment=window.slot(1).due)

    assert verdict.trends["backend_memory"]["status"] == "too few points"
    assert [r for r in verdict.reasons if r.kind == "trend"] == []


def test_cap_from_policy(tmp_path: Path) -> None:
    """A policy cap replaces the records' threshold, and the trend names it."""
    window = make_window(tmp_path, policy={"backend_memory_cap_mb": 1000})
    add_memory_series(window, SLOW_LEAK)

    verdict = decide(window, moment=_leak_moment(window))
    trend = verdict.trends["backend_memory"]

    assert trend["cap"] == 1000
    assert trend["cap_source"] == "policy backend_memory_cap_mb"
    assert trend["crosses_before_end"] is False


def test_redis_cap_default(tmp_path: Path) -> None:
    """The Redis trend is projected to the checklist's 100 MB primary limit."""
    window = make_window(tmp_path)
    add_memory_series(window, [200.0] * 7, redis_mb=30.0)

    verdict = decide(window, moment=_leak_moment(window))
    trend = verdict.trends["redis_memory"]

    assert trend["cap"] == 100.0
    assert trend["cap_source"] == "checklist default"


def test_missing_value_is_gap(tmp_path: Path) -> None:
    """A checkpoint without a memory measurement is a gap, not a zero."""
    window = make_window(tmp_path)
    add_memory_series(window, [200.0, 210.0, None, 230.0, 240.0])

    verdict = decide(window, moment=_leak_moment(window))
    chart = verdict.charts[0]

    assert chart.lines[0].values[2] is None
    assert verdict.trends["backend_memory"]["points"] == 4
    assert round(verdict.trends["backend_memory"]["slope_per_hour"], 1) == 5.0


def test_fit_ignores_missing_values() -> None:
    """The least-squares fit uses only the measured points."""
    trend = fit_trend([0, 3600, 7200, 10800], [10.0, None, 30.0, 40.0], 3)

    assert trend.points == 3
    assert round(trend.slope_per_hour, 6) == 10.0
    assert round(trend.value_at_start, 6) == 10.0


def test_missed_slot_breaks_line() -> None:
    """Checkpoints further apart than the step get a missing point between them."""
    x, y = break_gaps(np.array([0.0, 2.0, 4.0, 8.0]), np.array([1.0, 2, 3, 4]), 3.0)

    assert len(x) == 5
    assert np.isnan(y[3])
    assert y[4] == 4.0


def test_envelope_keeps_spike() -> None:
    """Downsampling a long series keeps its highest point."""
    x = np.arange(10_000, dtype=float)
    y = np.full(10_000, 5.0)
    y[4321] = 99.0

    drawn_x, drawn_y = envelope(x, y, 1000)

    assert len(drawn_x) == 1000
    assert np.nanmax(drawn_y) == 99.0


def test_envelope_keeps_long_outage() -> None:
    """A bucket with no measured point stays missing after downsampling."""
    y = np.full(10_000, 5.0)
    y[2000:3000] = np.nan

    _, drawn_y = envelope(np.arange(10_000, dtype=float), y, 1000)

    assert np.isnan(drawn_y).any()


def test_time_unit_follows_window_length() -> None:
    """The x axis is in hours, minutes or seconds depending on the window length."""
    assert time_unit(24 * 3600)[1] == "hours"
    assert time_unit(30 * 60)[1] == "minutes"
    assert time_unit(20)[1] == "seconds"


def test_trend_resolution_clears_warning(tmp_path: Path) -> None:
    """A resolution of backend.memory after the last checkpoint clears the warning."""
    window = make_window(tmp_path)
    add_memory_series(window, SLOW_LEAK)
    moment = _leak_moment(window)
    add_resolution(
        window.directory,
        "backend.memory",
        "cache warm-up, flat since v1.5",
        moment=moment,
    )

    verdict = decide(window, moment=moment)

    assert [r for r in verdict.reasons if r.kind == "trend"] == []
    assert [r.kind for r in verdict.excused] == ["trend"]
    assert verdict.trends["backend_memory"]["status"] == "resolved"

"""Windows: slots fixed from the start and named by the hour."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from soakcheck.record import free_checkpoint_id, write_json_atomic
from soakcheck.window import current_window, list_windows, new_window

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def test_day_window_slots(tmp_path: Path) -> None:
    """A 24 h window checked every 2 h has 13 slots, Hour 0 to Hour 24."""
    window = new_window(tmp_path, "api", 86400, 7200, start=START)
    slots = window.slots()

    assert len(slots) == 13
    assert slots[1].label == "Hour 2"
    assert slots[1].id == "hour-02"
    assert slots[-1].label == "Hour 24"
    assert slots[-1].due == START + timedelta(hours=24)


def test_short_window_uses_seconds(tmp_path: Path) -> None:
    """A compressed window names its slots in seconds."""
    window = new_window(tmp_path, "demo", 20, 4, start=START)

    assert [s.id for s in window.slots()] == [
        "sec-00",
        "sec-04",
        "sec-08",
        "sec-12",
        "sec-16",
        "sec-20",
    ]


def test_slot_at_nearest(tmp_path: Path) -> None:
    """A checkpoint run late falls into the nearest slot, clamped to the window."""
    window = new_window(tmp_path, "api", 86400, 7200, start=START)

    assert window.slot_at(START + timedelta(hours=4, minutes=50)).label == "Hour 4"
    assert window.slot_at(START + timedelta(hours=5, minutes=10)).label == "Hour 6"
    assert window.slot_at(START + timedelta(hours=30)).label == "Hour 24"


def test_window_reloaded(tmp_path: Path) -> None:
    """A window written to disk reads back the same."""
    window = new_window(tmp_path, "api", 86400, 7200, start=START)

    loaded = list_windows(tmp_path, "api")[0]

    assert loaded.id == window.id
    assert loaded.start == START
    assert loaded.interval_s == 7200


def test_current_window_closes(tmp_path: Path) -> None:
    """A window stops being current half an interval after its last slot."""
    new_window(tmp_path, "api", 86400, 7200, start=START)
    inside = START + timedelta(hours=24, minutes=30)
    after = START + timedelta(hours=25, minutes=1)

    assert current_window(tmp_path, "api", inside) is not None
    assert current_window(tmp_path, "api", after) is None


def test_second_run_same_slot_kept(tmp_path: Path) -> None:
    """A second checkpoint in the same slot gets its own id instead of overwriting."""
    write_json_atomic(tmp_path / "hour-02.json", {"schema": 1})

    assert free_checkpoint_id(tmp_path, "hour-02") == "hour-02-2"
    assert free_checkpoint_id(tmp_path, "hour-04") == "hour-04"

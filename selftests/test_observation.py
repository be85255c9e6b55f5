"""Self-tests of how a checklist measurement describes itself."""

from __future__ import annotations

from soakcheck.observation import Observation


def measured(value: float) -> Observation:
    observation = Observation("backend.memory", subject="backend RSS")
    observation.record(value, threshold=400, unit="MB", operator="<")
    return observation


def test_passed_value_reads_as_checklist_row() -> None:
    """A value within its threshold reads like the checklist item."""
    assert measured(120).describe() == "backend RSS (120 MB) < 400 MB"


def test_failed_value_reads_as_expectation() -> None:
    """A value past its threshold reads as what was expected instead."""
    assert measured(711).describe() == "backend RSS (711 MB), expected < 400 MB"

"""Measurements of checklist tests, worded like a filled-in checklist."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from soakcheck.checklist import Criterion, Severity, spec_for

MB = 1024 * 1024

_OPERATORS = {
    "<": lambda value, limit: value < limit,
    "<=": lambda value, limit: value <= limit,
    ">": lambda value, limit: value > limit,
    ">=": lambda value, limit: value >= limit,
    "==": lambda value, limit: value == limit,
    "!=": lambda value, limit: value != limit,
}


def format_number(value: object) -> str:
    """Format a measured value for a person: 1.7, 61.2, 1024, 0.05, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value)}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


# Count units read "1 job", not "1 jobs".
_SINGULAR = {
    "jobs": "job",
    "lines": "line",
    "keys": "key",
    "connections": "connection",
    "counts": "count",
}


def with_unit(value: object, unit: str) -> str:
    text = format_number(value)
    if not unit:
        return text
    if value == 1 and not isinstance(value, bool):
        unit = _SINGULAR.get(unit, unit)
    if unit in ("%",):
        return f"{text}{unit}"
    return f"{text} {unit}"


@dataclass
class Observation:
    """The measured value, threshold and unit one checklist test records."""

    check: str
    subject: str = ""
    value: Any = None
    threshold: Any = None
    unit: str = ""
    operator: str = ""
    severity: Severity | None = None
    criterion: Criterion | None = None
    area: str = ""
    detail: str = ""
    evidence: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        spec = spec_for(self.check)
        self.severity = self.severity or spec.severity
        self.criterion = self.criterion or spec.criterion
        self.area = self.area or spec.area
        self.subject = self.subject or spec.title

    def record(
        self,
        value: Any,
        *,
        threshold: Any = None,
        unit: str = "",
        operator: str = "",
        subject: str | None = None,
    ) -> None:
        """Store the measurement; the test asserts on `holds()` afterwards."""
        self.value = value
        self.threshold = threshold
        self.unit = unit
        self.operator = operator
        if subject is not None:
            self.subject = subject

    def holds(self) -> bool:
        """Return whether the measured value satisfies the threshold."""
        compare = _OPERATORS[self.operator]
        return bool(compare(self.value, self.threshold))

    def _holds_quietly(self) -> bool:
        """Return `holds()`, taking values that cannot be compared as holding."""
        try:
            return self.holds()
        except (KeyError, TypeError):
            return True

    def describe(self) -> str:
        """Describe the check as `subject (value) operator threshold`.

        A value that misses its threshold reads `subject (value), expected
        operator threshold`, so a failure does not read as a passed check.
        """
        measured = with_unit(self.value, self.unit)
        if self.operator and self.threshold is not None:
            limit = with_unit(self.threshold, self.unit)
            text = f"{self.subject} ({measured}) {self.operator} {limit}"
            if self.value is not None and not self._holds_quietly():
                text = f"{self.subject} ({measured}), expected {self.operator} {limit}"
        elif self.value is not None:
            text = f"{self.subject}: {measured}"
        else:
            text = self.subject
        if self.detail:
            text = f"{text}; {self.detail}"
        return text

    def escalate(self, severity: Severity, criterion: Criterion | None = None) -> None:
        """Raise the failure's severity (and criterion) for a worse band."""
        self.severity = severity
        if criterion is not None:
            self.criterion = criterion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

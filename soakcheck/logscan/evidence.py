"""Log lines kept as evidence in a scan result, masked and cut for reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from soakcheck.redact import mask_secrets

SAMPLE_CHARS = 300


def cut_text(text: str, limit: int = SAMPLE_CHARS) -> str:
    """Cut `text` to `limit` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text

    return f"{text[:limit]}… [cut, {len(text) - limit} more characters]"


def evidence_text(text: str, limit: int = SAMPLE_CHARS) -> str:
    """Mask secrets in a log line, then cut it for a report.

    Masking comes first so that a secret split by the cut cannot escape it.
    """
    return cut_text(mask_secrets(text.rstrip()), limit)


@dataclass(frozen=True, slots=True)
class LineRef:
    """The position of a line: the file it was read from and its 1-based number."""

    path: str
    line: int


@dataclass(frozen=True, slots=True)
class LogLine:
    """A log line kept as evidence, with its level and the time it states.

    `text` is masked and cut to `SAMPLE_CHARS` characters. It is plain text,
    so a report must escape it.
    """

    path: str
    line: int
    time: datetime | None
    level: str
    text: str


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """A line that matched a named pattern.

    `sequence` numbers the lines a scan read across all its files, so it
    orders matches of different patterns. `errors_before` counts the error
    and fatal records the same scan met before this line, so two matches tell
    how many errors fell between them.
    """

    path: str
    line: int
    time: datetime | None
    level: str
    text: str
    sequence: int
    errors_before: int

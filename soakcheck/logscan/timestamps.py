"""The time a log record was written, read from the record itself.

Recognised forms, tried in this order:

1. a JSON member `time`, `timestamp`, `@timestamp` or `ts`, as epoch seconds,
   milliseconds, microseconds or nanoseconds, or as an ISO 8601 string,
2. the same members in a JSON line that does not parse,
3. a leading ISO 8601 or `YYYY-MM-DD HH:MM:SS` text timestamp, optionally in
   square brackets,
4. the NestJS console form `12/04/2026, 10:00:00 AM` (en-US, month first).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts")

# Epoch values above these bounds are taken as a finer unit. The bounds sit
# far from any plausible date in the neighbouring unit.
_MS_BOUND = 1e11
_US_BOUND = 1e14
_NS_BOUND = 1e17

_TIME_MEMBER_RE = re.compile(
    r'"(?:time|timestamp|@timestamp|ts)"\s*:\s*'
    r'(?:(?P<number>\d+(?:\.\d+)?)|"(?P<text>[^"]{8,40})")'
)
_LEADING_ISO_RE = re.compile(
    r"\[?(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?P<fraction>[.,]\d+)?(?P<zone>Z|[+-]\d{2}:?\d{2})?"
)
_NEST_TIME_RE = re.compile(
    r"(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4}),? "
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})(?: (?P<ampm>[AP]M))?"
)
# How far into a line a NestJS timestamp may start: `[Nest] <pid>  - ` first.
_NEST_SEARCH_LIMIT = 64


def _from_epoch(value: float) -> datetime | None:
    if value >= _NS_BOUND:
        value /= 1e9
    elif value >= _US_BOUND:
        value /= 1e6
    elif value >= _MS_BOUND:
        value /= 1e3

    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _from_iso(text: str) -> datetime | None:
    text = text.strip()
    if text.isascii() and text.isdigit():
        return _from_epoch(float(text))

    try:
        parsed = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None

    # NOTE: a timestamp without a zone is taken as UTC. Loggers that print
    # local time on a server set to another zone shift the hour buckets.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)

    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # The first hours of year 1 with a positive offset fall before it.
        return None


def _from_value(value: object) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if isinstance(value, str):
        return _from_iso(value)

    return None


def _from_nest(match: re.Match[str]) -> datetime | None:
    hour = int(match.group("hour"))
    ampm = match.group("ampm")
    if ampm == "PM" and hour < 12:
        hour += 12
    elif ampm == "AM" and hour == 12:
        hour = 0

    try:
        return datetime(
            int(match.group("year")),
            int(match.group("month")),
            int(match.group("day")),
            hour,
            int(match.group("minute")),
            int(match.group("second")),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def record_time(text: str, fields: dict[str, Any] | None = None) -> datetime | None:
    """Return the UTC time stored in a record, or None when it has none.

    `text` is the cleaned first line of the record. `fields` is its parsed
    JSON object, when the line is JSON.
    """
    if fields is not None:
        for key in _TIME_KEYS:
            if key in fields:
                found = _from_value(fields[key])
                if found is not None:
                    return found
        return None

    if text.startswith("{"):
        member = _TIME_MEMBER_RE.search(text)
        if member is None:
            return None
        if member.group("number") is not None:
            return _from_epoch(float(member.group("number")))
        return _from_iso(member.group("text"))

    leading = _LEADING_ISO_RE.match(text)
    if leading is not None:
        stamp = f"{leading.group('date')}T{leading.group('time')}"
        stamp += (leading.group("fraction") or "") + (leading.group("zone") or "")
        return _from_iso(stamp)

    nest = _NEST_TIME_RE.search(text, 0, _NEST_SEARCH_LIMIT)
    if nest is not None:
        return _from_nest(nest)

    return None

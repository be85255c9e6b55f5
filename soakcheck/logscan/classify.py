"""Classification of one log line: blank, continuation, or a record with a level.

The rules, applied to each physical line:

1. Each line is cut to its first 64 KiB (NUL bytes removed), then cleaned
   (`clean_line_bytes`).
2. A line that is empty or only spaces and tabs is blank. It is ignored and
   does not end the current record.
3. Continuation lines belong to the record before them and are never counted
   alone. They are lines starting with a space or tab (stack frames, the
   members of an inspected error object) and lines made only of closing
   brackets. A JavaScript error header at column 0 (`Error: `, `TypeError: `,
   `UnknownDependenciesException [Error]: `) is one too, right after a text
   record whose level came from an explicit error or fatal keyword, because
   NestJS prints the stack that way under `ERROR [Context] message`.
4. A line starting with `{` that parses as a JSON object takes its level from
   `level`, `severity` or `log.level` (numbers as pino and bunyan use them,
   strings as winston and most others do). Words in the message never change
   it. If the line does not parse (a truncated write), the first `"level":`
   member found by a regular expression is used.
5. Other lines are text. The level is the earliest of: an upper-case level
   word (`ERROR`, `WARN`, `FATAL` ...), a lower-case level word (or
   `Warning`) followed by `: ` among the first three tokens (`error: msg`,
   `2026-12-04 10:00:07 warn: msg`, `(node:42) Warning: msg`), or a
   lower-case level word in square brackets (`[error]`).
6. A text line without a level word but with a JavaScript error header (at the
   start or after whitespace) is an error (`[ioredis] Unhandled error event:
   Error: connect ECONNREFUSED`). Otherwise the configurable pattern is tried,
   and failing that the record has no level (`unknown`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

UTF8_BOM = b"\xef\xbb\xbf"

# A line is classified on its first bytes only, so one line of several
# megabytes costs no more than this.
LINE_CAP = 64 * 1024


class Level(StrEnum):
    """Level class of a log record, most severe first."""

    FATAL = "fatal"
    ERROR = "error"
    WARN = "warn"
    INFO = "info"
    DEBUG = "debug"
    UNKNOWN = "unknown"


class LineKind(StrEnum):
    """Role of one physical line in the stream of records."""

    RECORD = "record"
    CONTINUATION = "continuation"
    BLANK = "blank"


LEVEL_WORDS: dict[str, Level] = {
    "fatal": Level.FATAL,
    "critical": Level.FATAL,
    "crit": Level.FATAL,
    "emerg": Level.FATAL,
    "emergency": Level.FATAL,
    "alert": Level.FATAL,
    "panic": Level.FATAL,
    "error": Level.ERROR,
    "err": Level.ERROR,
    "warn": Level.WARN,
    "warning": Level.WARN,
    "info": Level.INFO,
    "log": Level.INFO,
    "notice": Level.INFO,
    "http": Level.INFO,
    "debug": Level.DEBUG,
    "trace": Level.DEBUG,
    "verbose": Level.DEBUG,
    "silly": Level.DEBUG,
}

# Control sequences (CSI): ESC [ parameters intermediates final-byte. None of
# these byte ranges contains a newline, so the same pattern is safe on a block.
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
ANSI_BYTES_RE = re.compile(ANSI_RE.pattern.encode())

_UPPER_WORDS = (
    "TRACE|DEBUG|VERBOSE|INFO|LOG|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|"
    "CRITICAL|CRIT|EMERG|ALERT|PANIC"
)
_LOWER_WORDS = (
    "trace|debug|verbose|info|log|notice|warn|warning|error|err|fatal|"
    "critical|crit|emerg|alert|panic"
)
# Node prints its own warnings as `(node:42) Warning: message`.
_TITLE_WORDS = "Warning|Warn"

# `api-1  | message` as docker compose prints it. A name that is itself an
# upper-case level word is not taken for a service, so `ERROR | msg` keeps
# its level.
COMPOSE_PREFIX_PATTERN = (
    rb"^(?!(?:" + _UPPER_WORDS.encode() + rb")[ \t])[A-Za-z0-9][\w.-]*[ \t]+\|(?: |$)"
)
COMPOSE_PREFIX_RE = re.compile(COMPOSE_PREFIX_PATTERN, re.MULTILINE)

# One search finds the leftmost level word of the three text forms, which
# is the earliest candidate. A `word:` form further than the third token is
# skipped by the caller.
_TEXT_LEVEL_RE = re.compile(
    r"\b(?P<upper>" + _UPPER_WORDS + r")\b"
    r"|\[(?P<bracket>" + _LOWER_WORDS + r")\]"
    r"|(?:^|(?<=[ \t]))(?P<colon>"
    + _LOWER_WORDS
    + "|"
    + _TITLE_WORDS
    + r"):(?:[ \t]|$)"
)
_COLON_MAX_TOKENS_BEFORE = 2

_ERROR_HEADER = r"(?:[A-Z][\w$]*)?(?:Error|Exception)(?: \[[\w.-]+\])?:(?:[ \t]|$)"
_ERROR_HEADER_AT_START_RE = re.compile(_ERROR_HEADER)
_ERROR_HEADER_ANYWHERE_RE = re.compile(r"(?:^|(?<=\s))" + _ERROR_HEADER)

CLOSING_BRACKETS_PATTERN = r"[)\]}]+[,;]?[ \t]*"
_CLOSING_BRACKETS_RE = re.compile(CLOSING_BRACKETS_PATTERN)

# Numbers and spaces are ASCII only, as in JSON. The candidate searches of
# the `prefilter` module look for the same forms.
_LEVEL_MEMBER_RE = re.compile(
    r'"(?:level|severity)"[ \t]*:[ \t]*'
    r'(?:(?P<number>-?[0-9]+(?:\.[0-9]+)?)|"(?P<word>[^"]*)")'
)
_LEADING_LEVEL_RE = re.compile(
    r'\{"level":(?:(?P<number>-?[0-9]+)|"(?P<word>[^"\\]*)")[,}]'
)
_INTEGER_RE = re.compile(r"-?[0-9]+")
# Python's int() refuses strings of more than 4300 digits, and any level
# past this length is far above 60 anyway.
_MAX_INT_DIGITS = 18
# Characters `level_from_value` strips around a level word: ASCII whitespace.
_LEVEL_SPACE = " \t\r\n\f\v"


@dataclass(frozen=True, slots=True)
class LineClass:
    """Classification of one physical line.

    `level` is set for records only. `source` is where the level came from:
    "json", "json-fragment" (a line that starts like JSON but does not parse),
    "keyword", "header" (a JavaScript error header), "custom" (the configured
    pattern) or "none". `fields` is the parsed JSON object when there is
    one, so the timestamp can be read without parsing the line again.
    `opens_error_stack` is whether an error header on the next line is this
    record's stack: true for text records with an explicit error or fatal
    level.
    """

    kind: LineKind
    level: Level | None = None
    source: str = ""
    fields: dict[str, Any] | None = None
    opens_error_stack: bool = False


BLANK = LineClass(LineKind.BLANK)
CONTINUATION = LineClass(LineKind.CONTINUATION)
# An error header that continues the record before it. The block scanner
# counts it as a record start at first, so it must tell it apart.
ERROR_STACK = LineClass(LineKind.CONTINUATION, source="error-stack")


def _record_class(level: Level, source: str) -> LineClass:
    """Return the shared class of a record without parsed fields.

    Classes are immutable, so one instance per level and source serves every
    line. Building a frozen dataclass per line cost more than classifying
    a pino line.
    """
    return _RECORD_CLASSES[level, source]


def level_from_number(value: float) -> Level:
    """Map a pino or bunyan numeric level (10 trace ... 60 fatal) to its class."""
    if value >= 60:
        return Level.FATAL
    if value >= 50:
        return Level.ERROR
    if value >= 40:
        return Level.WARN
    if value >= 30:
        return Level.INFO
    return Level.DEBUG


def level_from_value(value: object) -> Level:
    """Map a level value found in a record (number, word or digits) to its class."""
    if isinstance(value, bool):
        return Level.UNKNOWN
    if isinstance(value, int | float):
        return level_from_number(value)
    if not isinstance(value, str):
        return Level.UNKNOWN

    # Most loggers write the word in lower case without colour codes.
    level = LEVEL_WORDS.get(value)
    if level is not None:
        return level

    word = ANSI_RE.sub("", value).strip(_LEVEL_SPACE).lower()
    if _INTEGER_RE.fullmatch(word):
        return level_from_number(parse_number(word))

    return LEVEL_WORDS.get(word, Level.UNKNOWN)


def parse_number(digits: str | bytes) -> int | float:
    """Parse an ASCII integer of any length, a very long one as a float."""
    length = len(digits) - (digits[:1] in ("-", b"-"))
    if length > _MAX_INT_DIGITS:
        return float(digits)
    return int(digits)


def clean_line_bytes(raw: bytes, *, first_in_file: bool = False) -> bytes:
    """Strip from one physical line (without its newline) what hides its text.

    Removes NUL bytes, a UTF-8 byte order mark (first line only), one
    trailing carriage return, ANSI control sequences and one docker compose
    prefix. NUL bytes go first, as the reader drops them before it splits
    lines, so a UTF-16 `\r\x00` still ends in a carriage return.
    """
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")
    if first_in_file and raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b"\x1b" in raw:
        raw = ANSI_BYTES_RE.sub(b"", raw)

    return COMPOSE_PREFIX_RE.sub(b"", raw, count=1)


def decode_line(raw: bytes, line_cap: int = LINE_CAP) -> str:
    """Decode the first `line_cap` bytes of a line, invalid UTF-8 as U+FFFD."""
    return raw[:line_cap].decode("utf-8", "replace")


class LineClassifier:
    """Classifies cleaned lines by the rules in this module's docstring.

    `custom_pattern` is a regular expression with a named group `level`, tried
    on records that the built-in rules leave without a level.
    """

    def __init__(self, custom_pattern: str | None = None) -> None:
        self.custom: re.Pattern[str] | None = None
        if custom_pattern is None:
            return

        try:
            compiled = re.compile(custom_pattern)
        except re.error as exc:
            raise ValueError(
                f"custom log pattern {custom_pattern!r} is not a valid regular "
                f"expression ({exc}); fix the pattern or leave it unset"
            ) from exc

        if "level" not in compiled.groupindex:
            raise ValueError(
                f"custom log pattern {custom_pattern!r} has no named group "
                "'level'; wrap the level word in (?P<level>...)"
            )

        self.custom = compiled

    def classify(self, text: str, *, after_error_keyword: bool = False) -> LineClass:
        """Classify one cleaned line.

        `after_error_keyword` is whether the previous non-blank line was a text
        record with an explicit error or fatal level (see
        `LineClass.opens_error_stack`).
        """
        if not text:
            return BLANK

        first = text[0]
        if first in " \t":
            return CONTINUATION if text.strip(" \t") else BLANK
        if first in ")]}" and _CLOSING_BRACKETS_RE.fullmatch(text):
            return CONTINUATION
        if after_error_keyword and _ERROR_HEADER_AT_START_RE.match(text):
            return ERROR_STACK

        if first == "{":
            found = self._json_level(text)
            if found is not None:
                return found

        return self._text_level(text)

    def _json_level(self, text: str) -> LineClass | None:
        # Pino and winston often write the level first. When it is the only
        # level member, it decides whether or not the rest of the line
        # parses, so the common case needs no JSON parsing.
        leading = _LEADING_LEVEL_RE.match(text)
        if leading and text.count('"level"') == 1:
            number = leading.group("number")
            if number is not None:
                level = level_from_number(parse_number(number))
            else:
                level = level_from_value(leading.group("word"))
            level = self._custom_or_unknown(text, level)
            return _record_class(level, "json")

        try:
            fields = json.loads(text)
        except ValueError:
            fields = None

        if isinstance(fields, dict):
            level = self._custom_or_unknown(text, _level_member(fields))
            return LineClass(LineKind.RECORD, level, "json", fields)

        member = _LEVEL_MEMBER_RE.search(text)
        if member is None:
            return None

        number = member.group("number")
        if number is not None:
            level = level_from_number(float(number))
        else:
            level = level_from_value(member.group("word"))

        return _record_class(level, "json-fragment")

    def _text_level(self, text: str) -> LineClass:
        match = _TEXT_LEVEL_RE.search(text)
        while match is not None:
            word = match.group("colon")
            if word is None or len(text[: match.start()].split()) <= (
                _COLON_MAX_TOKENS_BEFORE
            ):
                word = word or match.group("upper") or match.group("bracket")
                return _record_class(LEVEL_WORDS[word.lower()], "keyword")
            match = _TEXT_LEVEL_RE.search(text, match.end())

        if ("Error" in text or "Exception" in text) and (
            _ERROR_HEADER_ANYWHERE_RE.search(text)
        ):
            return _record_class(Level.ERROR, "header")

        level = self._custom_or_unknown(text, Level.UNKNOWN)
        if level is Level.UNKNOWN:
            return _record_class(level, "none")
        return _record_class(level, "custom")

    def _custom_or_unknown(self, text: str, level: Level) -> Level:
        if level is not Level.UNKNOWN or self.custom is None:
            return level

        match = self.custom.search(text)
        if match is None or match.group("level") is None:
            return Level.UNKNOWN

        return level_from_value(match.group("level"))


# Text records with an explicit error or fatal level open an error stack.
_RECORD_CLASSES = {
    (level, source): LineClass(
        LineKind.RECORD,
        level,
        source,
        opens_error_stack=source in ("keyword", "custom")
        and level in (Level.ERROR, Level.FATAL),
    )
    for level in Level
    for source in ("json", "json-fragment", "keyword", "header", "custom", "none")
}


def _level_member(fields: dict[str, Any]) -> Level:
    for key in ("level", "severity", "log.level"):
        if key in fields:
            return level_from_value(fields[key])

    nested = fields.get("log")
    if isinstance(nested, dict) and "level" in nested:
        return level_from_value(nested["level"])

    return Level.UNKNOWN


def classify_lines(
    lines: Iterable[bytes],
    classifier: LineClassifier | None = None,
    *,
    line_cap: int = LINE_CAP,
) -> Iterator[tuple[str, LineClass]]:
    """Clean and classify physical lines in order, carrying the context between them.

    This is the line-by-line form of the rules, used for small inputs and as
    the reference that the block scanner must agree with. Each line is judged
    on its first `line_cap` bytes, as the scanner does. Yields each cleaned
    line with its class.
    """
    classifier = classifier or LineClassifier()
    after_error_keyword = False
    for index, raw in enumerate(lines):
        # Cut before cleaning, because the reader cuts a long line before any
        # block search reads it.
        head = raw.replace(b"\x00", b"")[:line_cap]
        text = decode_line(clean_line_bytes(head, first_in_file=index == 0), line_cap)
        found = classifier.classify(text, after_error_keyword=after_error_keyword)
        if found.kind is not LineKind.BLANK:
            after_error_keyword = found.opens_error_stack

        yield text, found

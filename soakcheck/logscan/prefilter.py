"""Block-level shortcuts that keep a scan close to the speed of reading.

A block is a run of complete lines. Instead of classifying every line in
Python, the scanner cleans the whole block with a few C-level passes, counts
records from the first byte of each line, and classifies only the candidate
lines: those that contain a level word, an error header or a numeric level of
40 or more. Every other line is a record of level info, debug or unknown, a
continuation, or a blank line, so skipping it changes no count.

Two finders give the candidates: `HyperscanFinder` with one compiled
multi-pattern pass, and `PythonFinder`, with standard-library passes, where
Hyperscan has no wheel. Removing colour codes from a whole block costs about
as much as the Hyperscan pass, so that finder can leave them in: it searches
the lines with a code apart, with patterns that allow codes anywhere. The
self-tests check that both finders agree with the line-by-line rules.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from soakcheck.logscan.classify import (
    ANSI_BYTES_RE,
    CLOSING_BRACKETS_PATTERN,
    COMPOSE_PREFIX_RE,
    UTF8_BOM,
)

try:
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform's wheels
    hyperscan = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# Compiled Hyperscan databases, one per thread and set of phrases (see
# `HyperscanFinder`). A scan has one set, so the cache stays small.
_THREAD_DATABASES = threading.local()
_MAX_DATABASES = 16

# A pino or bunyan line whose first member is a numeric level below 40. Such
# a line is an info or debug record whatever its message, unless a second
# "level" member overrides the first (checked by the caller).
_LOW_NUMERIC_LEVEL_LINE_RE = re.compile(rb'\n\{"level":[0-3]?\d[,}][^\n]*')

# Stands in for a removed low-level line. It keeps the line count, reads as
# a non-blank record start and contains no level word. NUL bytes are removed
# from every block before this step, so no real line can look like it.
PLACEHOLDER = b"{\x00"

# The newline before a line that is not a record start: blank, indented, or
# only closing brackets.
_NON_RECORD_START_RE = re.compile(
    rb"\n(?=[ \t\n]|" + CLOSING_BRACKETS_PATTERN.encode() + rb"\n)"
)

# Lower-case substrings of every level word of class warn, error or fatal,
# and of the JavaScript error headers.
_NEEDLES = (
    b"err",
    b"warn",
    b"fatal",
    b"crit",
    b"emerg",
    b"alert",
    b"panic",
    b"exception",
)
# A level member that may be 40 or more. That is a number from 40 up, where
# leading zeros and (inside a string) spaces and escaped spaces are allowed.
# It is also any number with a point or an exponent, or Infinity, because
# JSON parsing turns those into a float.
LEVEL_MEMBER_PATTERN = (
    rb'"(?:level|severity|log\.level)"[ \t\r\f\v]*:[ \t\r\f\v]*"?'
    rb"(?:[ \t\r\f\v]|\\[nrtf])*"
    rb"(?:0*(?:[4-9][0-9]|[1-9][0-9]{2,})|-?[0-9]*\.|-?[0-9]+[eE]|Infinity)"
)
# A JSON escape of an ASCII character, which could spell a level word or a
# "level" key that no plain search finds.
ESCAPE_PATTERN = rb"\\u00[0-9a-fA-F]{2}"
_HIGH_NUMERIC_LEVEL_RE = re.compile(LEVEL_MEMBER_PATTERN + b"|" + ESCAPE_PATTERN)


def clean_block(data: bytes, *, file_start: bool, keep_ansi: bool = False) -> bytes:
    """Apply the per-line cleaning of `classify.clean_line_bytes` to a block of lines.

    NUL bytes must already be removed. The passes run only when the block
    contains what they remove. With `keep_ansi`, colour codes stay, for a
    finder that handles the lines containing them (see `HyperscanFinder`);
    the caller then makes sure the block has no compose separator, whose
    removal must follow that of the colour codes.
    """
    if file_start and data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if keep_ansi:
        return data

    if b"\x1b" in data:
        data = ANSI_BYTES_RE.sub(b"", data)
    if b"|" in data:
        data = COMPOSE_PREFIX_RE.sub(b"", data)

    return data


def reduce_block(buffer: bytes) -> bytes:
    """Replace each low-level pino line with `PLACEHOLDER`, keeping line positions.

    `buffer` is a cleaned block preceded by one newline, so every line starts
    after a newline. Lines are replaced only when no other "level" member in
    the block could override a replaced line's level.
    """
    reduced, replaced = _LOW_NUMERIC_LEVEL_LINE_RE.subn(b"\n" + PLACEHOLDER, buffer)
    if not replaced:
        return buffer

    level_members = buffer.count(b'"level"')
    if level_members != replaced + reduced.count(b'"level"'):
        return buffer

    return reduced


def count_non_record_starts(buffer: bytes) -> int:
    """Count the lines of a newline-prefixed block that do not start a record."""
    return len(_NON_RECORD_START_RE.findall(buffer))


def candidate_starts(buffer: bytes) -> list[int]:
    """Return the sorted start offsets of lines that may be warn, error or fatal.

    `buffer` is newline-prefixed and ends with a newline.
    """
    lowered = buffer.lower()
    starts: set[int] = set()
    for needle in _NEEDLES:
        found = lowered.find(needle)
        while found != -1:
            starts.add(lowered.rfind(b"\n", 0, found) + 1)
            found = lowered.find(needle, lowered.find(b"\n", found))

    for match in _HIGH_NUMERIC_LEVEL_RE.finditer(buffer):
        starts.add(buffer.rfind(b"\n", 0, match.start()) + 1)

    return sorted(starts)


def all_line_starts(buffer: bytes) -> list[int]:
    """Return the start offset of every line except placeholders."""
    starts = []
    position = buffer.find(b"\n")
    end = len(buffer) - 1
    while position < end:
        start = position + 1
        if not buffer.startswith(PLACEHOLDER + b"\n", start):
            starts.append(start)
        position = buffer.find(b"\n", start)

    return starts


@dataclass(frozen=True, slots=True)
class BlockLines:
    """Candidate lines and the record-start count of a newline-prefixed block.

    `buffer` is the text to classify: the block itself, or the block with
    low-level pino lines replaced by `PLACEHOLDER`. `starts` are the sorted
    start offsets of the lines to classify, and `non_record_starts` counts
    the lines that start no record (blank, indented or closing brackets).
    `literal_ends` lists, for each phrase the finder was given, the end
    offsets of its matches in order, or is None when the finder did not
    search the phrases.
    """

    buffer: bytes
    starts: list[int]
    non_record_starts: int
    literal_ends: list[list[int]] | None = None


class PythonFinder:
    """Finds candidate lines with C-level passes of the standard library."""

    name = "python"

    def find(
        self,
        buffer: bytes,
        *,
        every_line: bool = False,
        literals: tuple[bytes, ...] = (),
        keeps_ansi: bool = False,
    ) -> BlockLines:
        if keeps_ansi:
            raise ValueError("PythonFinder needs blocks without colour codes")
        reduced = reduce_block(buffer)
        starts = all_line_starts(reduced) if every_line else candidate_starts(reduced)
        return BlockLines(reduced, starts, count_non_record_starts(reduced))


# One expression reports each candidate line once, at the end of the line: a
# level word or error header anywhere (ASCII case ignored, as `bytes.lower`
# does), a level member that may be 40 or more, or a JSON escape.
_HS_CANDIDATE = (
    rb"(?:(?i:"
    + b"|".join(_NEEDLES)
    + rb")|"
    + LEVEL_MEMBER_PATTERN
    + b"|"
    + ESCAPE_PATTERN
    + rb")[^\n]*\n"
)
# The newline before a line that starts no record, in two exclusive forms.
_HS_NON_RECORD = (
    rb"\n[ \t\n]",
    rb"\n" + CLOSING_BRACKETS_PATTERN.encode() + rb"\n",
)


# Lines with colour codes are searched apart, with each pattern allowing any
# number of codes between its characters, so the codes need not be removed
# from the whole block. A code is a control sequence as `classify.ANSI_RE`
# defines it. These patterns may report more lines than the plain ones on
# cleaned text would, never fewer: a line with a level key is a candidate
# whatever its value.
_ANSI_GAP = rb"(?:\x1b\[[0-?]*[ -/]*[@-~])*"


def _tolerant(literal: bytes) -> bytes:
    """Return a pattern for `literal` that allows colour codes between its bytes."""
    parts = [
        bytes([byte]) if chr(byte).isalnum() and byte < 128 else b"\\x%02x" % byte
        for byte in literal
    ]
    return _ANSI_GAP.join(parts)


_HS_TOLERANT_CANDIDATE = (
    rb"(?:(?i:"
    + b"|".join(_tolerant(needle) for needle in _NEEDLES)
    + rb")|"
    + b"|".join(_tolerant(key) for key in (b'"level"', b'"severity"', b'"log.level"'))
    + b"|"
    + _tolerant(b"\\u00")
    + rb")[^\n]*\n"
)
_HS_TOLERANT_NON_RECORD = (
    rb"\n" + _ANSI_GAP + rb"[ \t\n]",
    rb"\n"
    + _ANSI_GAP
    + rb"(?:[)\]}]"
    + _ANSI_GAP
    + rb")+(?:[,;]"
    + _ANSI_GAP
    + rb")?(?:[ \t]"
    + _ANSI_GAP
    + rb")*\n",
)


def cache_folder() -> Path:
    """Return the folder of compiled databases: $XDG_CACHE_HOME/soakcheck/hyperscan."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soakcheck" / "hyperscan"


def _compile(expressions: list[bytes]):
    database = hyperscan.Database()
    database.compile(
        expressions=expressions,
        ids=list(range(len(expressions))),
        elements=len(expressions),
        flags=0,
    )
    return database


def compiled(expressions: list[bytes]):
    """Return a Hyperscan database for `expressions`, from the cache when it has one.

    The patterns for coloured lines take about 50 ms to compile, which every
    checkpoint process would pay, so databases are kept on disk under a name
    derived from the patterns and the Hyperscan build. A file that cannot be
    read or written only costs a compile.
    """
    version = getattr(hyperscan, "__version__", "")
    identity = repr((expressions, version, platform.machine()))
    path = cache_folder() / (hashlib.sha256(identity.encode()).hexdigest() + ".db")
    try:
        database = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
        return database
    except FileNotFoundError:
        pass
    except (OSError, hyperscan.HyperscanError) as exc:
        logger.warning("compiled pattern cache unreadable path=%s error=%s", path, exc)

    database = _compile(expressions)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(hyperscan.dumpb(database))
        os.replace(partial, path)
    except OSError as exc:
        logger.debug("compiled pattern cache not written path=%s error=%s", path, exc)
    return database


class HyperscanFinder:
    """Finds candidate lines and non-record starts in one Hyperscan pass.

    One compiled multi-pattern search replaces the lowering, the eight word
    searches, the numeric level search and the low-level pino replacement of
    `PythonFinder`, which together cost several passes over each block. A
    low-level pino line that mentions a level word becomes a candidate here,
    and the block scanner's JSON shortcut classifies it without decoding.
    Each thread gets its own database, as a scan needs scratch memory that
    two threads cannot share.
    """

    name = "hyperscan"

    def __init__(self) -> None:
        if hyperscan is None:
            raise RuntimeError(
                "the hyperscan module is not installed; install it or use PythonFinder"
            )

    def _database(self, key: tuple[str, tuple[bytes, ...]]):
        """Return this thread's database for a kind of search and its phrases.

        The kinds are "plain" for the block's own patterns and "tolerant" for
        lines with colour codes, with codes allowed inside every pattern.
        """
        databases = getattr(_THREAD_DATABASES, "by_key", None)
        if databases is None:
            databases = _THREAD_DATABASES.by_key = {}

        database = databases.get(key)
        if database is None:
            kind, literals = key
            if kind == "tolerant":
                expressions = [
                    _HS_TOLERANT_CANDIDATE,
                    *_HS_TOLERANT_NON_RECORD,
                    *(_tolerant(item) for item in literals),
                ]
            else:
                # Each byte is escaped, so a phrase is matched as it is written.
                escaped = [
                    b"".join(b"\\x%02x" % byte for byte in item) for item in literals
                ]
                expressions = [_HS_CANDIDATE, *_HS_NON_RECORD, *escaped]
            database = compiled(expressions)
            if len(databases) >= _MAX_DATABASES:
                databases.clear()
            databases[key] = database
        return database

    def find(
        self,
        buffer: bytes,
        *,
        every_line: bool = False,
        literals: tuple[bytes, ...] = (),
        keeps_ansi: bool = False,
    ) -> BlockLines:
        """Return the candidate lines of a newline-prefixed block.

        With `keeps_ansi`, the block still contains colour codes: the lines
        with a code are taken out of the block's results and searched again
        together with the tolerant patterns, so no code needs removing.
        """
        if every_line:
            return BlockLines(
                buffer, all_line_starts(buffer), count_non_record_starts(buffer)
            )

        database = self._database(("plain", literals))
        ends, blank_ends, bracket_ends, literal_ends = self._scan(
            database, buffer, literals
        )
        # Each end offset is just past a line's newline, so the line start is one
        # backward search away. Sorting keeps the order whatever the report order.
        ends.sort()
        if not keeps_ansi:
            starts = [buffer.rfind(b"\n", 0, end - 1) + 1 for end in ends]
            non_record = len(blank_ends) + len(bracket_ends)
            return BlockLines(buffer, starts, non_record, literal_ends)

        return self._with_marked_lines(
            buffer, literals, ends, blank_ends + bracket_ends, literal_ends
        )

    def _scan(self, database, buffer: bytes, literals: tuple[bytes, ...]):
        """Run one scan; return candidate, blank, bracket and phrase ends."""
        ends: list[int] = []
        blank_ends: list[int] = []
        bracket_ends: list[int] = []
        literal_ends: list[list[int]] = [[] for _ in literals]
        found = (ends, blank_ends, bracket_ends, *literal_ends)

        def on_match(expression: int, _start: int, end: int, _flags, _ctx) -> None:
            found[expression].append(end)

        database.scan(buffer, match_event_handler=on_match)
        for matches in literal_ends:
            matches.sort()
        return ends, blank_ends, bracket_ends, literal_ends

    def _with_marked_lines(
        self,
        buffer: bytes,
        literals: tuple[bytes, ...],
        ends: list[int],
        non_record_ends: list[int],
        literal_ends: list[list[int]],
    ) -> BlockLines:
        """Combine the results of lines without colour codes with the others'."""
        # The ends of the lines with a colour code. A loop of C-level searches
        # measured faster here than one more pattern in the Hyperscan pass.
        marked_ends = []
        position = buffer.find(b"\x1b")
        while position != -1:
            line_end = buffer.find(b"\n", position)
            marked_ends.append(line_end + 1)
            position = buffer.find(b"\x1b", line_end)
        marked = set(marked_ends)
        marked_starts = [buffer.rfind(b"\n", 0, end - 1) + 1 for end in marked_ends]
        marked_start_set = set(marked_starts)

        starts = [
            buffer.rfind(b"\n", 0, end - 1) + 1 for end in ends if end not in marked
        ]
        # The blank form ends one byte into its line and the bracket form just
        # after the line's own newline. For both, the last newline before the
        # final matched byte is the one before the line.
        non_record = sum(
            1
            for end in non_record_ends
            if buffer.rfind(b"\n", 0, end - 1) + 1 not in marked_start_set
        )
        kept_literals = [
            [end for end in matches if buffer.find(b"\n", end - 1) + 1 not in marked]
            for matches in literal_ends
        ]
        if not marked_ends:
            return BlockLines(buffer, starts, non_record, kept_literals)

        # The marked lines, newline-prefixed, with where each starts in both.
        lines = [buffer[s:e] for s, e in zip(marked_starts, marked_ends, strict=True)]
        separate = b"\n" + b"".join(lines)
        offsets = list(accumulate((len(line) for line in lines), initial=1))

        database = self._database(("tolerant", literals))
        tolerant_ends, blank_ends, bracket_ends, tolerant_literals = self._scan(
            database, separate, literals
        )
        for end in tolerant_ends:
            starts.append(marked_starts[bisect_right(offsets, end - 1) - 1])
        starts.sort()
        non_record += len(blank_ends) + len(bracket_ends)

        for index, (literal, matches) in enumerate(
            zip(literals, tolerant_literals, strict=True)
        ):
            hit_lines = {bisect_right(offsets, end - 1) - 1 for end in matches}
            for line in hit_lines:
                # A code's own bytes may have matched, so count on cleaned text.
                count = ANSI_BYTES_RE.sub(b"", lines[line]).count(literal)
                # A stand-in end that `PatternSearch` maps back to this line.
                kept_literals[index] += [marked_starts[line] + len(literal)] * count
            kept_literals[index].sort()

        return BlockLines(buffer, starts, non_record, kept_literals)


def default_finder() -> PythonFinder | HyperscanFinder:
    """Return the Hyperscan finder if it is installed, else the Python one."""
    if hyperscan is None:
        logger.debug("hyperscan is not installed; log scans use the slower finder")
        return PythonFinder()
    return HyperscanFinder()

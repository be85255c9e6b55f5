"""Counting records and collecting evidence from blocks of complete lines."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TypeVar

from soakcheck.logscan.classify import (
    ANSI_BYTES_RE,
    LINE_CAP,
    Level,
    LineClass,
    LineClassifier,
    LineKind,
    decode_line,
    level_from_number,
    parse_number,
)
from soakcheck.logscan.evidence import LineRef, LogLine, PatternMatch, evidence_text
from soakcheck.logscan.newlines import Newlines
from soakcheck.logscan.prefilter import (
    HyperscanFinder,
    PythonFinder,
    clean_block,
    default_finder,
)
from soakcheck.logscan.reader import Chunk
from soakcheck.logscan.rotation import FileState
from soakcheck.logscan.timestamps import record_time

_NON_BLANK_RE = re.compile(rb"[^ \t\n]")
_PROBLEM_LEVELS = (Level.ERROR, Level.FATAL)

# A pino line that starts with a plain numeric level. When it contains no other
# "level" member, the classifier takes this number whatever follows, so the
# line's class is known without decoding it.
_PINO_PREFIX = b'{"level":'
_PINO_LEVEL_RE = re.compile(rb'\{"level":(-?[0-9]+)[,}]')
_PINO_CLASSES = {
    level: LineClass(LineKind.RECORD, level, "json")
    for level in (Level.WARN, Level.INFO, Level.DEBUG)
}


def _pino_class(buffer: bytes, start: int, end: int) -> LineClass | None:
    """Return the class of a pino line below error level, or None to classify it."""
    match = _PINO_LEVEL_RE.match(buffer, start, end)
    if match is None or buffer.count(b'"level"', start, end) != 1:
        return None

    level = level_from_number(parse_number(match.group(1)))
    return _PINO_CLASSES.get(level)


_Item = TypeVar("_Item")
_Lined = TypeVar("_Lined", LineRef, LogLine)


class PatternSearch:
    """A user pattern searched in cleaned blocks, each match kept with its line.

    The pattern is matched against the UTF-8 bytes of the cleaned lines, with
    `^` and `$` anchored at line ends. A match lies within one line, and a
    line that matches counts once. A plain phrase is searched with a
    substring search, which is much faster than the regular expression
    engine.
    """

    def __init__(self, name: str, pattern: str) -> None:
        if not pattern:
            raise ValueError(
                f"log pattern {name} is empty; give a phrase or a regular expression"
            )

        self.name = name
        self.pattern = pattern
        self.literal: bytes | None = None
        if re.escape(pattern).replace("\\ ", " ") == pattern:
            self.literal = pattern.encode()

        # A phrase that cannot overlap itself has as many matches as a
        # search engine that reports overlapping ones finds, so a finder can
        # search it together with the candidate patterns.
        self.shared_literal: bytes | None = None
        if self.literal is not None and not _overlaps_itself(self.literal):
            self.shared_literal = self.literal

        try:
            self.regex = re.compile(pattern.encode(), re.MULTILINE)
        except re.error as exc:
            raise ValueError(
                f"log pattern {name}={pattern!r} is not a valid regular expression "
                f"({exc}); fix the pattern"
            ) from exc

    def line_starts(self, buffer: bytes, ends: list[int] | None = None) -> list[int]:
        """Return the start offsets of the lines that match, in order.

        `ends` are the end offsets of this phrase's matches when a finder
        already searched it.
        """
        starts: list[int] = []
        if ends is not None:
            for end in ends:
                start = buffer.rfind(b"\n", 0, end - 1) + 1
                if not starts or starts[-1] != start:
                    starts.append(start)
            return starts

        if self.literal is not None:
            found = buffer.find(self.literal)
            while found != -1:
                starts.append(buffer.rfind(b"\n", 0, found) + 1)
                found = buffer.find(self.literal, buffer.find(b"\n", found))
            return starts

        for position in self._match_starts(buffer):
            start = buffer.rfind(b"\n", 0, position) + 1
            if not starts or starts[-1] != start:
                starts.append(start)

        return starts

    def count_and_last(
        self, buffer: bytes, ends: list[int] | None = None
    ) -> tuple[int, int | None]:
        """Return the number of matches in the buffer and the start of the last line.

        `ends` are as for `line_starts`.
        """
        if ends is not None:
            count = len(ends)
            last = ends[-1] - len(self.shared_literal or b"") if ends else -1
        elif self.literal is not None:
            count = buffer.count(self.literal)
            last = buffer.rfind(self.literal)
        else:
            starts = list(self._match_starts(buffer))
            count = len(starts)
            last = starts[-1] if starts else -1

        if last == -1:
            return count, None

        return count, buffer.rfind(b"\n", 0, last) + 1

    def _match_starts(self, buffer: bytes) -> Iterator[int]:
        """Yield the start of each regular expression match within one line.

        `buffer` is newline-prefixed, so the search starts after that first
        newline. A match that runs past the end of its line is searched again
        inside the line only, so no match depends on where blocks were cut.
        A match at a line's final newline belongs to that line.
        """
        size = len(buffer)
        position = 1
        while position < size:
            match = self.regex.search(buffer, position)
            if match is None or match.start() >= size:
                return

            start = match.start()
            line_end = buffer.find(b"\n", start)
            if match.end() > line_end:
                match = self.regex.search(buffer, start, line_end)
                if match is None:
                    position = line_end + 1
                    continue
                start = match.start()

            yield start
            position = max(match.end(), start + 1)


def _overlaps_itself(phrase: bytes) -> bool:
    """Return whether a proper prefix of `phrase` is also its suffix ("abab")."""
    return any(phrase.endswith(phrase[:size]) for size in range(1, len(phrase)))


@dataclass
class ScanTally:
    """Counts and evidence gathered over every file read by one scan."""

    now: datetime
    sample_limit: int = 5
    line_limit: int = 1000
    match_limit: int = 100
    records: int = 0
    error_records: int = 0
    fatal_records: int = 0
    warn_records: int = 0
    lines_read: int = 0
    errors_per_hour: Counter[str] = field(default_factory=Counter)
    errors_without_timestamp: int = 0
    error_samples: list[LogLine] = field(default_factory=list)
    fatal_samples: list[LogLine] = field(default_factory=list)
    error_lines: list[LineRef] = field(default_factory=list)
    fatal_lines: list[LineRef] = field(default_factory=list)
    first_error: LineRef | None = None
    last_error: LineRef | None = None
    worker_matches: int = 0
    worker_last: LogLine | None = None
    matches: dict[str, list[PatternMatch]] = field(default_factory=dict)
    match_counts: Counter[str] = field(default_factory=Counter)

    def add_record(self, found: LineClass, text: str, ref: LineRef) -> None:
        """Count one error or fatal record and keep its evidence."""
        time = record_time(text, found.fields)
        if self.first_error is None:
            self.first_error = ref
        self.last_error = ref

        level = found.level
        if level is Level.FATAL:
            self.fatal_records += 1
            _keep(self.fatal_lines, ref, self.line_limit)
            self._keep_sample(self.fatal_samples, ref, time, level, text)
            return

        self.error_records += 1
        _keep(self.error_lines, ref, self.line_limit)
        self._keep_sample(self.error_samples, ref, time, Level.ERROR, text)
        if time is None:
            self.errors_without_timestamp += 1
            time = self.now
        self.errors_per_hour[_hour_start(time)] += 1

    def _keep_sample(
        self,
        samples: list[LogLine],
        ref: LineRef,
        time: datetime | None,
        level: Level,
        text: str,
    ) -> None:
        if len(samples) < self.sample_limit:
            line = LogLine(ref.path, ref.line, time, level.value, evidence_text(text))
            samples.append(line)

    def add_match(self, name: str, match: PatternMatch) -> None:
        self.match_counts[name] += 1
        _keep(self.matches.setdefault(name, []), match, self.match_limit)

    @property
    def problem_records(self) -> int:
        """Error and fatal records counted so far."""
        return self.error_records + self.fatal_records

    def add_part(self, part: ScanTally, *, line_shift: int) -> None:
        """Add the tally of the lines that follow this one's, read separately.

        `part` numbered its lines from 0, and its pattern matches counted
        errors and lines from 0 too. `line_shift` is the number of lines of
        the same file read before `part` began.
        """
        sequence_shift = self.lines_read
        errors_shift = self.problem_records
        self.records += part.records
        self.error_records += part.error_records
        self.fatal_records += part.fatal_records
        self.warn_records += part.warn_records
        self.lines_read += part.lines_read
        self.errors_per_hour.update(part.errors_per_hour)
        self.errors_without_timestamp += part.errors_without_timestamp

        _extend(self.error_samples, part.error_samples, self.sample_limit, line_shift)
        _extend(self.fatal_samples, part.fatal_samples, self.sample_limit, line_shift)
        _extend(self.error_lines, part.error_lines, self.line_limit, line_shift)
        _extend(self.fatal_lines, part.fatal_lines, self.line_limit, line_shift)

        if part.first_error is not None and self.first_error is None:
            self.first_error = _shifted(part.first_error, line_shift)
        if part.last_error is not None:
            self.last_error = _shifted(part.last_error, line_shift)

        self.worker_matches += part.worker_matches
        if part.worker_last is not None:
            self.worker_last = _shifted(part.worker_last, line_shift)

        for name, matches in part.matches.items():
            collected = self.matches.setdefault(name, [])
            room = max(self.match_limit - len(collected), 0)
            for match in matches[:room]:
                collected.append(
                    replace(
                        match,
                        line=match.line + line_shift,
                        sequence=match.sequence + sequence_shift,
                        errors_before=match.errors_before + errors_shift,
                    )
                )
        self.match_counts.update(part.match_counts)


def _shifted(item: _Lined, shift: int) -> _Lined:
    return replace(item, line=item.line + shift)


def _extend(mine: list[_Lined], theirs: list[_Lined], limit: int, shift: int) -> None:
    """Append shifted copies of `theirs` to `mine` while it has fewer than `limit`."""
    room = max(limit - len(mine), 0)
    mine.extend(_shifted(item, shift) for item in theirs[:room])


def _keep(items: list[_Item], item: _Item, limit: int) -> None:
    if len(items) < limit:
        items.append(item)


def _hour_start(time: datetime) -> str:
    if time.tzinfo is UTC:
        # Records of one hour share one label, so it is built once.
        return _utc_hour_label(int(time.timestamp() // 3600))
    return time.replace(minute=0, second=0, microsecond=0).isoformat()


@lru_cache(maxsize=256)
def _utc_hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class _Hit:
    line: int
    name: str
    start: int


class BlockScanner:
    """Feeds the chunks of one file into a `ScanTally`, advancing its `FileState`.

    `path` names the file in evidence. `worker` and `patterns` are searched
    in every line. With a custom level pattern every line is classified,
    because any line may match it.
    """

    def __init__(
        self,
        tally: ScanTally,
        classifier: LineClassifier,
        path: str,
        state: FileState,
        *,
        worker: PatternSearch | None = None,
        patterns: list[PatternSearch] | None = None,
        line_cap: int = LINE_CAP,
        finder: PythonFinder | HyperscanFinder | None = None,
    ) -> None:
        self.tally = tally
        self.classifier = classifier
        self.path = path
        self.state = state
        self.worker = worker
        self.patterns = patterns or []
        self.line_cap = line_cap
        self.finder = finder or default_finder()
        self._first_sequence = 0
        self._keeps_ansi = False
        # Phrases the finder searches in its own pass.
        searches = ([worker] if worker is not None else []) + self.patterns
        self._shared_searches = [item for item in searches if item.shared_literal]
        self._shared = tuple(
            item.shared_literal or b"" for item in self._shared_searches
        )
        # Whether blocks with colour codes may keep them (see `clean_block`):
        # every search must then be one the finder does itself.
        self._ansi_in_finder = (
            isinstance(self.finder, HyperscanFinder)
            and classifier.custom is None
            and len(self._shared_searches) == len(searches)
        )

    def feed(self, chunk: Chunk) -> None:
        """Count the lines of `chunk` and move the state past them."""
        data = chunk.data
        # Compose prefixes are removed after colour codes, so a block with
        # both is cleaned whole.
        keep_ansi = self._ansi_in_finder and b"\x1b" in data and b"|" not in data
        buffer = b"\n" + clean_block(
            data, file_start=chunk.start == 0, keep_ansi=keep_ansi
        )
        # With a custom level pattern any line may match it.
        found = self.finder.find(
            buffer,
            every_line=self.classifier.custom is not None,
            literals=self._shared,
            keeps_ansi=keep_ansi,
        )
        self._keeps_ansi = keep_ansi
        ends: dict[PatternSearch, list[int]] = {}
        if found.literal_ends is not None:
            ends = dict(zip(self._shared_searches, found.literal_ends, strict=True))
        # Pattern matches are numbered across files from the lines read before.
        self._first_sequence = self.tally.lines_read - self.state.line

        newlines = Newlines(found.buffer)
        # The Python finder classifies a shortened copy, whose offsets differ.
        buffer_newlines = newlines if found.buffer is buffer else None
        hits = self._pattern_hits(buffer, ends, buffer_newlines)
        lines = self._classify(found.buffer, newlines, buffer, found.starts, hits)
        self.tally.lines_read += lines
        self.tally.records += lines - found.non_record_starts
        self.state.line += lines
        self.state.offset = chunk.end
        if self.worker is not None:
            self._note_worker(buffer, ends.get(self.worker))

    def _classify(
        self,
        reduced: bytes,
        newlines: Newlines,
        buffer: bytes,
        starts: list[int],
        hits: list[_Hit],
    ) -> int:
        """Classify the candidate lines at `starts`; return the block's line count."""
        tally = self.tally
        classify = self.classifier.classify
        line_cap = self.line_cap
        after_error_keyword = self.state.after_error_keyword
        gap_start = 1
        # Line numbers are counted only up to lines that need one.
        counted_to = 0
        line = self.state.line
        next_hit = 0
        quick_pino = self.classifier.custom is None
        record, blank, warn = LineKind.RECORD, LineKind.BLANK, Level.WARN
        errors_before = 0

        keeps_ansi = self._keeps_ansi
        for start in starts:
            end = reduced.find(b"\n", start)
            if after_error_keyword and self._has_text(reduced, gap_start, start):
                after_error_keyword = False

            if hits:
                line += newlines.count(counted_to, start)
                counted_to = start
                while next_hit < len(hits) and hits[next_hit].line < line:
                    self._record_hit(buffer, hits[next_hit], None)
                    next_hit += 1
                errors_before = tally.error_records + tally.fatal_records

            found = None
            line_end = min(end, start + line_cap)
            coloured = keeps_ansi and reduced.find(b"\x1b", start, line_end) != -1
            if quick_pino and not coloured and reduced.startswith(_PINO_PREFIX, start):
                found = _pino_class(reduced, start, line_end)
            if found is None:
                raw = reduced[start:line_end]
                if coloured:
                    raw = ANSI_BYTES_RE.sub(b"", raw)
                text = raw.decode("utf-8", "replace")
                found = classify(text, after_error_keyword=after_error_keyword)

            kind = found.kind
            if kind is record:
                level = found.level
                if level is warn:
                    tally.warn_records += 1
                elif level in _PROBLEM_LEVELS:
                    line += newlines.count(counted_to, start)
                    counted_to = start
                    tally.add_record(found, text, LineRef(self.path, line))
            elif found.source == "error-stack":
                # Counted as a record start by the block count; it is not one.
                tally.records -= 1
            if kind is not blank:
                after_error_keyword = found.opens_error_stack

            if hits:
                while next_hit < len(hits) and hits[next_hit].line == line:
                    self._record_hit(buffer, hits[next_hit], (found, errors_before))
                    next_hit += 1
            gap_start = end + 1

        for hit in hits[next_hit:]:
            self._record_hit(buffer, hit, None)

        if after_error_keyword and self._has_text(reduced, gap_start, len(reduced)):
            after_error_keyword = False
        self.state.after_error_keyword = after_error_keyword

        # The leading newline added before the block is not a line end.
        line += newlines.count(counted_to) - 1
        return line - self.state.line

    def _has_text(self, buffer: bytes, start: int, end: int) -> bool:
        """Return whether the lines in `start`..`end` contain anything but blanks."""
        if _NON_BLANK_RE.search(buffer, start, end) is None:
            return False
        if not self._keeps_ansi or buffer.find(b"\x1b", start, end) == -1:
            return True

        # A line of colour codes alone is blank once they are removed.
        cleaned = ANSI_BYTES_RE.sub(b"", buffer[start:end])
        return _NON_BLANK_RE.search(cleaned) is not None

    def _line_text(self, buffer: bytes, start: int) -> str:
        """Return the text of the line at `start`, without colour codes."""
        raw = buffer[start : buffer.find(b"\n", start)]
        if self._keeps_ansi and b"\x1b" in raw:
            raw = ANSI_BYTES_RE.sub(b"", raw)
        return decode_line(raw)

    def _pattern_hits(
        self,
        buffer: bytes,
        ends: dict[PatternSearch, list[int]],
        newlines: Newlines | None,
    ) -> list[_Hit]:
        """Return the pattern matches of `buffer` in line order, with line numbers.

        `newlines` indexes `buffer`, or is None to build one when needed.
        """
        if not self.patterns:
            return []

        hits = []
        for search in self.patterns:
            for start in search.line_starts(buffer, ends.get(search)):
                hits.append(_Hit(0, search.name, start))
        if not hits:
            return []

        # Line numbers come from one ordered pass over the buffer.
        hits.sort(key=lambda hit: hit.start)
        numbered = []
        newlines = newlines or Newlines(buffer)
        line = self.state.line
        counted_to = 0
        for hit in hits:
            line += newlines.count(counted_to, hit.start)
            counted_to = hit.start
            numbered.append(_Hit(line, hit.name, hit.start))

        return numbered

    def _record_hit(
        self, buffer: bytes, hit: _Hit, known: tuple[LineClass, int] | None
    ) -> None:
        tally = self.tally
        if len(tally.matches.get(hit.name, ())) >= tally.match_limit:
            # Only the first matches are kept, so later ones are only counted.
            tally.match_counts[hit.name] += 1
            return

        text = self._line_text(buffer, hit.start)
        if known is None:
            found = self.classifier.classify(text)
            errors_before = self.tally.problem_records
        else:
            found, errors_before = known

        level = found.level.value if found.level is not None else found.kind.value
        match = PatternMatch(
            self.path,
            hit.line,
            record_time(text, found.fields),
            level,
            evidence_text(text),
            self._first_sequence + hit.line,
            errors_before,
        )
        self.tally.add_match(hit.name, match)

    def _note_worker(self, buffer: bytes, ends: list[int] | None) -> None:
        """Count worker matches and keep the last one; runs after the state moved on."""
        if self.worker is None:
            return

        count, last = self.worker.count_and_last(buffer, ends)
        if last is None:
            return

        self.tally.worker_matches += count
        # The last match is usually near the end, so count lines back from there.
        line = self.state.line + 1 - buffer.count(b"\n", last)
        text = self._line_text(buffer, last)
        found = self.classifier.classify(text)
        level = found.level.value if found.level is not None else found.kind.value
        time = record_time(text, found.fields)
        self.tally.worker_last = LogLine(
            self.path, line, time, level, evidence_text(text)
        )

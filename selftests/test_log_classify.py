"""Self-tests of log classification and of the evidence a scan returns."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soakcheck.logscan import (
    Level,
    LineClassifier,
    LineKind,
    LogScan,
    check_reconciliation,
    classify_lines,
    consume,
    prefilter,
    reconciliation_patterns,
    scan_log,
    tail_lines,
)
from soakcheck.logscan.classify import LINE_CAP
from soakcheck.logscan.prefilter import HyperscanFinder, PythonFinder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
EXPECTED_FILES = sorted(FIXTURES.glob("*.expected.json"))
NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)


def sample_id(path: Path) -> str:
    return path.name.split(".")[0]


def expected_of(expected_file: Path) -> dict:
    return json.loads(expected_file.read_text())


def scan_whole(tmp_path: Path, expected_file: Path) -> tuple[LogScan, LogScan | None]:
    """Scan a copy of a sample, and again after adding a missing last newline."""
    copy = tmp_path / expected_file.name.replace(".expected.json", ".log")
    shutil.copyfile(FIXTURES / copy.name, copy)
    first = scan_log(copy, None, now=NOW)
    if copy.read_bytes().endswith(b"\n"):
        return first, None

    with open(copy, "ab") as file:
        file.write(b"\n")
    return first, scan_log(copy, first.state, now=NOW)


def line_class(found) -> str:
    if found.kind is LineKind.CONTINUATION:
        return "cont"
    if found.kind is LineKind.BLANK:
        return "blank"
    return found.level.value


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


# The samples and their expected counts ---------------------------------------


@pytest.mark.parametrize("expected_file", EXPECTED_FILES, ids=sample_id)
def test_sample_counts_match_expected(tmp_path: Path, expected_file: Path) -> None:
    """A scan counts the records of each level that the expected file lists."""
    expected = expected_of(expected_file)

    first, completed = scan_whole(tmp_path, expected_file)
    scans = [first] + ([completed] if completed else [])

    assert sum(s.records for s in scans) == expected["records"]
    assert sum(s.error_records for s in scans) == expected["error_records"]
    assert sum(s.fatal_records for s in scans) == expected["fatal_or_critical_records"]
    assert sum(s.warn_records for s in scans) == expected["warn_records"]


@pytest.mark.parametrize("expected_file", EXPECTED_FILES, ids=sample_id)
def test_sample_error_and_fatal_lines(tmp_path: Path, expected_file: Path) -> None:
    """A scan finds error and fatal records at the expected line numbers."""
    expected = expected_of(expected_file)

    first, completed = scan_whole(tmp_path, expected_file)
    scans = [first] + ([completed] if completed else [])
    error_lines = [ref.line for s in scans for ref in s.error_lines]
    fatal_lines = [ref.line for s in scans for ref in s.fatal_lines]

    assert error_lines == expected["error_record_lines"]
    assert fatal_lines == expected["fatal_record_lines"]


@pytest.mark.parametrize("expected_file", EXPECTED_FILES, ids=sample_id)
def test_sample_line_classes(expected_file: Path) -> None:
    """Each physical line of a sample gets the class its expected file gives it."""
    expected = expected_of(expected_file)
    lines = (FIXTURES / expected["file"]).read_bytes().split(b"\n")
    if lines[-1] == b"":
        lines.pop()

    got = [line_class(found) for _, found in classify_lines(lines)]
    want = [entry["class"] for entry in expected["per_line"]]

    assert got == want


def test_partial_last_line_waits_for_newline(tmp_path: Path) -> None:
    """A last line without its newline is counted once, after the newline comes."""
    expected_file = FIXTURES / "01_pino_api_service.expected.json"

    first, completed = scan_whole(tmp_path, expected_file)

    assert first.error_records == 7
    assert completed is not None
    assert [ref.line for ref in completed.error_lines] == [28]


# Lines that only a careful search classifies right: level members with
# spaces, low pino levels that mention errors, colour codes inside words,
# compose prefixes, closing brackets and error headers after error records.
TRICKY_LINES = [
    b'{"level":30,"msg":"0 errors","errorCount":0}',
    b'{"level" : 50, "time": 1796353200000, "msg": "spaced"}',
    b'{"severity":"40","msg":"slow"}',
    b'{"level":30,"level":50,"msg":"second member wins"}',
    b'{"log":{"level":"error"},"message":"nested"}',
    b"\x1b[31mER\x1b[0mROR\x1b[39m colour inside the word",
    b"\x1b[32m    at colourful (/app/a.js:1:1)",
    b"api-1  | 2026-12-04T03:00:00Z ERROR behind a compose prefix",
    b"api-1  |     at frame (/app/b.js:2:2)",
    b"  },",
    b"]",
    b"   ",
    b"2026-12-04T03:00:01Z ERROR job failed:",
    b"TypeError: cannot read properties of undefined",
    b"WARN disk at 81 %",
    b"(node:42) Warning: a promise was rejected",
    b"\xff\xfe invalid bytes then FATAL",
    # Level values in unusual JSON forms, and values that once raised.
    b'{"level":" 60"}',
    b'{"level":"\\n60"}',
    b'{"level":050}',
    b'{"level":"050"}',
    b'{"level":5e1}',
    b'{"level":Infinity}',
    b'{"level":39.99999999999999999}',
    b'{"level":"\\u0065rror"}',
    b'{"\\u006cevel":50}',
    b'{"level":\x1c50 broken',
    b'{"level":"--50","msg":"error"}',
    '{"level":"\u00b2","msg":"error"}'.encode(),
    '{"level":\u0665\u0660}'.encode(),
    b'{"level":1' + b"0" * 5000 + b"}",
    b'{"level":"error","time":"0001-01-01T00:00:00+05:00"}',
    b"0001-01-01T00:30:00+01:00 ERROR before year 1 in UTC",
    # Colour codes where they change what a line is once removed.
    b"\x1b[0m",
    b"\x1b[33m   at coloured (/app/c.js:3:3)",
    b"\x1b[31m}\x1b[0m",
    b"\x1b[31m} \x1b[0m,",
    b'\x1b[31m{"level":50,"msg":"coloured json"}',
    b'{"le\x1b[0mvel":50}',
    b"\x1b[1err is not a word once the code goes",
    b"\x1b[36m2026-12-04T03:00:00Z \x1b[31mERROR\x1b[0m coloured error",
]


def mixed_sample_log(path: Path, *, without: bytes | None = None) -> Path:
    """Write the sample logs' lines and the tricky lines, shuffled, three times.

    Lines that contain `without` are left out.
    """
    lines: list[bytes] = list(TRICKY_LINES)
    for log in sorted(FIXTURES.glob("*.log")):
        lines.extend(log.read_bytes().replace(b"\r\n", b"\n").split(b"\n"))
    if without is not None:
        lines = [line for line in lines if without not in line]
    random.Random(5).shuffle(lines)
    path.write_bytes(b"\n".join(lines * 3) + b"\n")
    return path


def line_reference(
    path: Path, line_cap: int = LINE_CAP
) -> tuple[Counter[str], list[int], list[int]]:
    """Classify a file line by line: counts by class, error and fatal line numbers."""
    counts: Counter[str] = Counter()
    error_lines, fatal_lines = [], []
    lines = path.read_bytes().split(b"\n")[:-1]
    classified = classify_lines(lines, line_cap=line_cap)
    for number, (_, found) in enumerate(classified, start=1):
        if found.kind is LineKind.RECORD:
            counts[found.level.value] += 1
            if found.level.value == "error":
                error_lines.append(number)
            elif found.level.value == "fatal":
                fatal_lines.append(number)
        else:
            counts[found.kind.value] += 1

    return counts, error_lines, fatal_lines


@pytest.mark.parametrize("finder", [PythonFinder, HyperscanFinder])
@pytest.mark.parametrize("without", [None, b"|"], ids=["all-lines", "no-compose"])
def test_block_scan_agrees_with_line_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finder, without
) -> None:
    """Both candidate searches count shuffled sample lines as the line rules do.

    Without compose separators, the Hyperscan finder leaves colour codes in
    the blocks and searches their lines apart.
    """
    if finder is HyperscanFinder and prefilter.hyperscan is None:
        pytest.skip("hyperscan is not installed on this platform")
    monkeypatch.setattr(consume, "default_finder", finder)
    path = mixed_sample_log(tmp_path / "mixed.log", without=without)
    reference, error_lines, fatal_lines = line_reference(path)

    # Small blocks put many lines across block boundaries.
    scan = scan_log(path, None, block_size=4096, worker_pattern=None)

    assert scan.error_records == reference["error"]
    assert scan.fatal_records == reference["fatal"]
    assert scan.warn_records == reference["warn"]
    assert (
        scan.records
        == reference.total() - reference["continuation"] - reference["blank"]
    )
    assert [ref.line for ref in scan.error_lines] == error_lines
    assert [ref.line for ref in scan.fatal_lines] == fatal_lines


# Traps ------------------------------------------------------------------------


def test_lines_that_mention_error_are_not_errors(tmp_path: Path) -> None:
    """Info lines that only mention errors ("0 errors") are not error records."""
    path = write_lines(
        tmp_path / "app.log",
        [
            "2026-12-04T10:00:00.000Z INFO  Processed 1500 records, 0 errors",
            "2026-12-04T10:00:01.000Z INFO  sync finished: errorCount=0",
            "2026-12-04T10:00:02.000Z INFO  retrying after error budget check",
            '{"level":30,"time":1796378400000,"errors":[],"msg":"0 errors"}',
            '{"level":"info","message":"No ERROR found in last 24h"}',
        ],
    )

    scan = scan_log(path, None)

    assert scan.records == 5
    assert scan.error_records == 0


def test_stack_trace_is_one_error_record(tmp_path: Path) -> None:
    """An ERROR line with its error header and stack frames is one record."""
    path = write_lines(
        tmp_path / "app.log",
        [
            "[Nest] 1  - 12/04/2026, 10:00:02 AM   ERROR [ExceptionsHandler] boom",
            "Error: boom",
            "    at handler (/app/dist/api.js:41:9)",
            "    at process.processTicksAndRejections (node:internal/process:95:5)",
            "",
            "2026-12-04T10:00:03.000Z INFO  next request",
        ],
    )

    scan = scan_log(path, None)

    assert scan.records == 2
    assert scan.error_records == 1


def test_ansi_colour_codes_are_ignored(tmp_path: Path) -> None:
    """Raw ESC colour codes and JSON-escaped ones do not hide the level."""
    path = write_lines(
        tmp_path / "app.log",
        [
            "\x1b[31merror\x1b[39m: Database connection lost",
            '{"message":"rejected","level":"\\u001b[31merror\\u001b[39m"}',
            "\x1b[32minfo\x1b[39m: Server started",
        ],
    )

    scan = scan_log(path, None)

    assert scan.error_records == 2
    assert scan.records == 3


def test_invalid_bytes_do_not_stop_the_scan(tmp_path: Path) -> None:
    """Invalid UTF-8, a BOM and CRLF line ends leave later lines counted."""
    path = tmp_path / "app.log"
    path.write_bytes(
        b"\xef\xbb\xbfINFO start\r\n"
        b"INFO caf\xe9 \xff\xfe\xc3\x28\r\n"
        b"ERROR payment failed \xe2\x82\r\n"
    )

    scan = scan_log(path, None)

    assert scan.records == 3
    assert [ref.line for ref in scan.error_lines] == [3]


def test_multi_megabyte_line_is_read_through(tmp_path: Path) -> None:
    """A 5 MB line spanning many blocks is one record, and later lines count."""
    big = '{"level":50,"time":1796378400000,"msg":"' + "x" * (5 * 1024 * 1024) + '"}'
    path = write_lines(tmp_path / "app.log", [big, "ERROR after the big line"])

    scan = scan_log(path, None, block_size=64 * 1024)

    assert scan.records == 2
    assert scan.error_records == 2
    assert scan.error_samples[0].text.endswith("more characters]")


def test_custom_pattern_finds_other_levels(tmp_path: Path) -> None:
    """A custom pattern gives a level to logfmt lines the built-in rules miss."""
    path = write_lines(
        tmp_path / "app.log",
        ["ts=2026-12-04T10:00:00Z level=error msg=timeout", "ts=x level=info msg=ok"],
    )

    plain = scan_log(path, None)
    custom = scan_log(path, None, custom_pattern=r"\blevel=(?P<level>\w+)")

    assert plain.error_records == 0
    assert custom.error_records == 1


def test_custom_level_that_is_not_a_number() -> None:
    """A custom level like "--5" is an unknown level, not an exception."""
    classifier = LineClassifier(r"lvl=(?P<level>\S+)")

    found = classifier.classify("lvl=--5 boom")

    assert found.level is Level.UNKNOWN


def test_custom_pattern_without_level_group_is_rejected() -> None:
    """A custom pattern without a group named `level` raises with the fix."""
    with pytest.raises(ValueError, match=r"\(\?P<level>"):
        LineClassifier(r"level=(\w+)")


# Evidence ---------------------------------------------------------------------


def test_errors_per_hour_use_line_timestamps(tmp_path: Path) -> None:
    """Errors count in the hour of their own timestamp, else in the hour of `now`."""
    path = write_lines(
        tmp_path / "app.log",
        [
            '{"level":50,"time":1796355000000,"msg":"a"}',
            "2026-12-04T03:40:00.000Z ERROR b",
            "2026-12-04 05:10:00 ERROR c",
            "ERROR without a timestamp",
        ],
    )

    scan = scan_log(path, None, now=NOW)

    assert scan.errors_per_hour == {
        "2026-12-04T03:00:00+00:00": 2,
        "2026-12-04T05:00:00+00:00": 1,
        "2026-12-04T12:00:00+00:00": 1,
    }
    assert scan.max_errors_in_an_hour == 2
    assert scan.errors_without_timestamp == 1


def test_samples_are_masked_and_cut(tmp_path: Path) -> None:
    """Error samples mask secrets and cut long lines with a visible marker."""
    line = "ERROR upstream rejected Authorization: Bearer eyJabc.def.ghi " + "y" * 400
    path = write_lines(tmp_path / "app.log", [line])

    scan = scan_log(path, None)
    text = scan.error_samples[0].text

    assert "eyJabc" not in text
    assert "Bearer ***" in text
    assert "[cut, " in text


def test_sample_limit_bounds_samples(tmp_path: Path) -> None:
    """No more samples are kept than `sample_limit`, while every error is counted."""
    path = write_lines(tmp_path / "app.log", [f"ERROR number {n}" for n in range(9)])

    scan = scan_log(path, None, sample_limit=3)

    assert len(scan.error_samples) == 3
    assert scan.error_records == 9


def test_worker_pattern_sets_last_seen(tmp_path: Path) -> None:
    """The worker's activity line is found and its own timestamp reported."""
    path = write_lines(
        tmp_path / "app.log",
        [
            "2026-12-04T10:00:00.000Z INFO  RecordingQueueWorker running normally",
            "2026-12-04T10:05:00.000Z INFO  RecordingQueueWorker running normally",
            "2026-12-04T10:06:00.000Z INFO  something else",
        ],
    )

    scan = scan_log(path, None)
    idle = scan_log(path, scan.state)

    assert scan.worker_seen is True
    assert scan.worker_last_seen == "2026-12-04T10:05:00+00:00"
    assert scan.worker_last_line is not None
    assert scan.worker_last_line.line == 2
    assert idle.worker_seen is False


def test_result_converts_to_json(tmp_path: Path) -> None:
    """The whole result, state included, converts to JSON."""
    path = write_lines(tmp_path / "app.log", ["2026-12-04T10:00:00.000Z ERROR x"])

    scan = scan_log(path, None)
    data = json.loads(json.dumps(scan.as_dict()))

    assert data["error_samples"][0]["time"] == "2026-12-04T10:00:00+00:00"
    assert data["state"]["offset"] == path.stat().st_size


def test_tail_lines_centre_on_last_error(tmp_path: Path) -> None:
    """The snapshot contains at most n masked lines around the last error."""
    lines = [f"INFO line {n}" for n in range(300)]
    lines[250] = "ERROR failed with password=hunter22"
    path = write_lines(
        tmp_path / "app.log", lines + [f"INFO after {n}" for n in range(50)]
    )

    tail = tail_lines(path, n=40)

    assert len(tail) == 40
    assert "ERROR failed with password=***" in tail
    assert tail[-1] == "INFO line 260"


def test_tail_lines_without_errors_is_the_end(tmp_path: Path) -> None:
    """Without an error, the snapshot is the last n lines."""
    path = write_lines(tmp_path / "app.log", [f"INFO line {n}" for n in range(100)])

    tail = tail_lines(path, n=10)

    assert tail == [f"INFO line {n}" for n in range(90, 100)]


# Reconciliation -----------------------------------------------------------------


def reconciliation_scan(tmp_path: Path, lines: list[str]) -> LogScan:
    path = write_lines(tmp_path / "app.log", lines)
    return scan_log(path, None, patterns=reconciliation_patterns())


def test_reconciliation_completed_cleanly(tmp_path: Path) -> None:
    """A start and a completion with no error between them passes."""
    scan = reconciliation_scan(
        tmp_path,
        [
            "2026-12-05T03:00:01.000Z INFO  Reconciliation started",
            "2026-12-05T03:04:00.000Z INFO  Reconciliation completed: 120 invoices",
        ],
    )

    evidence = check_reconciliation(
        scan,
        datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
    )

    assert evidence.due is True
    assert evidence.passed is True
    assert evidence.errors_during == 0


def test_reconciliation_errors_between_start_and_end(tmp_path: Path) -> None:
    """Error records logged between start and completion fail the job."""
    scan = reconciliation_scan(
        tmp_path,
        [
            "2026-12-05T02:59:00.000Z ERROR before the job, not counted",
            "2026-12-05T03:00:01.000Z INFO  Reconciliation started",
            "2026-12-05T03:01:00.000Z ERROR invoice 17 failed",
            '{"level":50,"time":1796439700000,"msg":"ledger mismatch"}',
            "2026-12-05T03:04:00.000Z INFO  Reconciliation completed",
        ],
    )

    evidence = check_reconciliation(
        scan,
        datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
    )

    assert evidence.passed is False
    assert evidence.errors_during == 2


def test_reconciliation_missing_completion(tmp_path: Path) -> None:
    """A start without a completion line fails the job with that reason."""
    scan = reconciliation_scan(
        tmp_path, ["2026-12-05T03:00:01.000Z INFO  Reconciliation started"]
    )

    evidence = check_reconciliation(
        scan,
        datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
    )

    assert evidence.passed is False
    assert "no completion line" in evidence.reason


def test_reconciliation_not_due_outside_window(tmp_path: Path) -> None:
    """A window that does not contain the scheduled time does not require the job."""
    scan = reconciliation_scan(tmp_path, ["2026-12-05T10:00:00.000Z INFO  idle"])

    evidence = check_reconciliation(
        scan,
        datetime(2026, 12, 5, 8, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
    )

    assert evidence.due is False
    assert evidence.passed is None


def test_reconciliation_schedule_is_validated() -> None:
    """A schedule that is not "HH:MM" raises a message showing the expected form."""
    scan = LogScan(path="app.log")

    with pytest.raises(ValueError, match="HH:MM"):
        check_reconciliation(
            scan,
            datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
            datetime(2026, 12, 5, 4, 0, tzinfo=UTC),
            schedule="3am",
        )


def test_finders_agree_on_patterns_and_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phrases searched in the Hyperscan pass match as the Python search does."""
    if prefilter.hyperscan is None:
        pytest.skip("hyperscan is not installed on this platform")
    path = mixed_sample_log(tmp_path / "mixed.log")
    with open(path, "ab") as file:
        file.write(b"job job job ERROR [x] a.b*c\nxx ab ab ab\n")
        file.write(b"\x1b[32mjo\x1b[1mb\x1b[0m and \x1b[1job\n")
    patterns = {
        "phrase": "job",
        "repeats": "ab ab",
        "regex": r"ERROR \[\w\]",
        "dots": "a.b*c",
    }
    # "ab ab" overlaps itself and "a.b*c" is a regular expression, so both
    # stay with the Python search; "job" is searched in the Hyperscan pass.
    results = {}
    for finder in (PythonFinder, HyperscanFinder):
        monkeypatch.setattr(consume, "default_finder", finder)
        scan = scan_log(path, None, worker_pattern="job", patterns=patterns)
        results[finder.name] = scan.as_dict()
        results[finder.name]["state"].pop("scanned_at")

    lines = path.read_bytes().split(b"\n")
    assert results["hyperscan"] == results["python"]
    # The coloured line contains "job" once after cleaning: "\x1b[1j" is a code.
    assert results["python"]["worker_matches"] == path.read_bytes().count(b"job")
    for name, phrase in (("phrase", b"job"), ("repeats", b"ab ab")):
        with_phrase = sum(1 for line in lines if phrase in line)
        assert results["python"]["match_counts"][name] == with_phrase


@pytest.mark.parametrize("block_size", [20, 64, 4096])
def test_long_lines_cut_before_cleaning(tmp_path: Path, block_size: int) -> None:
    """Lines over the cap are judged on their first bytes wherever blocks fall."""
    lines = [
        b"ok",
        b"api-1       | ERROR boom",
        b")" * 40 + b"x",
        b"\x1b[31m" * 5 + b"ERROR coloured",
        b"2026-12-04 ERROR short",
        b"ok again",
    ] * 3
    path = tmp_path / "long.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    reference, error_lines, _ = line_reference(path, line_cap=16)

    scan = scan_log(path, None, block_size=block_size, line_cap=16, worker_pattern=None)

    assert scan.error_records == reference["error"]
    assert [ref.line for ref in scan.error_lines] == error_lines
    assert (
        scan.records
        == reference.total() - reference["continuation"] - reference["blank"]
    )


def test_patterns_match_within_lines(tmp_path: Path) -> None:
    """A pattern matches inside a line and never the scanner's added newline."""
    path = write_lines(tmp_path / "app.log", ["a", "", "ready", "b"])
    patterns = {"blank": r"^\s*$", "ready": r"\s*ready"}

    scan = scan_log(path, None, patterns=patterns, worker_pattern=None)

    assert [match.line for match in scan.matches["blank"]] == [2]
    assert [match.line for match in scan.matches["ready"]] == [3]


def test_pattern_matches_past_the_limit_are_counted(tmp_path: Path) -> None:
    """Matches after the kept ones still count."""
    path = write_lines(tmp_path / "app.log", [f"job {n} done" for n in range(150)])

    scan = scan_log(path, None, patterns={"job": r"job \d+"}, worker_pattern=None)

    assert scan.match_counts["job"] == 150
    assert len(scan.matches["job"]) == 100


@pytest.mark.parametrize("finder", [PythonFinder, HyperscanFinder])
def test_colour_only_line_keeps_error_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finder
) -> None:
    """A line of colour codes alone is blank, so a stack after it stays attached."""
    if finder is HyperscanFinder and prefilter.hyperscan is None:
        pytest.skip("hyperscan is not installed on this platform")
    monkeypatch.setattr(consume, "default_finder", finder)
    path = tmp_path / "app.log"
    path.write_bytes(
        b"2026-12-04T03:00:00Z ERROR job failed:\n\x1b[0m\nError: stalled\n"
        b"\x1b[2m    at run (/app/w.js:1:1)\x1b[0m\nplain line\n"
    )
    reference, error_lines, _ = line_reference(path)

    scan = scan_log(path, None, worker_pattern=None)

    assert scan.error_records == reference["error"] == 1
    assert [ref.line for ref in scan.error_lines] == error_lines
    assert scan.records == 2


def test_compiled_patterns_cached_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A compiled database is stored, loaded back, and rebuilt when damaged."""
    if prefilter.hyperscan is None:
        pytest.skip("hyperscan is not installed on this platform")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expressions = [rb"ERROR[^\n]*\n"]

    def matches(database) -> list[int]:
        ends: list[int] = []
        database.scan(
            b"\nok\nERROR x\n", match_event_handler=lambda *m: ends.append(m[2])
        )
        return ends

    first = prefilter.compiled(expressions)
    stored = list(prefilter.cache_folder().glob("*.db"))
    loaded = prefilter.compiled(expressions)
    stored[0].write_bytes(b"not a database")
    rebuilt = prefilter.compiled(expressions)

    assert len(stored) == 1
    assert matches(first) == matches(loaded) == matches(rebuilt) == [12]
    assert "cache unreadable" in caplog.text
    assert stored[0].read_bytes() != b"not a database"

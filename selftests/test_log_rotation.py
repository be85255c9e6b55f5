"""Self-tests of incremental, rotation-safe log reading.

Every line written is an ERROR record with a unique event number, so the
samples of all scans together show whether a line was lost or counted twice.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from soakcheck.logscan import LogScan, scan_log

EVENT_RE = re.compile(r"event (\d+)")


def event_lines(numbers: range | list[int]) -> bytes:
    return b"".join(
        f"2026-12-04T10:00:00.000Z ERROR event {n}\n".encode() for n in numbers
    )


def append(path: Path, numbers: range | list[int]) -> None:
    with open(path, "ab") as file:
        file.write(event_lines(numbers))


def scan(path: Path, state: dict | None) -> LogScan:
    return scan_log(path, state, sample_limit=100_000, worker_pattern=None)


def events_of(*scans: LogScan) -> Counter[int]:
    """Count how often each event number was reported across scans."""
    seen: Counter[int] = Counter()
    for result in scans:
        for sample in result.error_samples:
            match = EVENT_RE.search(sample.text)
            if match:
                seen[int(match.group(1))] += 1
    return seen


def once(numbers: range | list[int]) -> Counter[int]:
    return Counter(numbers)


def gzip_file(source: Path, target: Path) -> None:
    """Compress like logrotate's `compress`: the plain file is replaced, mtime kept."""
    with open(source, "rb") as plain, gzip.open(target, "wb") as packed:
        shutil.copyfileobj(plain, packed)
    shutil.copystat(source, target)
    source.unlink()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.log"


# Appending ----------------------------------------------------------------------


def test_appends_in_pieces_count_each_line_once(log: Path) -> None:
    """Appended lines, one split across two scans, are each counted once."""
    append(log, range(1, 4))
    first = scan(log, None)
    with open(log, "ab") as file:
        file.write(b"2026-12-04T10:00:00.000Z ERROR ev")
    second = scan(log, first.state)
    with open(log, "ab") as file:
        file.write(b"ent 4\n")
    append(log, range(5, 7))
    third = scan(log, second.state)

    assert events_of(first, second, third) == once(range(1, 7))
    assert second.records == 0


def test_split_line_offset_stays_before_it(log: Path) -> None:
    """The stored offset never passes a line that has no newline yet."""
    append(log, range(1, 3))
    complete = log.stat().st_size
    with open(log, "ab") as file:
        file.write(b'{"level":50,"msg":"half')

    result = scan(log, None)

    assert result.state["offset"] == complete


def test_scan_reads_only_the_appended_bytes(log: Path) -> None:
    """A later scan reads only what was appended, however large the file is."""
    append(log, range(1, 50_001))
    first = scan(log, None)
    before = log.stat().st_size
    append(log, [50_001])

    second = scan(log, first.state)

    assert second.bytes_read == log.stat().st_size - before
    assert events_of(second) == once([50_001])


def test_state_survives_json(log: Path) -> None:
    """The state stored in a checkpoint record round-trips through JSON."""
    append(log, range(1, 3))
    first = scan(log, None)
    append(log, range(3, 5))

    second = scan(log, json.loads(json.dumps(first.state)))

    assert events_of(second) == once(range(3, 5))


def test_continuation_across_checkpoints(log: Path) -> None:
    """An error header after a checkpoint still continues the ERROR record before it."""
    log.write_bytes(b"2026-12-04T10:00:00.000Z ERROR job failed\n")
    first = scan(log, None)
    with open(log, "ab") as file:
        file.write(b"Error: job stalled\n    at run (/app/worker.js:1:1)\n")

    second = scan(log, first.state)

    assert second.records == 0
    assert second.error_records == 0


# Rotation by rename -------------------------------------------------------------


def test_rename_rotation_with_writer_still_appending(log: Path) -> None:
    """After a rename, the old file is finished, late appends included, then the new."""
    append(log, range(1, 6))
    first = scan(log, None)
    append(log, range(6, 9))
    rotated = log.with_name("app.log.1")
    os.rename(log, rotated)
    append(rotated, range(9, 11))
    append(log, range(11, 14))

    second = scan(log, first.state)
    append(rotated, [14])
    append(log, [15])
    third = scan(log, second.state)
    fourth = scan(log, third.state)

    assert events_of(first, second, third, fourth) == once(range(1, 16))
    assert any(event.startswith("rotated:") for event in second.events)
    assert second.possible_loss is False


def test_renamed_file_is_found_by_inode_not_name(log: Path) -> None:
    """The old file is found under a date suffix; a stale app.log.1 is ignored."""
    stale = log.with_name("app.log.1")
    append(stale, [900])
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    append(log, range(1, 3))
    first = scan(log, None)
    append(log, [3])
    os.rename(log, log.with_name("app.log-20261204"))
    append(log, [4])

    second = scan(log, first.state)

    assert events_of(second) == once([3, 4])


def test_unterminated_last_line_of_rotated_file(log: Path) -> None:
    """A rotated file's unfinished last line counts once the file stops growing."""
    append(log, range(1, 3))
    with open(log, "ab") as file:
        file.write(b"2026-12-04T10:00:00.000Z ERROR event 3 (crashed mid-line)")
    first = scan(log, None)
    os.rename(log, log.with_name("app.log.1"))
    append(log, [4])

    second = scan(log, first.state)
    third = scan(log, second.state)

    assert events_of(first, second, third) == once(range(1, 5))
    assert events_of(third) == once([3])


def test_two_rotations_between_scans(log: Path) -> None:
    """With two renames between scans, the old file and the middle one are read."""
    append(log, range(1, 4))
    first = scan(log, None)
    append(log, [4])
    os.rename(log, log.with_name("app.log.1"))
    append(log, range(5, 7))
    os.rename(log.with_name("app.log.1"), log.with_name("app.log.2"))
    os.rename(log, log.with_name("app.log.1"))
    append(log, [7])

    second = scan(log, first.state)

    assert events_of(first, second) == once(range(1, 8))


def test_two_rotations_with_old_file_compressed(log: Path) -> None:
    """An old file compressed meanwhile is reported, and the other files are read."""
    append(log, range(1, 4))
    first = scan(log, None)
    append(log, [4])
    os.rename(log, log.with_name("app.log.1"))
    append(log, range(5, 7))
    gzip_file(log.with_name("app.log.1"), log.with_name("app.log.2.gz"))
    os.rename(log, log.with_name("app.log.1"))
    append(log, [7])

    second = scan(log, first.state)

    assert events_of(first, second) == once([1, 2, 3, 5, 6, 7])
    assert second.possible_loss is True
    assert any("compressed before it was fully read" in e for e in second.events)


def test_compressed_rotated_file_is_reported(log: Path) -> None:
    """A rotated file compressed before its tail was read is reported, not read."""
    append(log, range(1, 4))
    first = scan(log, None)
    append(log, range(4, 6))
    os.rename(log, log.with_name("app.log.1"))
    gzip_file(log.with_name("app.log.1"), log.with_name("app.log.1.gz"))
    append(log, range(6, 8))

    second = scan(log, first.state)

    assert events_of(second) == once(range(6, 8))
    assert second.possible_loss is True
    assert any("compressed before it was fully read" in e for e in second.events)


def test_still_written_file_compressed_later(log: Path) -> None:
    """A rotated file that grew and was then compressed is reported as a loss."""
    append(log, range(1, 4))
    first = scan(log, None)
    rotated = log.with_name("app.log.1")
    os.rename(log, rotated)
    append(rotated, [4])
    append(log, [5])
    second = scan(log, first.state)
    append(rotated, [6])
    gzip_file(rotated, log.with_name("app.log.1.gz"))
    append(log, [7])

    third = scan(log, second.state)

    assert events_of(first, second, third) == once([1, 2, 3, 4, 5, 7])
    assert third.possible_loss is True
    assert any("compressed before it was fully read" in e for e in third.events)


def test_missing_file_compressed_meanwhile(log: Path) -> None:
    """A file compressed while missing is reported once, then the new one is read."""
    append(log, range(1, 3))
    first = scan(log, None)
    append(log, [3])
    os.rename(log, log.with_name("app.log.1"))
    gzip_file(log.with_name("app.log.1"), log.with_name("app.log.1.gz"))

    while_missing = scan(log, first.state)
    append(log, [4])
    back = scan(log, while_missing.state)

    assert while_missing.possible_loss is True
    assert back.possible_loss is False
    assert events_of(first, while_missing, back) == once([1, 2, 4])


def test_compressed_after_full_read_is_no_loss(log: Path) -> None:
    """A rotated file compressed after it was fully read costs no lines."""
    append(log, range(1, 4))
    first = scan(log, None)
    os.rename(log, log.with_name("app.log.1"))
    gzip_file(log.with_name("app.log.1"), log.with_name("app.log.1.gz"))
    append(log, [4])

    second = scan(log, first.state)

    assert events_of(second) == once([4])
    assert second.possible_loss is False


class RotatingWriter:
    """A writer that keeps its file open across renames, as a Node process does."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.next_event = 1
        self.pending = b""
        self.file = open(log, "ab")  # noqa: SIM115

    def write(self, count: int) -> None:
        data = self.pending + event_lines(
            range(self.next_event, self.next_event + count)
        )
        self.next_event += count
        self.pending = b""
        self.file.write(data)
        self.file.flush()

    def write_half_line(self) -> None:
        line = event_lines([self.next_event])
        self.next_event += 1
        self.file.write(line[:20])
        self.file.flush()
        self.pending = line[20:]

    def rotate(self, create: bool = True) -> None:
        """Shift every generation up by one and rename the log to `.1`.

        Without `create`, the log is missing until the writer reopens it.
        """
        if not self.log.exists():
            return
        generations = sorted(
            (int(p.name.rsplit(".", 1)[1]), p)
            for p in self.log.parent.glob("app.log.*")
        )
        for number, path in reversed(generations):
            path.rename(self.log.with_name(f"app.log.{number + 1}"))
        self.log.rename(self.log.with_name("app.log.1"))
        if create:
            self.log.touch()

    def reopen(self) -> None:
        self.file.write(self.pending)
        self.pending = b""
        self.file.close()
        self.file = open(self.log, "ab")  # noqa: SIM115


def test_random_appends_and_renames_lose_nothing(log: Path) -> None:
    """Random appends, split lines, renames and late reopens lose or repeat no line."""
    rng = random.Random(11)
    writer = RotatingWriter(log)
    # The first scan comes first, so every line written is in the window.
    results = [scan(log, None)]
    state = results[0].state
    for _ in range(300):
        action = rng.random()
        if action < 0.45:
            writer.write(rng.randint(1, 5))
        elif action < 0.55 and not writer.pending:
            writer.write_half_line()
        elif action < 0.62:
            writer.rotate()
        elif action < 0.65:
            writer.rotate(create=False)
        elif action < 0.75:
            writer.reopen()
        else:
            results.append(scan(log, state))
            state = results[-1].state

    writer.reopen()
    writer.file.close()
    for _ in range(3):
        results.append(scan(log, state))
        state = results[-1].state

    assert events_of(*results) == once(range(1, writer.next_event))
    assert not any(result.possible_loss for result in results)


# Copy-truncate ----------------------------------------------------------------------


def test_copy_truncate_reads_copy_tail(log: Path) -> None:
    """After copy-truncate, the copy's unread tail and new lines are read once."""
    append(log, range(1, 6))
    first = scan(log, None)
    append(log, range(6, 8))
    shutil.copyfile(log, log.with_name("app.log.1"))
    os.truncate(log, 0)
    append(log, range(8, 10))

    second = scan(log, first.state)
    third = scan(log, second.state)

    assert events_of(first, second, third) == once(range(1, 10))
    assert second.possible_loss is True
    assert any(event.startswith("truncated:") for event in second.events)


def test_truncate_without_copy_restarts_at_zero(log: Path) -> None:
    """A file truncated in place is read from offset 0, stating the loss window."""
    append(log, range(1, 6))
    first = scan(log, None)
    os.truncate(log, 0)
    append(log, range(6, 8))

    second = scan(log, first.state)

    assert events_of(second) == once(range(6, 8))
    assert "may be lost" in " ".join(second.events)


def test_truncate_then_refill_past_old_offset(log: Path) -> None:
    """A file truncated and refilled past the old offset is noticed by its head."""
    append(log, range(1, 4))
    first = scan(log, None)
    os.truncate(log, 0)
    append(log, range(100, 120))

    second = scan(log, first.state)

    assert events_of(second) == once(range(100, 120))
    assert any(event.startswith("truncated:") for event in second.events)


def test_nul_hole_is_skipped(log: Path) -> None:
    """The NUL hole of a writer without O_APPEND is skipped; later lines count."""
    append(log, range(1, 6))
    first = scan(log, None)
    size = log.stat().st_size
    os.truncate(log, 0)
    with open(log, "r+b") as file:
        file.seek(size + 4096)
        file.write(event_lines(range(6, 8)))

    second = scan(log, first.state)

    assert events_of(second) == once(range(6, 8))
    assert second.records == 2


# Missing and unreadable files -----------------------------------------------------


def test_missing_file_keeps_state_then_reappears(log: Path) -> None:
    """A missing file is reported, its renamed tail read, and its return read."""
    append(log, range(1, 4))
    first = scan(log, None)
    append(log, [4])
    os.rename(log, log.with_name("app.log.1"))

    while_missing = scan(log, first.state)
    append(log, range(5, 7))
    back = scan(log, while_missing.state)

    assert while_missing.missing is True
    assert while_missing.state["inode"] == first.state["inode"]
    assert events_of(first, while_missing, back) == once(range(1, 7))


def test_missing_at_first_scan_reads_from_zero_later(log: Path) -> None:
    """A file missing at the first scan is read from offset 0 when it appears."""
    absent = scan(log, None)
    append(log, range(1, 3))

    present = scan(log, absent.state)

    assert absent.missing is True
    assert events_of(present) == once(range(1, 3))


def test_directory_instead_of_file_is_an_error(tmp_path: Path) -> None:
    """A path that is not a regular file gives an error naming the fix, not a crash."""
    result = scan(tmp_path, None)

    assert result.error is not None
    assert "not a regular file" in result.error


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_is_an_error(log: Path) -> None:
    """An unreadable file gives a permission error and keeps the previous state."""
    append(log, range(1, 3))
    first = scan(log, None)
    log.chmod(0)

    denied = scan(log, first.state)

    assert "permission denied" in (denied.error or "")
    assert denied.state == first.state


# First scans and stored state ------------------------------------------------------


def test_first_scan_from_end_skips_old_lines(log: Path) -> None:
    """A first scan that starts at the end reads only lines appended after it."""
    append(log, range(1, 4))

    first = scan_log(log, None, from_start=False, sample_limit=100)
    append(log, [4])
    second = scan(log, first.state)

    assert first.error_records == 0
    assert events_of(second) == once([4])
    assert [ref.line for ref in second.error_lines] == [4]


def test_fallback_interval_without_seen_list(log: Path) -> None:
    """A state without the list of rotated files uses the fallback interval instead."""
    append(log, range(1, 3))
    first = scan(log, None)
    state = dict(first.state, seen=None)
    os.rename(log, log.with_name("app.log.1"))
    append(log, [3])
    os.rename(log.with_name("app.log.1"), log.with_name("app.log.2"))
    os.rename(log, log.with_name("app.log.1"))
    append(log, [4])

    blind = scan_log(log, state, sample_limit=100, worker_pattern=None)
    guided = scan_log(
        log, state, sample_limit=100, worker_pattern=None, fallback_interval_s=3600
    )

    assert events_of(blind) == once([4])
    assert events_of(guided) == once([3, 4])


def test_deleted_file_is_reported_and_new_one_read(log: Path) -> None:
    """A deleted log is reported as a possible loss, and its replacement read from 0."""
    append(log, range(1, 3))
    first = scan(log, None)
    log.unlink()

    deleted = scan(log, first.state)
    append(log, range(3, 5))
    back = scan(log, deleted.state)

    assert deleted.possible_loss is True
    assert events_of(first, deleted, back) == once(range(1, 5))


def test_unreadable_state_starts_a_first_scan(log: Path) -> None:
    """A damaged stored position is reported, and the scan starts at the end."""
    append(log, range(1, 3))
    first = scan_log(log, None, from_start=False)
    damaged = dict(first.state, offset=-5)
    append(log, [3])

    again = scan_log(log, damaged, from_start=False)

    assert "unreadable" in again.events[0]
    assert "started over as a first scan" in again.events[0]
    assert "started at the end of app.log" in again.events[1]
    assert again.error_records == 0


def test_replaced_file_reports_changed_head(log: Path) -> None:
    """A file replaced at the same inode is reported with its changed first bytes."""
    append(log, range(1, 3))
    first = scan(log, None)
    with open(log, "r+b") as file:
        file.write(b"X")

    again = scan(log, first.state)

    assert again.possible_loss is True
    assert again.events[0].startswith("truncated: the first bytes of app.log changed")

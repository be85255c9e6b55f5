"""Self-tests of a log range read in two processes: the result of a serial read."""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path

import pytest

from selftests.test_log_classify import NOW, mixed_sample_log
from soakcheck.logscan import LineClassifier, consume, scan_log, split

pytestmark = pytest.mark.skipif(
    not split.can_split(), reason="reading in two processes needs Linux and 2 CPUs"
)

PATTERNS = {
    "stalled": "stalled",
    "redis": r"ECONN\w+",
    "blank": r"^\s*$",
    "spaced": r"\s*Error",
}


def scan(path: Path, previous=None, **options):
    return scan_log(
        path,
        previous,
        now=NOW,
        worker_pattern="Worker",
        patterns=PATTERNS,
        block_size=4096,
        **options,
    )


def comparable(result) -> dict:
    """Return a scan result as data, without the parts that name a read's timing."""
    data = result.as_dict()
    data["state"].pop("scanned_at")
    return data


def test_split_read_equals_serial_read(tmp_path: Path) -> None:
    """Counts, evidence, matches and the saved state match a serial read."""
    path = mixed_sample_log(tmp_path / "app.log")

    serial = scan(path, split_min_bytes=None)
    shared = scan(path, split_min_bytes=1)

    assert comparable(shared) == comparable(serial)
    assert shared.error_records > 0
    assert shared.matches["stalled"]


def test_split_then_append_continues(tmp_path: Path) -> None:
    """The state after a split read continues exactly at the next scan."""
    path = mixed_sample_log(tmp_path / "app.log")
    serial_first = scan(path, split_min_bytes=None)
    shared_first = scan(path, split_min_bytes=1)
    with open(path, "ab") as file:
        file.write(b"2026-12-04T12:00:00Z ERROR appended after the split\n")

    serial = scan(path, serial_first.state, split_min_bytes=None)
    shared = scan(path, shared_first.state, split_min_bytes=1)

    assert comparable(shared) == comparable(serial)
    assert [ref.line for ref in shared.error_lines] == [
        ref.line for ref in serial.error_lines
    ]


def find_cut(path: Path, stop: int | None = None) -> int | None:
    stop = path.stat().st_size if stop is None else stop
    with open(path, "rb") as file:
        return split.find_cut(file, 0, stop, LineClassifier(), 4096)


def test_cut_keeps_error_header_with_record(tmp_path: Path) -> None:
    """The cut keeps an error header with the text error line before it."""
    pair = b"2026-12-04T03:00:00Z ERROR job failed:\nError: stalled\n"
    path = tmp_path / "app.log"
    path.write_bytes(pair * 4000)

    size = path.stat().st_size
    # Each stop moves the middle, so the search starts in every part of a pair.
    cuts = [find_cut(path, stop) for stop in range(size - 2 * len(pair), size)]
    shared = scan(path, split_min_bytes=1)

    assert None not in cuts
    assert [cut % len(pair) for cut in cuts] == [0] * len(cuts)
    assert shared.error_records == 4000
    assert shared.records == 4000


def test_no_cut_without_a_resetting_line(tmp_path: Path) -> None:
    """A middle made only of lines that open an error stack is not cut."""
    path = tmp_path / "app.log"
    path.write_bytes(b"2026-12-04T03:00:00Z ERROR job failed:\n" * 8000)

    cut = find_cut(path)
    shared = scan(path, split_min_bytes=1)

    assert cut is None
    assert shared.error_records == 8000


def test_failed_child_falls_back_to_serial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the child fails, this process reads the second part itself."""
    path = mixed_sample_log(tmp_path / "app.log")
    serial = scan(path, split_min_bytes=None)

    def broken(sender, *args) -> None:
        sender.send("OSError: disk read failed")
        sender.close()

    monkeypatch.setattr(split, "_scan_part", broken)
    with caplog.at_level(logging.WARNING, logger="soakcheck.logscan.split"):
        shared = scan(path, split_min_bytes=1)

    assert comparable(shared) == comparable(serial)
    assert "disk read failed" in caplog.text


def test_failed_first_part_stops_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in this process's part stops the child instead of leaving it."""
    path = mixed_sample_log(tmp_path / "app.log")
    started: list[split.SplitRead] = []
    original_init = split.SplitRead.__init__

    def remember(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        started.append(self)

    def failing_read(*args, **kwargs) -> None:
        raise OSError("read failed")

    def slow_child(*args) -> None:
        time.sleep(60)

    monkeypatch.setattr(split, "_scan_part", slow_child)
    monkeypatch.setattr(split.SplitRead, "__init__", remember)
    monkeypatch.setattr(consume.FileConsumer, "_read_range", failing_read)

    with pytest.raises(OSError, match="read failed"):
        scan(path, split_min_bytes=1)

    assert len(started) == 1
    assert not started[0]._process.is_alive()


def _scan_in_worker(path: str) -> int:
    return scan_log(path, None, split_min_bytes=1).error_records


def test_pool_worker_reads_alone(tmp_path: Path) -> None:
    """A scan in a daemonic pool worker, which may not fork, reads serially."""
    path = tmp_path / "app.log"
    path.write_bytes(
        b"ok\n" * 1000 + b"2026-12-04T03:00:00Z ERROR x\n" + b"ok\n" * 1000
    )

    with multiprocessing.get_context("fork").Pool(1) as pool:
        errors = pool.apply(_scan_in_worker, (str(path),))

    assert errors == 1

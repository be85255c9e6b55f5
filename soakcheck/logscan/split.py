"""Reading a large range of a log file in two processes at once.

Reading a large range of a log is bound by one CPU. Such reads happen when
a service logs heavily between checkpoints and when a scan starts from
offset 0. On Linux with two or more CPUs, a range of at least
`SPLIT_MIN_BYTES` is cut at a line boundary near its middle. A forked child
scans the second part while this process scans the first, then this process
adds the child's counts and evidence to its own, shifting line numbers by
the lines of the first part.

The cut goes after a line that resets the classification context: a
non-blank line that opens no error stack, whatever the line before it was.
So the child starts with the context a serial scan would have there, and
the result is the same as a serial scan's, which the self-tests check.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, BinaryIO

from soakcheck.logscan.blockscan import BlockScanner, ScanTally
from soakcheck.logscan.classify import LineClassifier, clean_line_bytes, decode_line
from soakcheck.logscan.reader import BlockReader
from soakcheck.logscan.rotation import FileState

if TYPE_CHECKING:
    from soakcheck.logscan.consume import ScanOptions

logger = logging.getLogger(__name__)

# Measured on 2 CPUs with the benchmark's log: a 4 MiB read took 11 ms either
# way, and a 16 MiB read 29 ms split against 44 ms in one process.
SPLIT_MIN_BYTES = 16 * 1024 * 1024

# How far past the middle the cut may move while looking for a line that
# resets the context. Without one in this window the range is not split.
CUT_SEARCH_BYTES = 256 * 1024

# The child normally finishes about when this process does. It is given this
# many times the first part's duration, and at least the minimum, before its
# part is read again here.
CHILD_WAIT_FACTOR = 10
CHILD_WAIT_MIN_S = 60.0


def can_split() -> bool:
    """Return whether this system can scan a range in two processes."""
    if not sys.platform.startswith("linux"):
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # A daemonic process, such as a multiprocessing.Pool worker, may not start
    # children of its own.
    if multiprocessing.current_process().daemon:
        return False
    return len(os.sched_getaffinity(0)) >= 2


def find_cut(
    file: BinaryIO,
    start: int,
    stop: int,
    classifier: LineClassifier,
    line_cap: int,
) -> int | None:
    """Return a line boundary near the middle of `start`..`stop`, or None.

    The line before the boundary is non-blank and opens no error stack with
    either context before it, so the context after it is always the same.
    The file's position is not used: the bytes are read with `os.pread`.
    """
    middle = start + (stop - start) // 2
    window = os.pread(file.fileno(), min(CUT_SEARCH_BYTES, stop - middle), middle)
    line_start = window.find(b"\n") + 1
    if line_start == 0:
        return None

    while True:
        line_end = window.find(b"\n", line_start)
        if line_end == -1:
            return None

        raw = clean_line_bytes(window[line_start:line_end])
        text = decode_line(raw, line_cap)
        if _resets_context(classifier, text):
            cut = middle + line_end + 1
            return cut if cut < stop else None
        line_start = line_end + 1


def _resets_context(classifier: LineClassifier, text: str) -> bool:
    if not text.strip(" \t"):
        return False

    return not any(
        classifier.classify(text, after_error_keyword=after).opens_error_stack
        for after in (False, True)
    )


@dataclass
class ChildPart:
    """The child's part of a split read: its tally, end position and skipped NULs."""

    tally: ScanTally
    lines: int
    offset: int
    after_error_keyword: bool
    holes_skipped: int


class SplitRead:
    """The second part of a range, scanned by a forked child.

    Start it before scanning the first part, then call `result` once this
    process is done with the first part. `result` returns None when the
    child failed or timed out, and the caller reads the part itself.
    """

    def __init__(
        self,
        file: BinaryIO,
        label: str,
        cut: int,
        stop: int,
        tally: ScanTally,
        options: ScanOptions,
    ) -> None:
        self.cut = cut
        self.stop = stop
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        blank = ScanTally(
            now=tally.now,
            sample_limit=tally.sample_limit,
            line_limit=tally.line_limit,
            match_limit=tally.match_limit,
        )
        self._process = context.Process(
            target=_scan_part,
            args=(sender, file.fileno(), label, cut, stop, blank, options),
            name="soakcheck-log-split",
            daemon=True,
        )
        # Unflushed output would otherwise be written twice, once by each
        # process with a copy of the buffer.
        sys.stdout.flush()
        sys.stderr.flush()
        self._started = time.monotonic()
        self._process.start()
        sender.close()
        logger.debug("split read started label=%s cut=%d stop=%d", label, cut, stop)

    def result(self) -> ChildPart | None:
        """Wait for the child and return its part, or None if it failed."""
        waited = time.monotonic() - self._started
        timeout = max(CHILD_WAIT_MIN_S, CHILD_WAIT_FACTOR * waited)
        part = None
        try:
            if self._receiver.poll(timeout):
                outcome = self._receiver.recv()
                if isinstance(outcome, ChildPart):
                    part = outcome
                else:
                    logger.warning("split read child failed error=%s", outcome)
            else:
                logger.warning(
                    "split read child timed out after %.0f s; reading its part here",
                    timeout,
                )
        except (EOFError, OSError) as exc:
            logger.warning("split read child ended without a result error=%r", exc)
        finally:
            self._receiver.close()
            self._stop_child()

        return part

    def cancel(self) -> None:
        """Stop the child without waiting for its part, when the first part failed."""
        self._receiver.close()
        self._process.kill()
        self._process.join()
        logger.debug("split read cancelled cut=%d stop=%d", self.cut, self.stop)

    def _stop_child(self) -> None:
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _scan_part(
    sender: Connection,
    fd: int,
    label: str,
    cut: int,
    stop: int,
    tally: ScanTally,
    options: ScanOptions,
) -> None:
    """Scan `cut`..`stop` in the child and send a `ChildPart` or an error text."""
    try:
        # A new open file description, because the inherited one shares its
        # position with the parent, whose reads would then move it.
        with open(f"/proc/self/fd/{fd}", "rb", buffering=0) as file:
            state = FileState(offset=cut)
            reader = BlockReader(
                file,
                cut,
                stop,
                block_size=options.block_size,
                line_cap=options.line_cap,
            )
            scanner = BlockScanner(
                tally,
                options.classifier,
                label,
                state,
                worker=options.worker,
                patterns=options.patterns,
                line_cap=options.line_cap,
                finder=options.finder,
            )
            for chunk in reader:
                scanner.feed(chunk)

        sender.send(
            ChildPart(
                tally,
                state.line,
                state.offset,
                state.after_error_keyword,
                reader.holes_skipped,
            )
        )
    except Exception as exc:  # noqa: BLE001 - any failure sends the parent back to a serial read
        sender.send(f"{type(exc).__name__}: {exc}")
    finally:
        sender.close()

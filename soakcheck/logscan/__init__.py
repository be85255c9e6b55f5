"""Log evidence for the soak checklist: classified records, read incrementally.

`scan_log` reads what a log gained since the last checkpoint, following
rotation, and counts its records by level. `tail_lines` returns the lines
around the last error for an incident snapshot. `check_reconciliation`
decides from a scan whether the nightly job ran without errors.
"""

from soakcheck.logscan.classify import (
    Level,
    LineClass,
    LineClassifier,
    LineKind,
    classify_lines,
)
from soakcheck.logscan.evidence import LineRef, LogLine, PatternMatch
from soakcheck.logscan.reconciliation import (
    ReconciliationEvidence,
    check_reconciliation,
    reconciliation_patterns,
)
from soakcheck.logscan.scan import DEFAULT_WORKER_PATTERN, LogScan, scan_log
from soakcheck.logscan.tail import tail_lines

__all__ = [
    "DEFAULT_WORKER_PATTERN",
    "Level",
    "LineClass",
    "LineClassifier",
    "LineKind",
    "LineRef",
    "LogLine",
    "LogScan",
    "PatternMatch",
    "ReconciliationEvidence",
    "check_reconciliation",
    "classify_lines",
    "reconciliation_patterns",
    "scan_log",
    "tail_lines",
]

"""Finding a log file again after rotation, by device and inode, not by name.

Rotation renames files (`app.log` becomes `app.log.1`, then `app.log.2.gz`),
reuses names every cycle, and may reuse inode numbers after a file is
deleted. So a file is identified by device and inode *and* by the
fingerprint of its first bytes, and rotated generations are recognised by a
numeric or date suffix after the watched name.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from soakcheck.logscan.reader import GZIP_MAGIC, HEAD_BYTES, head_fingerprint

logger = logging.getLogger(__name__)

# `app.log.1`, `app.log-20261204`, `app.log.2026-12-04-1733300000`, each
# optionally compressed.
_ROTATED_SUFFIX_RE = re.compile(
    r"[._-][0-9][0-9._-]*(?P<compressed>\.(?:gz|bz2|xz|zst))?"
)
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")

# Folder listings stop after this many entries, so a huge folder cannot make
# a scan slow. The rotated files of one log are found long before that.
MAX_FOLDER_ENTRIES = 100_000

# Rotated generations remembered between scans: a year of daily rotation
# and more. Older ones beyond this would be taken for new files.
MAX_SEEN_FILES = 1000


@dataclass(slots=True)
class FileState:
    """Reading position in one file (one inode).

    `offset` is always just past a complete line. `head_sha256` fingerprints
    the first `head_length` bytes, read when the file was last scanned.
    `line` counts the complete lines before `offset`. `after_error_keyword`
    carries the classification context to the next line. `name` is the file
    name under which the file was last read, for messages only. `is_copy`
    marks the copy a copy-truncate rotation made: its unterminated last line
    continues in the truncated file, so it is never counted on its own.
    """

    device: int | None = None
    inode: int | None = None
    offset: int = 0
    size: int = 0
    head_sha256: str = ""
    head_length: int = 0
    line: int = 0
    after_error_keyword: bool = False
    name: str = ""
    is_copy: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileState:
        """Build a state from a stored dict, ignoring keys it does not know."""
        names = [field.name for field in fields(cls)]
        known = {key: data[key] for key in names if key in data}
        state = cls(**known)
        if state.offset < 0 or state.line < 0:
            raise ValueError(
                f"stored log position is negative (offset={state.offset}, "
                f"line={state.line}); delete the stored state to read from the start"
            )
        return state

    def same_file(self, stat: os.stat_result) -> bool:
        return self.device == stat.st_dev and self.inode == stat.st_ino

    def head_matches(self, head: bytes) -> bool:
        """Return whether `head`, the first bytes now, starts like the saved head."""
        if self.head_length == 0:
            return True
        if len(head) < self.head_length:
            return False
        return head_fingerprint(head[: self.head_length]) == self.head_sha256


@dataclass(frozen=True, slots=True)
class Sibling:
    """A file in the watched file's folder."""

    path: Path
    stat: os.stat_result

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(COMPRESSED_SUFFIXES)


def is_rotated_name(name: str, watched: str) -> bool:
    """Return whether `name` looks like a rotated generation of `watched`."""
    if not name.startswith(watched) or name == watched:
        return False

    return _ROTATED_SUFFIX_RE.fullmatch(name, len(watched)) is not None


def list_siblings(watched: Path) -> list[Sibling]:
    """List the regular files in the folder of `watched`, except `watched` itself."""
    siblings = []
    try:
        with os.scandir(watched.parent) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_FOLDER_ENTRIES:
                    logger.warning(
                        "folder listing stopped after %d entries folder=%s",
                        MAX_FOLDER_ENTRIES,
                        watched.parent,
                    )
                    break
                if entry.name == watched.name:
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        siblings.append(Sibling(Path(entry.path), entry.stat()))
                except OSError as exc:
                    logger.debug("cannot stat %s: %s", entry.path, exc)
    except OSError as exc:
        logger.warning("cannot list folder=%s error=%s", watched.parent, exc)

    return siblings


@dataclass(frozen=True, slots=True)
class SeenFile:
    """A rotated file present at the last folder listing, by identity only.

    `head` is the start of the fingerprint of the first `head_length` bytes.
    Compressed files are not opened, so their `head_length` is -1 and only
    device and inode identify them.
    """

    device: int
    inode: int
    head_length: int
    head: str

    def as_list(self) -> list[Any]:
        return [self.device, self.inode, self.head_length, self.head]

    @classmethod
    def from_list(cls, data: list[Any]) -> SeenFile:
        device, inode, head_length, head = data
        return cls(int(device), int(inode), int(head_length), str(head))

    def matches(self, sibling: Sibling) -> bool:
        """Return whether `sibling` is this file: same inode and, if plain, head."""
        if (sibling.stat.st_dev, sibling.stat.st_ino) != (self.device, self.inode):
            return False
        if self.head_length < 0 or sibling.compressed:
            return True

        head = read_plain_head(sibling.path, self.head_length)
        return head is not None and _short_fingerprint(head) == self.head


def _short_fingerprint(head: bytes) -> str:
    # 64 bits of the hash tell a few thousand files apart with no real risk
    # of a collision, and keep the stored list short.
    return head_fingerprint(head)[:16]


def snapshot_rotated(siblings: list[Sibling], watched: str) -> list[SeenFile]:
    """Return the identities of the rotated generations of `watched`, newest first."""
    rotated = [s for s in siblings if is_rotated_name(s.path.name, watched)]
    rotated.sort(key=lambda sibling: sibling.stat.st_mtime, reverse=True)

    seen = []
    for sibling in rotated[:MAX_SEEN_FILES]:
        device, inode = sibling.stat.st_dev, sibling.stat.st_ino
        head = None if sibling.compressed else read_plain_head(sibling.path, HEAD_BYTES)
        if head is None:
            seen.append(SeenFile(device, inode, -1, ""))
        else:
            seen.append(SeenFile(device, inode, len(head), _short_fingerprint(head)))

    return seen


def find_by_inode(siblings: list[Sibling], state: FileState) -> Sibling | None:
    """Find the file that `state` describes among `siblings`, by device and inode."""
    for sibling in siblings:
        if state.same_file(sibling.stat):
            return sibling

    return None


def read_plain_head(path: Path, length: int) -> bytes | None:
    """Read the first `length` bytes of a file, or None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(length)
    except OSError as exc:
        logger.debug("cannot read head of %s: %s", path, exc)
        return None


def read_gzip_head(path: Path, length: int) -> bytes | None:
    """Read the first `length` uncompressed bytes of a gzip file, or None."""
    try:
        with gzip.open(path, "rb") as file:
            return file.read(length)
    except (OSError, EOFError, zlib.error) as exc:
        logger.debug("cannot read gzip head of %s: %s", path, exc)
        return None


def gzip_uncompressed_size(path: Path) -> int | None:
    """Return the uncompressed size modulo 2**32 stored at the end of a gzip file.

    The trailer of a single-member gzip file (as gzip and logrotate write it)
    ends with this size, so reading 4 bytes is enough.
    """
    try:
        with open(path, "rb") as file:
            if file.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
                return None
            file.seek(-4, os.SEEK_END)
            return int.from_bytes(file.read(4), "little")
    except OSError as exc:
        logger.debug("cannot read gzip trailer of %s: %s", path, exc)
        return None


def looks_compressed(sibling: Sibling) -> bool:
    """Return whether a file is compressed, judged by its name or first bytes."""
    if sibling.compressed:
        return True

    head = read_plain_head(sibling.path, len(GZIP_MAGIC))
    return head == GZIP_MAGIC


def find_compressed_copy(siblings: list[Sibling], state: FileState) -> Sibling | None:
    """Find a gzip file whose uncompressed start matches the saved head of `state`."""
    if state.head_length == 0:
        return None

    candidates = [s for s in siblings if s.path.name.endswith(".gz")]
    candidates.sort(key=lambda s: s.stat.st_mtime, reverse=True)
    for sibling in candidates:
        head = read_gzip_head(sibling.path, state.head_length)
        if head is not None and state.head_matches(head):
            return sibling

    return None

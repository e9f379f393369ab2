"""Reading manifests (JSON lines, TSV, CSV) and checking their entries.

Every problem is reported with the manifest and line it comes from. A dataset reads every
entry, then either stops with one `DataError` listing the bad ones or, with ``skip_bad=True``,
keeps them in ``skipped`` and logs a summary: never a silent drop, never a run that dies on a
bad entry hours in. `mmseq data check` (`mmseq.data.check`) applies the same rules.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmseq.data.errors import DataError

log = logging.getLogger(__name__)

MAX_LISTED = 20  # bad entries a `DataError` lists; the rest are counted


class BadEntry(Exception):
    """One entry is unusable; the message says why. `Rejects.guard` adds where it is."""


def where(path: str | os.PathLike, line: int) -> str:
    return f"{path}, line {line}"


class Rejects:
    """Bad entries of one dataset, collected while it is read: `report` then raises one
    `DataError` listing them, or with `skip_bad` logs them and lets the dataset go on without.

    `skipped` holds ``(line_no, message)``; the message names the file and line (or entry).
    """

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[tuple[int, str]] = []

    def reject(self, location: str, line: int, reason: str) -> None:
        self.skipped.append((line, f"{location}: {reason}"))

    @contextmanager
    def guard(self, location: str, line: int) -> Iterator[None]:
        """Turn a `BadEntry` raised inside the block into a rejection of that entry."""
        try:
            yield
        except BadEntry as exc:
            self.reject(location, line, str(exc))

    def report(self, source: str | os.PathLike, kept: int) -> None:
        """Fail listing the bad entries (unless `skip_bad`: log them); fail when nothing usable
        is left."""
        if self.skipped and not self.skip_bad:
            raise DataError(self.listing(source, kept + len(self.skipped)))
        if self.skipped:
            shown = "; ".join(message for _, message in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            log.warning(
                "%s: skipped %d bad entr%s of %d: %s%s",
                source,
                len(self.skipped),
                "y" if len(self.skipped) == 1 else "ies",
                kept + len(self.skipped),
                shown,
                more,
            )
        if kept == 0:
            detail = f" ({len(self.skipped)} skipped as bad)" if self.skipped else ""
            raise DataError(f"{source}: no usable entries{detail}")

    def listing(self, source: str | os.PathLike, total: int) -> str:
        """The bad entries, one a line (the first `MAX_LISTED`, then a count)."""
        if len(self.skipped) == 1:
            return f"{self.skipped[0][1]} (pass skip_bad=True to skip bad entries)"
        shown = [message for _, message in self.skipped[:MAX_LISTED]]
        if len(self.skipped) > MAX_LISTED:
            shown.append(f"... and {len(self.skipped) - MAX_LISTED} more")
        head = (
            f"{source}: {len(self.skipped)} bad entries of {total} "
            "(fix them, or pass skip_bad=True to skip bad entries):"
        )
        return "\n  ".join([head, *shown])


class UniqueIds:
    """Ids seen so far in one manifest: `add` raises `BadEntry` for one seen before."""

    def __init__(self, hint: str = "give each line its own 'id'") -> None:
        self.first: dict[str, int] = {}
        self.hint = hint

    def add(self, item_id: str, line: int) -> None:
        if item_id in self.first:
            raise BadEntry(
                f"duplicate id '{item_id}' (first on line {self.first[item_id]}); {self.hint}"
            )
        self.first[item_id] = line


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) for each non-blank line of a manifest."""
    path = Path(path)
    if not path.is_file():
        kind = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"{path}: manifest {kind}")
    try:
        f = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: manifest is not readable ({exc.strerror})") from None
    with f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                yield number, raw


def decode_line(raw: bytes) -> str:
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the data.
        return raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise BadEntry(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def parse_json_object(text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEntry(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit number, [[[[...]]]]
        raise BadEntry(f"not usable JSON ({exc})") from None
    if not isinstance(record, dict):
        raise BadEntry(f"expected a JSON object, got {type(record).__name__}")
    return record


def split_columns(text: str, fields: Sequence[str], delimiter: str = "\t") -> list[str]:
    """One line of TSV (split on tabs, no quoting) or CSV (``delimiter=","``, quotes as the
    `csv` module reads them; a row may not span lines), in exactly ``len(fields)`` columns."""
    if delimiter == "\t":
        columns = text.split("\t")
    else:
        # a field is at most its line: csv's 128 KB field limit would refuse a long text
        limit = csv.field_size_limit()
        csv.field_size_limit(max(limit, len(text)))
        try:
            columns = next(csv.reader([text], delimiter=delimiter, strict=True), [])
        except csv.Error as exc:
            raise BadEntry(f"not a valid CSV row ({exc})") from None
        finally:
            csv.field_size_limit(limit)
    if len(columns) != len(fields):
        kind = "tab" if delimiter == "\t" else "comma"
        raise BadEntry(
            f"expected {len(fields)} {kind}-separated columns ({', '.join(fields)}), "
            f"got {len(columns)}"
        )
    return columns


def field(record: dict[str, Any], name: str, expected: Sequence[str]) -> Any:
    if name not in record:
        raise BadEntry(f"missing field '{name}' (expected fields: {', '.join(expected)})")
    return record[name]


def text_value(value: Any, name: str) -> str:
    """A non-blank string, stripped."""
    if not isinstance(value, str):
        raise BadEntry(f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise BadEntry(f"field '{name}' is empty")
    return value.strip()


def duration_value(value: Any, name: str = "duration") -> float:
    """A finite, positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadEntry(f"field '{name}' must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise BadEntry(f"field '{name}' must be positive and finite, got {value!r}")
    return float(value)


def optional_id(record: dict[str, Any], default: str) -> str:
    value = record.get("id", default)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadEntry(f"field 'id' must be a string or integer, got {type(value).__name__}")
    return str(value)


def resolve_file(value: Any, root: Path, name: str, allow_outside_root: bool = False) -> Path:
    """The file a manifest field names: relative paths resolve against `root` (the dataset
    folder, normally the manifest's), and a path leaving `root` (through ``..``, an absolute
    path or a symlink) is refused unless `allow_outside_root`.

    Returns the resolved (absolute, symlink-free) path of an existing, non-empty file.
    """
    if not isinstance(value, str):
        raise BadEntry(f"field '{name}' must be a path string, got {type(value).__name__}")
    if not value.strip():
        raise BadEntry(f"field '{name}' is empty")
    try:
        return _existing_file(value, root, name, allow_outside_root)
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a symlink loop, ...
        raise BadEntry(f"{name} '{value}' is not a usable path ({exc})") from None


def _existing_file(value: str, root: Path, name: str, allow_outside_root: bool) -> Path:
    root = root.resolve()
    path = (root / value).resolve()  # an absolute `value` replaces root
    if not allow_outside_root and not path.is_relative_to(root):
        raise BadEntry(
            f"{name} '{value}' resolves to {path}, outside the dataset folder {root} "
            "(pass allow_outside_root=True to allow it)"
        )
    try:
        info = path.stat()  # one call for what the checks below need: 10,000s of rows
    except FileNotFoundError:
        raise BadEntry(f"{name} '{value}' does not exist ({path})") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadEntry(f"{name} '{value}' is not a file ({path})")
    if not os.access(path, os.R_OK):
        raise BadEntry(f"{name} '{value}' is not readable (permission denied: {path})")
    if info.st_size == 0:
        raise BadEntry(f"{name} '{value}' is empty (0 bytes: {path})")
    return path


def word_count(text: str) -> float:
    """Length of `text` for bucketing (a stand-in for its token count); at least 1."""
    return float(max(1, len(text.split())))


class EntryDataset(Dataset):
    """A dataset of validated manifest entries: subclasses fill `entries` (one per usable line)
    and `rejects` (what was wrong with the others) and decode an entry in `__getitem__`."""

    entries: list
    rejects: Rejects

    @property
    def skipped(self) -> list[tuple[int, str]]:
        """Bad entries skipped with ``skip_bad=True``: (line number or entry index, message)."""
        return self.rejects.skipped

    def __len__(self) -> int:
        return len(self.entries)

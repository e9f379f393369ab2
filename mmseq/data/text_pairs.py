"""Source/target text pairs (translation and other text-to-text tasks).

Items are ``{"id": str, "source": str, "text": str}`` (`text` is the target).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmseq.data.errors import DataError
from mmseq.data.manifest import (
    EntryDataset,
    Rejects,
    UniqueIds,
    decode_line,
    field,
    optional_id,
    parse_json_object,
    read_lines,
    split_columns,
    text_value,
    where,
    word_count,
)

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
DELIMITERS = {".tsv": "\t", ".csv": ","}  # one row a line; CSV quotes as the csv module reads
FIELDS = ("source", "target")


@dataclass(frozen=True)
class TextPair:
    id: str
    source: str
    target: str
    line: int


class TextPairDataset(EntryDataset):
    """Pairs from JSON lines (``{"source": ..., "target": ...}``, optional ``"id"``; files
    ending .jsonl, .json or .ndjson), TSV (``source<TAB>target``, no quoting; files ending .tsv)
    or CSV (``source,target``, quoted as spreadsheets write it, one row a line; files ending
    .csv). In TSV and CSV a first line ``source`` ``target`` is taken as a header.

    Lines are checked when the dataset is built (see `read_text_pairs`): JSON, fields or column
    count, empty texts, duplicate ids. One `DataError` lists the bad lines, or with
    ``skip_bad=True`` they are skipped and recorded in `skipped`. Items without an id are named
    ``<file>:<line>``.
    """

    def __init__(self, path: str | os.PathLike, skip_bad: bool = False) -> None:
        self.path = Path(path)
        self.rejects = Rejects(skip_bad)
        self.entries = read_text_pairs(self.path, self.rejects)
        self.rejects.report(self.path, len(self.entries))

    def __getitem__(self, index: int) -> dict[str, object]:
        pair = self.entries[index]
        return {"id": pair.id, "source": pair.source, "text": pair.target}

    def costs(self) -> list[float]:
        """Source length in words per item (standing in for tokens), for bucketing."""
        return [word_count(pair.source) for pair in self.entries]


def read_text_pairs(path: Path, rejects: Rejects) -> list[TextPair]:
    """The usable lines of a text-pair file; the others go to `rejects`. The rules of
    `TextPairDataset` and of `mmseq data check`."""
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + tuple(DELIMITERS):
        raise DataError(
            f"{path}: unknown text-pair format '{suffix}'; expected JSON lines "
            f"({', '.join(JSON_SUFFIXES)}), TSV (.tsv) or CSV (.csv)"
        )
    delimiter = DELIMITERS.get(suffix)
    entries: list[TextPair] = []
    ids = UniqueIds()
    for line, raw in read_lines(path):
        with rejects.guard(where(path, line), line):
            text = decode_line(raw)
            if delimiter is not None:
                columns = split_columns(text, FIELDS, delimiter)
                if line == 1 and [c.strip().lower() for c in columns] == list(FIELDS):
                    continue  # header
                record = dict(zip(FIELDS, columns, strict=True))
            else:
                record = parse_json_object(text)
            source = text_value(field(record, "source", FIELDS), "source")
            target = text_value(field(record, "target", FIELDS), "target")
            item_id = optional_id(record, f"{path.name}:{line}")
            ids.add(item_id, line)
            entries.append(TextPair(item_id, source, target, line))
    return entries

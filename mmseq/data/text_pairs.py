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
    decode_line,
    field,
    optional_id,
    parse_json_object,
    read_lines,
    split_tsv,
    text_value,
    where,
    word_count,
)

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
TSV_SUFFIXES = (".tsv",)
FIELDS = ("source", "target")


@dataclass(frozen=True)
class TextPair:
    id: str
    source: str
    target: str


class TextPairDataset(EntryDataset):
    """Pairs from JSON lines (``{"source": ..., "target": ...}``, optional ``"id"``; files
    ending .jsonl, .json or .ndjson) or TSV (``source<TAB>target``, no quoting; files ending
    .tsv; a first line ``source<TAB>target`` is taken as a header).

    Lines are checked when the dataset is built: JSON, fields or column count, empty texts.
    The first bad line raises `DataError` naming the file and line, or with ``skip_bad=True``
    it is skipped and recorded in `skipped`. Items without an id are named ``<file>:<line>``.
    """

    def __init__(self, path: str | os.PathLike, skip_bad: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in JSON_SUFFIXES + TSV_SUFFIXES:
            raise DataError(
                f"{self.path}: unknown text-pair format '{suffix}'; expected JSON lines "
                f"({', '.join(JSON_SUFFIXES)}) or TSV ({', '.join(TSV_SUFFIXES)})"
            )
        self.rejects = Rejects(skip_bad)
        self.entries: list[TextPair] = []
        for line, raw in read_lines(self.path):
            with self.rejects.guard(where(self.path, line), line):
                default_id = f"{self.path.name}:{line}"
                text = decode_line(raw)
                if suffix in TSV_SUFFIXES:
                    columns = split_tsv(text, FIELDS)
                    if line == 1 and [c.strip().lower() for c in columns] == list(FIELDS):
                        continue  # header
                    record = dict(zip(FIELDS, columns, strict=True))
                else:
                    record = parse_json_object(text)
                source = text_value(field(record, "source", FIELDS), "source")
                target = text_value(field(record, "target", FIELDS), "target")
                self.entries.append(TextPair(optional_id(record, default_id), source, target))
        self.rejects.report(self.path, len(self.entries))

    def __getitem__(self, index: int) -> dict[str, object]:
        pair = self.entries[index]
        return {"id": pair.id, "source": pair.source, "text": pair.target}

    def costs(self) -> list[float]:
        """Source length in words per item (standing in for tokens), for bucketing."""
        return [word_count(pair.source) for pair in self.entries]

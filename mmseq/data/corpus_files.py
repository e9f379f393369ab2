"""What the corpus makers (`gettext_corpus`, `debian_descriptions`) share: atomic JSON writes and
a seed-free split by group, so that no group (catalog, source package) is in two splits."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from mmseq.serialization import atomic_open, write_text_atomic

SPLITS = ("train", "val", "test")


def write_jsonl_atomic(path: Path, rows: Iterable[Mapping[str, object]]) -> int:
    """One JSON object per line (UTF-8, not escaped), written atomically, a line at a time (no
    copy of the whole text in memory). Returns the count."""
    count = 0
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json_atomic(path: Path, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def stable_order(name: str) -> str:
    """A key that shuffles names the same way on every machine (no seed, no Python hash)."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def split_groups(sizes: Mapping[str, int], held_out: float) -> dict[str, str]:
    """Assign each group to train, val or test.

    Groups are visited in `stable_order`; each goes to val while it fits under `held_out` of all
    items, then to test likewise, else to train. A group too big to fit is skipped rather than
    overshooting, so one large catalog never becomes the whole test set. With three or more
    groups, an empty val or test then takes the smallest training group, so both exist.
    """
    if not 0 <= held_out < 0.5:
        raise ValueError(f"held-out fraction must be in [0, 0.5), got {held_out}")
    budget = held_out * sum(sizes.values())
    filled = {"val": 0, "test": 0}
    split = {}
    for group in sorted(sizes, key=stable_order):
        split[group] = "train"
        for name in ("val", "test"):
            if filled[name] + sizes[group] <= budget:
                split[group] = name
                filled[name] += sizes[group]
                break
    if len(sizes) >= 3 and held_out > 0:
        for name in ("val", "test"):
            train = [g for g in sizes if split[g] == "train"]
            if name not in split.values() and len(train) > 1:
                smallest = min(train, key=lambda g: (sizes[g], stable_order(g)))
                split[smallest] = name
    return split


def prepare_out(out: str | os.PathLike) -> Path:
    """The output folder, created; OSError naming it when it cannot be written."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"{folder}: cannot create the output folder ({err.strerror or err})") from err
    if not os.access(folder, os.W_OK):
        raise OSError(f"{folder}: output folder is not writable")
    return folder

"""Split args of the DataModules: which splits each Trainer entry point uses, and checks."""

from __future__ import annotations

import math

from torch.utils.data import ConcatDataset

SPLITS = ("train", "val", "test", "predict")
# The splits each Trainer entry point uses; the first is required, the others optional.
STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}
Source = str | list[str] | None  # one manifest (or split name), several joined, or none


class Joined(ConcatDataset):
    """Several datasets of one split used as one; `costs()` and `skipped` as theirs."""

    def costs(self) -> list[float]:
        return [c for dataset in self.datasets for c in dataset.costs()]

    @property
    def skipped(self) -> list[tuple[int, str]]:
        return [s for dataset in self.datasets for s in dataset.skipped]


ENTRY_POINT = {
    "train": "trainer.fit",
    "val": "trainer.validate",
    "test": "trainer.test",
    "predict": "trainer.predict",
}


def folder_root(format: str, root: str | None, folder_format: str) -> str | None:
    """`root` checked against `format`: required by `folder_format`, refused otherwise."""
    if format == folder_format and root is None:
        raise ValueError(f"root: format={folder_format!r} needs the dataset folder in `root`")
    if format != folder_format and root is not None:
        raise ValueError(
            f"root: only used with format={folder_format!r} (split args are manifest paths "
            f"with format={format!r}); remove it"
        )
    return root


def check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")


def as_list(split: str, source: Source) -> list[str]:
    if source is None:
        return []
    sources = [source] if isinstance(source, str) else list(source)
    if not sources or not all(isinstance(s, str) and s.strip() for s in sources):
        raise ValueError(f"{split}: expected a path (or split name) or a non-empty list of them")
    return sources

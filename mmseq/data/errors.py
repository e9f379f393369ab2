"""The error every dataset raises for unusable data."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset entry (or the whole manifest) is unusable.

    The message starts with where the entry is, e.g. ``data/train.jsonl, line 12:``, then says
    what is wrong and what was expected.
    """

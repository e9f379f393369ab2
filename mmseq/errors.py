"""Exceptions shared across mmseq."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not in the expected format.

    The message always names the file and says what was expected.
    """

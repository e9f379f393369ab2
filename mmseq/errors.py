"""Exceptions shared across mmseq."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or not in the expected format.

    The message always names the file and says what was expected.
    """


class NonFiniteError(ValueError):
    """Training met a non-finite loss or gradient and `model.nonfinite` is `stop`.

    The message names the step, what was non-finite and the ids of the samples in the batch.
    """

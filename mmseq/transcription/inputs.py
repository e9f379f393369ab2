"""What a transcription takes: paths or 16 kHz arrays, opened as streams (`Job`s) that are
read only when their windows are decoded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mmseq.data.audio import AudioStream

AudioInput = str | os.PathLike | np.ndarray
# what transcribe does with an input it cannot read: raise AudioLoadError, or return it with
# Transcript.error set and go on with the others
Errors = Literal["raise", "collect"]


@dataclass
class Job:
    """One input to decode: its samples, or why it has none."""

    name: str
    audio: AudioStream | None
    error: str | None = None
    one_window: bool = False  # a voice-activity chunk of at most one window


def load(item: AudioInput) -> Job:
    """Open a path or take an array as a 16 kHz mono stream, or an error naming the input.
    A file is only checked here (header, length); its samples are read when transcribed."""
    name = "<array>" if isinstance(item, np.ndarray) else str(item)
    try:
        return Job(name, AudioStream(item))
    except (ValueError, OSError) as err:
        return Job(name, None, str(err))


def is_one_input(inputs: AudioInput | Sequence[AudioInput]) -> bool:
    """A path or an array is one input (not a sequence of characters or rows)."""
    return isinstance(inputs, (str, os.PathLike, np.ndarray))

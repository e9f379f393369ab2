"""Voice-activity detection with Silero VAD (the `silero-vad` package ships its model, so
nothing is downloaded), and grouping of speech into chunks of at most 30 s.

The batched transcription path decodes only these chunks: silence and noise between them never
reach the decoder, which is where Whisper invents text.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability above which a 32 ms frame is speech
    min_speech_ms: int = 250
    min_silence_ms: int = 500  # shorter pauses stay inside one speech region
    speech_pad_ms: int = 200  # margin kept around each region so no word is clipped
    max_chunk_s: float = 30.0  # one Whisper window


@functools.lru_cache(maxsize=1)
def _silero():  # noqa: ANN202 - a TorchScript module
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise RuntimeError(
            "voice-activity detection needs the silero-vad package: pip install 'mmseq[vad]'"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return load_silero_vad()


def speech_regions(audio: np.ndarray, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech in 16 kHz mono audio, each at most max_chunk_s."""
    from silero_vad import get_speech_timestamps

    if len(audio) == 0:
        return []
    regions = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
        _silero(),
        threshold=options.threshold,
        sampling_rate=SAMPLE_RATE,
        min_speech_duration_ms=options.min_speech_ms,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        max_speech_duration_s=options.max_chunk_s - 1.0,
    )
    return [(r["start"], r["end"]) for r in regions]


def group_regions(regions: list[tuple[int, int]], max_samples: int) -> list[tuple[int, int]]:
    """Merge consecutive speech regions into spans of at most max_samples (silence between
    regions of one span is kept, so timestamps inside a span stay true)."""
    chunks: list[tuple[int, int]] = []
    for start, end in regions:
        if chunks and end - chunks[-1][0] <= max_samples:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, min(end, start + max_samples)))
    return chunks


def speech_chunks(audio: np.ndarray, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """Sample ranges to transcribe: speech regions grouped into chunks of at most one window."""
    return group_regions(speech_regions(audio, options), round(options.max_chunk_s * SAMPLE_RATE))

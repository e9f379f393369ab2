"""Voice-activity detection with Silero VAD (the `silero-vad` package ships its model, so
nothing is downloaded), and grouping of speech into chunks of at most 30 s.

The batched transcription path decodes only these chunks: silence and noise between them never
reach the decoder, which is where Whisper invents text.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from mmseq.data.audio import AudioStream

SAMPLE_RATE = 16000
FRAME = 512  # samples per silero frame at 16 kHz


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
        # get_speech_timestamps_from_probs: silero-vad >= 6.2.2
        from silero_vad import get_speech_timestamps_from_probs, load_silero_vad  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "voice-activity detection needs the silero-vad package (6.2.2 or later): "
            "pip install -U 'mmseq[vad]'"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return load_silero_vad()


def speech_regions(
    audio: np.ndarray | AudioStream, options: VadOptions = VadOptions()
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech in 16 kHz mono audio, each at most max_chunk_s.

    The regions of silero's `get_speech_timestamps`; a stream is read once, block by block.
    """
    stream = audio if isinstance(audio, AudioStream) else AudioStream(audio)
    if len(stream) == 0:
        return []
    probabilities = speech_probabilities(stream.blocks())
    from silero_vad import get_speech_timestamps_from_probs  # checked by _silero()

    regions = get_speech_timestamps_from_probs(
        probabilities,
        sampling_rate=SAMPLE_RATE,
        threshold=options.threshold,
        min_speech_duration_ms=options.min_speech_ms,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        max_speech_duration_s=options.max_chunk_s - 1.0,
        audio_length_samples=len(stream),
    )
    return [(r["start"], r["end"]) for r in regions]


@torch.no_grad()
def speech_probabilities(blocks: Iterable[np.ndarray]) -> list[float]:
    """Silero's speech probability of each 512-sample frame (the last one zero-padded), the
    model's state carried from frame to frame: what `get_speech_timestamps` computes over the
    whole waveform, from blocks of any size."""
    model = _silero()
    model.reset_states()
    probabilities = []
    rest = np.zeros(0, np.float32)  # samples after the last whole frame
    for block in blocks:
        samples = np.concatenate([rest, block])
        whole = len(samples) - len(samples) % FRAME
        for start in range(0, whole, FRAME):
            frame = torch.from_numpy(samples[start : start + FRAME])
            probabilities.append(model(frame, SAMPLE_RATE).item())
        rest = samples[whole:]
    if len(rest):
        frame = torch.from_numpy(np.pad(rest, (0, FRAME - len(rest))))
        probabilities.append(model(frame, SAMPLE_RATE).item())
    return probabilities


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


def speech_chunks(
    audio: np.ndarray | AudioStream, options: VadOptions = VadOptions()
) -> list[tuple[int, int]]:
    """Sample ranges to transcribe: speech regions grouped into chunks of at most one window."""
    return group_regions(speech_regions(audio, options), round(options.max_chunk_s * SAMPLE_RATE))

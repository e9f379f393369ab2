"""Speech to text with a Whisper model: files or arrays in, one transcript per input out.

This version transcribes clips of up to 30 s (one Whisper window), batched. The decoding follows
openai-whisper's `transcribe(..., temperature=0, without_timestamps=True,
condition_on_previous_text=False)`: the same log-mel, prompt, token suppression and stopping.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mmseq.data.audio import load_audio
from mmseq.encoders.audio_features import CHUNK_LENGTH, SAMPLE_RATE
from mmseq.generation import generate
from mmseq.whisper import DEFAULT_MODEL, Whisper, load_whisper

AudioInput = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class TranscribeOptions:
    beam_size: int = 1  # 1: greedy
    length_penalty: float = 1.0
    max_new_tokens: int | None = None  # None: the model's n_ctx // 2, as openai-whisper
    batch_size: int = 8


@dataclass
class Transcript:
    """One input's result. `error` is set (and text empty) when the input could not be read."""

    source: str
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    avg_logprob: float = float("nan")
    compression_ratio: float = float("nan")
    duration: float = 0.0
    error: str | None = None


def compression_ratio(text: str) -> float:
    """gzip ratio of the text: Whisper's signal for repetitive (looping) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class Transcriber:
    """Holds a loaded model; call `transcribe` as often as needed."""

    def __init__(
        self,
        model: str | os.PathLike | Whisper = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
    ) -> None:
        self.whisper = model if isinstance(model, Whisper) else load_whisper(model, device)

    def transcribe(
        self, inputs: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        """Transcribe every input; an unreadable one yields a Transcript with `error` set."""
        return list(self.iter_transcribe(inputs, options))

    def iter_transcribe(
        self, inputs: Sequence[AudioInput], options: TranscribeOptions | None = None
    ) -> Iterator[Transcript]:
        """Like `transcribe`, yielding results in input order as each batch finishes."""
        options = options or TranscribeOptions()
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
        for start in range(0, len(inputs), options.batch_size):
            batch = inputs[start : start + options.batch_size]
            loaded = [_load(item) for item in batch]
            ok = [(i, audio) for i, (_, audio, _) in enumerate(loaded) if audio is not None]
            decoded = iter(self._decode([a for _, a in ok], options) if ok else [])
            for name, audio, error in loaded:
                if audio is None:
                    yield Transcript(name, error=error)
                else:
                    result = next(decoded)
                    result.source = name
                    yield result

    @torch.inference_mode()
    def _decode(self, audios: list[np.ndarray], options: TranscribeOptions) -> list[Transcript]:
        w = self.whisper
        device = w.device
        lengths = torch.tensor([len(a) for a in audios], device=device)
        waves = torch.zeros(len(audios), int(lengths.max()), device=device)
        for i, audio in enumerate(audios):
            waves[i, : len(audio)] = torch.from_numpy(audio)
        overrides: dict[str, object] = {"num_beams": options.beam_size}
        if options.beam_size > 1:
            overrides["length_penalty"] = options.length_penalty
        if options.max_new_tokens:
            overrides["max_new_tokens"] = options.max_new_tokens
        config = w.generation_config(**overrides)
        prompt = w.tokenizer.sot_sequence(without_timestamps=True)
        out = generate(w.model, "audio", waves, prompt, config, lengths=lengths)
        results = []
        for i in range(len(audios)):
            generated = out.sequences[i, 0, len(prompt) :].tolist()
            tokens = generated[: int(out.lengths[i, 0])]
            tokens = [t for t in tokens if t != w.tokenizer.eot]
            text = w.tokenizer.decode(tokens).strip()
            results.append(
                Transcript(
                    source="",
                    text=text,
                    tokens=tokens,
                    avg_logprob=float(out.sum_logprobs[i, 0]) / (len(tokens) + 1),
                    compression_ratio=compression_ratio(text),
                    duration=len(audios[i]) / SAMPLE_RATE,
                )
            )
        return results


def _load(item: AudioInput) -> tuple[str, np.ndarray | None, str | None]:
    """(name, audio or None, error message or None) for one input."""
    name = "<array>" if isinstance(item, np.ndarray) else str(item)
    try:
        audio = item.astype(np.float32) if isinstance(item, np.ndarray) else load_audio(item)
    except (ValueError, OSError) as err:
        return name, None, str(err)
    if audio.ndim != 1:
        return name, None, f"{name}: expected mono 16 kHz samples [S], got shape {audio.shape}"
    if not np.isfinite(audio).all():
        return name, None, f"{name}: audio contains NaN or infinite samples"
    seconds = len(audio) / SAMPLE_RATE
    if seconds > CHUNK_LENGTH:
        return (
            name,
            None,
            f"{name}: {seconds:.1f} s long; this version transcribes clips of up to "
            f"{CHUNK_LENGTH} s (long-form transcription is not available yet)",
        )
    return name, audio, None


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | os.PathLike | Whisper = DEFAULT_MODEL,
    **options: object,
) -> Transcript | list[Transcript]:
    """One-call API: `mmseq.transcribe("clip.wav")` -> Transcript (a list for a list input)."""
    single = isinstance(inputs, (str, os.PathLike, np.ndarray))
    items = [inputs] if single else list(inputs)
    results = Transcriber(model).transcribe(items, TranscribeOptions(**options))
    return results[0] if single else results

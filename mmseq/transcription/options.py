"""What a transcription does: `TranscribeOptions`, the keyword options that override it, and
the checks that refuse an option before any input is read."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from mmseq.config import fallback_temperatures
from mmseq.data.vad import VadOptions
from mmseq.whisper.decoding import DecodingOptions
from mmseq.whisper.tokenizer import WhisperTokenizer


@dataclass(frozen=True)
class TranscribeOptions:
    """Defaults are openai-whisper's command line's (best_of 5, fallback, timestamps)."""

    beam_size: int = 1  # 1: greedy; else openai-whisper's beam search at temperature 0
    patience: float | None = None  # beam search: wait for beam_size * patience hypotheses
    best_of: int = 5
    # rank beams and samples by the sum of log-probabilities / length (None), or / GNMT's
    # ((5 + length) / 6) ** length_penalty
    length_penalty: float | None = None
    temperatures: tuple[float, ...] = fallback_temperatures()  # 0, 0.2, ..., 1.0
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    # keep the initial prompt in front of every window's prompt (openai-whisper's option);
    # otherwise it only prompts the first windows, as text already said
    carry_initial_prompt: bool = False
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    max_new_tokens: int | None = None
    word_timestamps: bool = False
    # with word_timestamps: skip silences longer than this (s) before text that looks invented
    # (openai-whisper's option of the same name; see mmseq.whisper.hallucination)
    hallucination_silence_threshold: float | None = None
    # keep each window's word alignment in Transcript.alignments (for `transcribe --explain`);
    # unlike word_timestamps it changes no segment, time or token
    keep_alignments: bool = False
    # keep openai-whisper's segment times (its timestamp tokens'; with word_timestamps, its
    # word-based bounds) instead of tightening each segment onto its heard words, which runs
    # the word alignment for every window (see mmseq.whisper.timing.tighten_to_words). Tokens,
    # text and windows are the same either way
    raw_timestamps: bool = False
    # only these parts (seconds: start, end, start, end, ...; an odd last start runs to the end
    # of the file), as openai-whisper's clip_timestamps; the sequential path only
    clip_timestamps: tuple[float, ...] = ()
    vad: bool = False  # batched path: transcribe only the speech chunks found by Silero VAD
    vad_options: VadOptions = VadOptions()  # with vad: how speech is found and packed
    batch_size: int = 8
    # multilingual models: None detects it per file (per speech chunk with vad) from the first
    # 30 s, as openai-whisper does; English-only models take "en" or None
    language: str | None = None
    task: str = "transcribe"  # or "translate": speech in any language to English text

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.hallucination_silence_threshold is not None:
            if not self.word_timestamps:
                raise ValueError(
                    "hallucination_silence_threshold: needs word_timestamps (it judges words)"
                )
            if self.hallucination_silence_threshold <= 0:
                raise ValueError(
                    "hallucination_silence_threshold: expected seconds > 0, got "
                    f"{self.hallucination_silence_threshold}"
                )
        temperatures = self.temperatures
        if isinstance(temperatures, (int, float)):  # one temperature: no fallback
            temperatures = (temperatures,)
        object.__setattr__(self, "temperatures", tuple(temperatures))
        if self.language is not None:
            object.__setattr__(self, "language", self.language.lower())
        object.__setattr__(self, "clip_timestamps", tuple(map(float, self.clip_timestamps)))
        _check_clips(self.clip_timestamps, self.vad)
        self.decoding()  # validates the rest

    def decoding(self) -> DecodingOptions:
        return DecodingOptions(
            temperatures=self.temperatures,
            beam_size=self.beam_size,
            patience=self.patience,
            best_of=self.best_of,
            length_penalty=self.length_penalty,
            without_timestamps=self.without_timestamps,
            max_initial_timestamp=self.max_initial_timestamp,
            compression_ratio_threshold=self.compression_ratio_threshold,
            logprob_threshold=self.logprob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            max_new_tokens=self.max_new_tokens,
            language=self.language or "en",
            task=self.task,
        )


def with_overrides(
    options: TranscribeOptions | None, overrides: dict[str, Any]
) -> TranscribeOptions:
    """`options` (default: TranscribeOptions()) with the keyword options replacing its fields.
    `temperature` is openai-whisper's and faster-whisper's name of `temperatures` (one value
    or several, for fallback). An unknown name is a TypeError that lists the known ones."""
    if options is not None and not isinstance(options, TranscribeOptions):
        raise TypeError(f"options: expected a TranscribeOptions, got {type(options).__name__}")
    overrides = dict(overrides)
    if "temperature" in overrides:
        if "temperatures" in overrides:
            raise TypeError("temperature and temperatures are one option: give one of them")
        overrides["temperatures"] = overrides.pop("temperature")
    known = {f.name for f in fields(TranscribeOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"transcribe: unknown option(s) {', '.join(unknown)}; the options are "
            f"TranscribeOptions' fields: {', '.join(sorted(known))} (and temperature)"
        )
    return replace(options or TranscribeOptions(), **overrides)


def check_language(tokenizer: WhisperTokenizer, options: TranscribeOptions) -> None:
    """Refuse what the model (its tokenizer) cannot do before any file is read."""
    if tokenizer.is_multilingual:
        if options.language is not None:
            tokenizer.language_token(options.language)  # raises, listing the model's codes
        return
    if options.language not in (None, "en", "english"):
        raise ValueError(
            f"language {options.language!r}: this model is English-only; other languages "
            "need a multilingual Whisper checkpoint (whisper-tiny, -base, ...)"
        )
    if options.task != "transcribe":
        raise ValueError(
            f"task {options.task!r}: this model is English-only; translation needs a "
            "multilingual Whisper checkpoint (whisper-tiny, -base, ...)"
        )


def _check_clips(clips: tuple[float, ...], vad: bool) -> None:
    if not clips:
        return
    if vad:
        raise ValueError("clip_timestamps: not with vad (voice activity chooses what to decode)")
    starts_before_ends = all(a < b for a, b in zip(clips[::2], clips[1::2], strict=False))
    in_order = all(b <= c for b, c in zip(clips[1::2], clips[2::2], strict=False))
    if clips[0] < 0 or not (starts_before_ends and in_order):
        raise ValueError(
            "clip_timestamps: expected seconds >= 0 as start, end, start, end, ... with each "
            f"start before its end and the clips in order, got {list(clips)}"
        )

"""Speech to text with a Whisper model: files or arrays in, timed segments out.

Long recordings are transcribed as openai-whisper does (sequential 30 s windows that seek to the
last complete segment, timestamp rules, temperature fallback, no-speech skipping, optional
conditioning on the previous text), with two differences that change no token: the log-mel is
computed one window at a time, and windows of different files are encoded and decoded together
(`batch_size`) whenever they share the same prompt.

Files are read as streams (`AudioStream`), twice: once for the log-mel's peak (or for voice
activity) and once for the windows (or speech chunks), holding only the samples the current
window needs, so memory does not grow with the length of a recording.

This module is the front end (`Transcriber`, `transcribe`); the work is split by job:
- `options`: `TranscribeOptions`, keyword overrides, the checks made before any input is read;
- `inputs`: paths and arrays opened as streams;
- `results`: `Transcript` (with Whisper's `Segment` and `Word`);
- `windows`: one file's window advancing (seek, clips, prompts, segments, word timings);
- `engine`: the batched step engine (`LiveBatch`), language detection, encoding;
- `vad`: the voice-activity path, chunks decoded by the engine and put back on the recording.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from mmseq.data.audio import AudioLoadError, check_file
from mmseq.precision import Int8WeightLinear, apply_compute_type, check_device
from mmseq.transcription.engine import LiveBatch, transcribe_jobs
from mmseq.transcription.inputs import AudioInput, Errors, is_one_input, load
from mmseq.transcription.options import TranscribeOptions, check_language, with_overrides
from mmseq.transcription.results import Segment, Transcript, Word
from mmseq.transcription.vad import _main_language as _main_language  # tested by these names
from mmseq.transcription.vad import _tighten_in_regions as _tighten_in_regions
from mmseq.transcription.vad import transcribe_speech
from mmseq.whisper import DEFAULT_MODEL, Whisper, load_whisper
from mmseq.whisper.decoding import compression_ratio

# `load_whisper` and `Transcriber` are looked up in this module when called, so patching them
# here reaches every path; what the submodules call (speech_chunks, decode_windows, ...) is
# looked up in those submodules: patch it there (mmseq.transcription.vad, .engine).


class Transcriber:
    """Holds a loaded model; call `transcribe` as often as needed.

    compile=True runs the encoder and the decoder through `torch.compile` (dynamic shapes, so
    the growing self-attention cache does not recompile each step). Compiling costs 30-60 s
    on the first window; measured on a 2-core CPU (tiny.en, fp32, 190 s of speech) it then
    gives the same tokens 6% faster (8.98 s -> 8.40 s): decoding there is bound by reading
    weights, not by Python. It pays off for long or many files and on accelerators, not for a
    single clip. With int8 layers it measured no faster and rounds differently from eager int8,
    so that pair is refused.

    device "auto" (the default) is CUDA when present, else the CPU, as in faster-whisper.
    """

    def __init__(
        self,
        model: str | os.PathLike | Whisper = DEFAULT_MODEL,
        device: str | torch.device = "auto",
        compute_type: str = "float32",
        compile: bool = False,
    ) -> None:
        device = check_device(device, compute_type)  # "auto" resolved; a missing GPU refused
        if isinstance(model, Whisper):  # a fine-tuned .ckpt's, say: converted here
            if compute_type != "float32":
                apply_compute_type(model.model.to(device), compute_type)
            self.whisper = model
        else:
            self.whisper = load_whisper(model, device, compute_type)
        if compile:
            network = self.whisper.model
            if any(isinstance(m, Int8WeightLinear) for m in network.modules()):  # however made
                raise ValueError(
                    "compile: not with compute_type int8 (measured no faster, and it changes "
                    "the int8 rounding); use float32 or bfloat16"
                )
            network.encoders["audio"].compile(dynamic=True)
            network.decoder.compile(dynamic=True)

    @overload
    def transcribe(
        self,
        inputs: AudioInput,
        *,
        options: TranscribeOptions | None = None,
        errors: Errors = "raise",
        **overrides: Any,
    ) -> Transcript: ...

    @overload
    def transcribe(
        self,
        inputs: Sequence[AudioInput],
        *,
        options: TranscribeOptions | None = None,
        errors: Errors = "raise",
        **overrides: Any,
    ) -> list[Transcript]: ...

    def transcribe(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        options: TranscribeOptions | None = None,
        errors: Errors = "raise",
        **overrides: Any,
    ) -> Transcript | list[Transcript]:
        """One input (a path, or 16 kHz mono samples [S]) -> its Transcript; a sequence of
        inputs -> their Transcripts, in order. `mmseq.transcribe` has the same shape.

        The options are TranscribeOptions' fields as keywords (`beam_size=5`,
        `word_timestamps=True`, `language="de"`, `temperature=0`: openai-whisper's and
        faster-whisper's names), applied over `options` when a TranscribeOptions is given too.
        An input that cannot be read (missing, not audio, NaN samples) raises AudioLoadError
        naming it; errors="collect" returns it instead with `error` set and no segments, and
        goes on with the other inputs (as `iter_transcribe` always does).
        """
        if errors not in ("raise", "collect"):
            raise ValueError(f"errors: expected 'raise' or 'collect', got {errors!r}")
        single = is_one_input(inputs)
        results = []
        for transcript in self.iter_transcribe(inputs, options=options, **overrides):
            if transcript.error is not None and errors == "raise":
                raise AudioLoadError(transcript.error)  # the message names the input
            results.append(transcript)
        return results[0] if single else results

    def iter_transcribe(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        options: TranscribeOptions | None = None,
        progress: Callable[[float], None] | None = None,
        **overrides: Any,
    ) -> Iterator[Transcript]:
        """Like `transcribe` (the same keyword options), yielding results in input order as
        soon as each is complete. It collects errors: an input that cannot be read yields a
        Transcript with `error` set, and the next inputs follow (what `mmseq transcribe` does
        with a bad file among good ones).

        progress(seconds) is called with the seconds of audio done as they are done.
        Options the model cannot follow (a language it lacks) raise here, before any input.
        """
        options = with_overrides(options, overrides)
        check_language(self.whisper.tokenizer, options)
        if is_one_input(inputs):
            inputs = [inputs]  # not its characters or rows
        jobs = (load(item) for item in inputs)
        engine = transcribe_speech if options.vad else transcribe_jobs
        return engine(self, jobs, options, progress)

    def live(self, options: TranscribeOptions | None = None) -> LiveBatch:
        """Inputs that join and leave between windows (see `LiveBatch`): what a server
        batches its requests with."""
        return LiveBatch(self, options or TranscribeOptions())


@overload
def transcribe(
    inputs: AudioInput,
    model: str | os.PathLike | Whisper = ...,
    *,
    options: TranscribeOptions | None = None,
    errors: Errors = "raise",
    **overrides: Any,
) -> Transcript: ...


@overload
def transcribe(
    inputs: Sequence[AudioInput],
    model: str | os.PathLike | Whisper = ...,
    *,
    options: TranscribeOptions | None = None,
    errors: Errors = "raise",
    **overrides: Any,
) -> list[Transcript]: ...


def transcribe(
    inputs: AudioInput | Sequence[AudioInput],
    model: str | os.PathLike | Whisper = DEFAULT_MODEL,
    *,
    options: TranscribeOptions | None = None,
    errors: Errors = "raise",
    **overrides: Any,
) -> Transcript | list[Transcript]:
    """One-call API: `mmseq.transcribe("talk.wav", beam_size=5)` -> Transcript (a list for a
    sequence of inputs). The same keyword options, errors and results as
    `Transcriber(model).transcribe`; keep a Transcriber to load the model once for many calls.
    Misspelt options and (with errors="raise") missing files fail before the model loads."""
    merged = with_overrides(options, overrides)
    single = is_one_input(inputs)
    items = [inputs] if single else list(inputs)  # an iterator is read once
    if errors == "raise":
        for item in items:
            if not isinstance(item, np.ndarray):
                check_file(Path(item))
    results = Transcriber(model).transcribe(items, options=merged, errors=errors)
    return results[0] if single else results


__all__ = [
    "AudioInput",
    "AudioLoadError",
    "Errors",
    "LiveBatch",
    "Segment",
    "Word",
    "TranscribeOptions",
    "Transcriber",
    "Transcript",
    "compression_ratio",
    "transcribe",
]

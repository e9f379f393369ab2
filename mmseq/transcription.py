"""Speech to text with a Whisper model: files or arrays in, timed segments out.

Long recordings are transcribed as openai-whisper does (sequential 30 s windows that seek to the
last complete segment, timestamp rules, temperature fallback, no-speech skipping, optional
conditioning on the previous text), with two differences that change no token: the log-mel is
computed one window at a time, and windows of different files are encoded and decoded together
(`batch_size`) whenever they share the same prompt.

Files are read as streams (`AudioStream`), twice: once for the log-mel's peak (or for voice
activity) and once for the windows (or speech chunks), holding only the samples the current
window needs, so memory does not grow with the length of a recording.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from mmseq.config import fallback_temperatures
from mmseq.data.audio import AudioLoadError, AudioStream, check_file
from mmseq.data.vad import SpeechChunk, VadOptions, speech_chunks
from mmseq.encoders.audio_features import (
    FRAMES_PER_SECOND,
    N_FRAMES,
    SAMPLE_RATE,
    ForwardReader,
    WindowedLogMel,
)
from mmseq.precision import Int8WeightLinear, apply_compute_type, check_device
from mmseq.whisper import DEFAULT_MODEL, Whisper, load_whisper
from mmseq.whisper.decoding import (
    DecodingOptions,
    WindowResult,
    compression_ratio,
    decode_windows,
    detect_language,
)
from mmseq.whisper.hallucination import (
    Window,
    last_speech_end,
    skip_silence_before_hallucinations,
)
from mmseq.whisper.segments import Segment, Word, split_sentences, split_window
from mmseq.whisper.timing import Alignment, align, attach_words, tighten_to_words

AudioInput = str | os.PathLike | np.ndarray
# what transcribe does with an input it cannot read: raise AudioLoadError, or return it with
# Transcript.error set and go on with the others
Errors = Literal["raise", "collect"]


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


@dataclass
class Transcript:
    """One input's result. `error` is set (and there are no segments) when it could not be
    read (with errors="collect"); an input without speech has no segments and no error.

    `language` is the code of the language transcribed, as given or detected; with it
    `language_probability` is faster-whisper's `info.language_probability`: the detection's
    probability of that language on the first 30 s (with vad: the speech-weighted mean over
    the chunks that detected it, 0 for the others), 1.0 when the language was given or the
    model is English-only, None when it was not detected (an input that could not be read,
    or with nothing to decode)."""

    source: str
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    language: str = "en"
    language_probability: float | None = None
    error: str | None = None
    text_tokens: list[int] = field(default_factory=list)  # every segment's text tokens
    alignments: list[Alignment] = field(default_factory=list)  # with keep_alignments

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def tokens(self) -> list[int]:
        return self.text_tokens


@dataclass
class _File:
    """Decoding state of one input in flight."""

    transcript: Transcript
    mel: WindowedLogMel
    initial_prompt: list[int]
    all_tokens: list[int]  # the initial prompt, then every segment's tokens
    prompt_room: int  # the most tokens a prompt holds: n_ctx // 2 - 1
    clips: list[tuple[int, int]]  # mel frames [start, end) to transcribe, in order
    clip: int = 0  # the clip being transcribed
    carry_initial_prompt: bool = False
    prompt_reset_since: int = 0
    one_window: bool = False  # a voice-activity chunk: decoded once, see split_window
    language: str | None = None  # None until detected on the first window
    detection_mel: torch.Tensor | None = None  # what to detect it on, if not that window
    seek: int = 0
    last_speech: float = 0.0  # end of the last word, for word-timestamp heuristics

    @property
    def done(self) -> bool:
        return self.clip >= len(self.clips)

    @property
    def window_frames(self) -> int:
        """Frames of audio in the next window: up to 30 s, within the current clip."""
        return min(N_FRAMES, self.clips[self.clip][1] - self.seek)

    def enter_clip(self) -> None:
        """Move seek into the current clip, or to the next clip once past its end."""
        while not self.done:
            start, end = self.clips[self.clip]
            self.seek = max(self.seek, start)
            if self.seek < end:
                return
            self.clip += 1

    @property
    def prompt(self) -> tuple[int, ...]:
        """The next window's prompt, as openai-whisper builds it: the text since the last
        reset, the initial prompt counting as text already said (the decoder keeps the last
        prompt_room tokens); with carry_initial_prompt the initial prompt leads every prompt
        and the text since the last reset fills the rest of the room."""
        if not self.carry_initial_prompt:
            return tuple(self.all_tokens[self.prompt_reset_since :])
        since = max(len(self.initial_prompt), self.prompt_reset_since)
        room = self.prompt_room - len(self.initial_prompt)
        previous = self.all_tokens[since:][-room:] if room > 0 else []
        return tuple(self.initial_prompt + previous)


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
        single = _is_one_input(inputs)
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
        options = _with_overrides(options, overrides)
        self._check_language(options)
        if _is_one_input(inputs):
            inputs = [inputs]  # not its characters or rows
        jobs = (_load(item) for item in inputs)
        engine = self._vad_engine if options.vad else self._engine
        return engine(jobs, options, progress)

    def _check_language(self, options: TranscribeOptions) -> None:
        """Refuse what the model cannot do before any file is read."""
        tok = self.whisper.tokenizer
        if tok.is_multilingual:
            if options.language is not None:
                tok.language_token(options.language)  # raises, listing the model's codes
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

    def live(self, options: TranscribeOptions | None = None) -> LiveBatch:
        """Inputs that join and leave between windows (see `LiveBatch`): what a server
        batches its requests with."""
        return LiveBatch(self, options or TranscribeOptions())

    def _engine(
        self,
        jobs: Iterator[_Job],
        options: TranscribeOptions,
        progress: Callable[[float], None] | None,
    ) -> Iterator[Transcript]:
        """Up to batch_size inputs are in flight (a `LiveBatch` keyed by input index); each
        round encodes one window of each and decodes together the windows that share a
        prompt. Yields in input order."""
        pending = enumerate(jobs)
        live = LiveBatch(self, options, progress)
        finished: dict[int, Transcript] = {}
        next_out = 0
        while True:
            while len(live) < options.batch_size:
                item = next(pending, None)
                if item is None:
                    break
                done = live.add_job(*item)
                if done is not None:
                    finished[item[0]] = done
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
            if not live:
                return
            finished.update(live.step())

    def _vad_engine(
        self,
        jobs: Iterator[_Job],
        options: TranscribeOptions,
        progress: Callable[[float], None] | None,
    ) -> Iterator[Transcript]:
        """The batched path: only the speech found by VAD is transcribed, packed into chunks
        of up to 30 s of speech (`SpeechChunk`) that are decoded as independent inputs of one
        window each (no conditioning across chunks), then put back on the file's timeline. A
        file without speech still passes one empty chunk, to keep the order. Each file is read
        twice: for voice activity, then for the chunks' samples."""
        files: deque[tuple[_Job, list[SpeechChunk]]] = deque()

        def chunk_jobs() -> Iterator[_Job]:
            for job in jobs:
                chunks: list[SpeechChunk] = []
                if job.audio is not None:
                    try:
                        chunks = speech_chunks(job.audio, options.vad_options) or [
                            SpeechChunk(((0, 0),))
                        ]
                    except AudioLoadError as err:  # found while reading the file
                        job = _Job(job.name, None, str(err))
                files.append((job, chunks))
                if job.audio is None:
                    yield job
                    continue
                reader = ForwardReader(job.audio.blocks())
                for chunk in chunks:
                    samples = [reader.read(start, end).numpy() for start, end in chunk.regions]
                    yield _Job(job.name, AudioStream(np.concatenate(samples)), one_window=True)

        results = self._engine(chunk_jobs(), options, progress)
        for first in results:
            job, chunks = files.popleft()
            if job.audio is None:
                yield first
                continue
            transcript = Transcript(job.name, duration=len(job.audio) / SAMPLE_RATE)
            parts = [first, *(next(results) for _ in chunks[1:])]
            for chunk, part in zip(chunks, parts, strict=True):
                _append_on_recording(transcript, part, chunk, options)
            transcript.language, transcript.language_probability = _main_language(parts, chunks)
            if progress:
                progress(transcript.duration - sum(c.samples for c in chunks) / SAMPLE_RATE)
            yield transcript

    def _start(self, job: _Job, options: TranscribeOptions) -> _File | Transcript:
        if job.audio is None:
            return Transcript(job.name, error=job.error)
        features = self.whisper.model.encoders["audio"].features
        try:
            mel = WindowedLogMel(features, job.audio)  # reads the whole file a first time
        except AudioLoadError as err:
            return Transcript(job.name, error=str(err))
        transcript = Transcript(job.name, duration=len(job.audio) / SAMPLE_RATE)
        prompt = []
        if options.initial_prompt:
            prompt = self.whisper.tokenizer.encode(" " + options.initial_prompt.strip())
        one_window = job.one_window and mel.content_frames <= N_FRAMES
        clips = _clip_frames(options.clip_timestamps, mel.content_frames)
        # English-only models speak English, whatever `en` was spelled as (None, "english")
        language = options.language if self.whisper.tokenizer.is_multilingual else "en"
        transcript.language = language or transcript.language
        # given (or English-only): certain, as faster-whisper's 1; else set once detected
        transcript.language_probability = None if language is None else 1.0
        state = _File(
            transcript,
            mel,
            initial_prompt=prompt,
            all_tokens=list(prompt),
            prompt_room=self.whisper.model.config.decoder.n_ctx // 2 - 1,
            clips=clips,
            carry_initial_prompt=options.carry_initial_prompt,
            one_window=one_window,
            language=language,
        )
        state.enter_clip()
        if language is None and not one_window and not state.done:
            # openai-whisper detects on the first 30 s of the recording followed by silence:
            # the first decoded window too, unless it starts later or the file is shorter
            if state.seek > 0 or mel.content_frames < N_FRAMES:
                state.detection_mel = mel.first_window_of_padded()  # read before any window
        return transcript if state.done else state

    @torch.inference_mode()
    def _round(
        self,
        active: list[_File],
        options: TranscribeOptions,
        progress: Callable[[float], None] | None,
    ) -> Iterator[None]:
        """Encode the current window of every active file, then decode by shared prompt,
        yielding after each prompt group. The group whose files have the least audio left
        goes first, so that a short file that just joined is done without waiting for the
        windows of long ones (the order of the groups changes no token)."""
        sizes = [s.window_frames for s in active]
        mels = torch.stack([s.mel.window(s.seek, n) for s, n in zip(active, sizes, strict=True)])
        states = self._encode(mels.to(self.whisper.device))
        undetected = [i for i, state in enumerate(active) if state.language is None]
        if undetected:  # the first window of a file, on a multilingual model
            self._detect_language([active[i] for i in undetected], states[undetected])
        groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        for i, state in enumerate(active):
            groups.setdefault((state.language, state.prompt), []).append(i)
        decoding = options.decoding()

        def audio_left(rows: list[int]) -> int:
            return min(active[i].mel.content_frames - active[i].seek for i in rows)

        for (language, prompt), rows in sorted(groups.items(), key=lambda g: audio_left(g[1])):
            results = decode_windows(
                self.whisper, states[rows], prompt, replace(decoding, language=language)
            )
            for i, result in zip(rows, results, strict=True):
                before = active[i].seek
                self._advance(active[i], result, sizes[i], options, states[i : i + 1])
                active[i].enter_clip()
                if progress:
                    done = min(active[i].seek, active[i].mel.content_frames) - before
                    progress(done / FRAMES_PER_SECOND)
            yield

    def _detect_language(self, files: list[_File], states: torch.Tensor) -> None:
        """Set each file's language from its first window's encoder states [B, S, D], or
        from its `detection_mel` where that was kept (encoded here). A VAD chunk is detected
        on the window it decodes."""
        for k, state in enumerate(files):
            if state.detection_mel is not None:
                mel = state.detection_mel[None].to(self.whisper.device)
                states[k] = self._encode(mel)[0]
                state.detection_mel = None
        languages, probs = detect_language(self.whisper, states)
        for state, language, p in zip(files, languages, probs.amax(-1).tolist(), strict=True):
            state.language = state.transcript.language = language
            state.transcript.language_probability = p  # of the most probable: `language`

    def _encode(self, mels: torch.Tensor) -> torch.Tensor:
        """log-mel windows [B, n_mels, 3000] -> encoder states [B, 1500, D].

        On the CPU one 30 s window already fills the matrix multiplies (1500 rows), so the
        windows are encoded one at a time: as fast as a batch (tiny.en, 2 threads: 8 windows
        2.56 s one by one, 2.72 s as a batch) with the activation memory of one window, so the
        peak memory does not grow with the batch size. Accelerators get the whole batch."""
        encode = self.whisper.model.encode
        if mels.device.type != "cpu":
            return encode("audio", mels).states
        return torch.cat([encode("audio", mel[None]).states for mel in mels])

    def _advance(
        self,
        state: _File,
        result: WindowResult,
        frames: int,
        options: TranscribeOptions,
        states: torch.Tensor,
    ) -> None:
        """Apply one decoded window to its file: skip silence, or add segments and seek."""
        no_speech = (
            options.no_speech_threshold is not None
            and result.no_speech_prob > options.no_speech_threshold
            and not (
                options.logprob_threshold is not None
                and result.avg_logprob > options.logprob_threshold
            )
        )
        if no_speech:
            state.seek += frames
            return
        tokenizer = self.whisper.tokenizer
        eot = tokenizer.eot
        window_start = state.seek
        segments, state.seek, single_ending = split_window(
            result, tokenizer, window_start, frames, keep_unfinished=state.one_window
        )
        if state.one_window and options.without_timestamps and options.word_timestamps:
            # a VAD chunk holds up to 30 s of speech: its words time a segment per sentence
            segments = [part for s in segments for part in split_sentences(s, tokenizer)]
        speech_before = state.last_speech
        if options.word_timestamps or options.keep_alignments or not options.raw_timestamps:
            # nothing left to decode after the words: a voice-activity chunk decoded to its end
            ended = single_ending or (state.one_window and state.seek >= window_start + frames)
            self._add_words(state, segments, states, frames, window_start, ended, options)
        threshold = options.hallucination_silence_threshold
        if threshold is not None and not state.one_window:  # VAD chunks hold no long silence
            window = Window(window_start, frames, state.mel.content_frames)
            segments, state.seek, again = skip_silence_before_hallucinations(
                segments, window, state.seek, single_ending, speech_before, threshold
            )
            if again:  # nothing of this window is kept: decoded again after its silence
                state.last_speech = speech_before
                return
            end = last_speech_end(segments)
            state.last_speech = speech_before if end is None else end
        transcript = state.transcript
        for segment in segments:
            if segment.start == segment.end or not segment.text.strip():
                continue  # instantaneous or empty: openai-whisper blanks these
            # after every choice that reads openai-whisper's times; a VAD chunk's segments are
            # tightened on the recording, where its speech regions are (_append_on_recording)
            if not options.raw_timestamps and not state.one_window:
                tighten_to_words(segment)
                if not options.word_timestamps:
                    segment.words = []  # aligned only to be tightened
            segment.id = len(transcript.segments)
            transcript.segments.append(segment)
            state.all_tokens.extend(segment.tokens)
            transcript.text_tokens.extend(t for t in segment.tokens if t < eot)
        if not options.condition_on_previous_text or result.temperature > 0.5:
            state.prompt_reset_since = len(state.all_tokens)

    def _add_words(
        self,
        state: _File,
        segments: list[Segment],
        states: torch.Tensor,
        frames: int,
        window_start: int,
        single_ending: bool,
        options: TranscribeOptions,
    ) -> None:
        """Word timings for a window's segments (without word_timestamps only to tighten
        their times, unless raw_timestamps); with word_timestamps, unless the window ended on a
        single timestamp, the next window starts at the end of the last word. With keep_alignments a
        copy of the alignment is kept (word timing edits its words in place)."""
        eot = self.whisper.tokenizer.eot
        text = [t for s in segments for t in s.tokens if t < eot]
        alignment = align(self.whisper, states, text, frames, state.language, options.task)
        offset = window_start / FRAMES_PER_SECOND
        if alignment is not None and options.keep_alignments:
            words = [replace(w, tokens=list(w.tokens)) for w in alignment.words]
            state.transcript.alignments.append(replace(alignment, words=words, offset=offset))
        timings = alignment.words if alignment is not None else []
        if not options.word_timestamps:
            if not options.raw_timestamps:  # words for tighten_to_words, on copies: the
                # segments keep openai-whisper's times until every choice that reads them is made
                copies = [replace(s, words=[]) for s in segments]
                state.last_speech = attach_words(copies, timings, offset, state.last_speech, eot)
                for segment, copy in zip(segments, copies, strict=True):
                    segment.words = copy.words
            return
        state.last_speech = attach_words(segments, timings, offset, state.last_speech, eot)
        if not single_ending:
            ends = [w.end for s in segments for w in s.words] or [segments[-1].end]
            if ends[-1] > offset:
                state.seek = round(ends[-1] * FRAMES_PER_SECOND)


class LiveBatch:
    """Inputs in flight together, which join and leave between windows.

    `add` starts an input (and returns its Transcript at once if it cannot be read or has
    nothing to decode); `step` encodes the current 30 s window of every input in flight,
    decodes together the windows that share a prompt, and returns the inputs that are done;
    `drop` forgets one (its client left). An input's transcript is the one `transcribe` gives
    it alone: what it is batched with changes no token. `Transcriber.transcribe` runs on one
    of these; `mmseq serve` keeps one per set of options and lets requests join at any step,
    so a short file never waits for a long one to finish. Whole inputs only: `vad` options
    (chunks cut by voice activity) go through `transcribe`.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        options: TranscribeOptions,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        transcriber._check_language(options)
        self.transcriber, self.options, self.progress = transcriber, options, progress
        self._files: dict[Hashable, _File] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._files

    def add(self, key: Hashable, item: AudioInput) -> Transcript | None:
        """Start transcribing `item` (a path or a 16 kHz array) under `key`; None once it is
        in flight, or its finished Transcript (`error` set if unreadable)."""
        if self.options.vad:
            raise ValueError("LiveBatch transcribes whole inputs: vad options need transcribe")
        if key in self._files:
            raise ValueError(f"LiveBatch: {key!r} is already in flight")
        return self.add_job(key, _load(item))

    def add_job(self, key: Hashable, job: _Job) -> Transcript | None:
        state = self.transcriber._start(job, self.options)
        if isinstance(state, Transcript):
            return state
        self._files[key] = state
        return None

    def transcript(self, key: Hashable) -> Transcript:
        """The transcript of `key`, in flight: the segments of the windows decided so far
        (what `mmseq transcribe --verbose` prints as they come)."""
        return self._files[key].transcript

    def drop(self, key: Hashable) -> None:
        self._files.pop(key, None)

    def step(self) -> list[tuple[Hashable, Transcript]]:
        """One window of every input in flight; the (key, transcript) of those now done."""
        return list(self.iter_step())

    def iter_step(self) -> Iterator[tuple[Hashable, Transcript]]:
        """As `step`, yielding each input as soon as it is done: the windows that share a
        prompt are decoded together, group after group, short inputs' groups first."""
        for _ in self.transcriber._round(list(self._files.values()), self.options, self.progress):
            done = [(key, state.transcript) for key, state in self._files.items() if state.done]
            for key, transcript in done:
                del self._files[key]
                yield key, transcript


@dataclass
class _Job:
    """One input to decode: its samples, or why it has none."""

    name: str
    audio: AudioStream | None
    error: str | None = None
    one_window: bool = False  # a voice-activity chunk of at most one window


def _load(item: AudioInput) -> _Job:
    """Open a path or take an array as a 16 kHz mono stream, or an error naming the input.
    A file is only checked here (header, length); its samples are read when transcribed."""
    name = "<array>" if isinstance(item, np.ndarray) else str(item)
    try:
        return _Job(name, AudioStream(item))
    except (ValueError, OSError) as err:
        return _Job(name, None, str(err))


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


def _clip_frames(clips: tuple[float, ...], content_frames: int) -> list[tuple[int, int]]:
    """Clips in seconds -> mel frames [start, end) within the recording; no clips: all of it."""
    points = [round(t * FRAMES_PER_SECOND) for t in clips] or [0]
    if len(points) % 2:
        points.append(content_frames)
    return [(a, min(b, content_frames)) for a, b in zip(points[::2], points[1::2], strict=True)]


def _main_language(parts: list[Transcript], chunks: list[SpeechChunk]) -> tuple[str, float | None]:
    """The language detected on most of the speech of a file's VAD chunks, and its
    probability: the speech-weighted mean of the chunks' probabilities for it, counting 0 for
    the chunks that detected another (their probability of it is not kept)."""
    speech: dict[str, int] = {}
    weighted: dict[str, float] = {}
    for part, chunk in zip(parts, chunks, strict=True):
        speech[part.language] = speech.get(part.language, 0) + chunk.samples
        p = part.language_probability or 0.0
        weighted[part.language] = weighted.get(part.language, 0.0) + p * chunk.samples
    language = max(speech, key=speech.__getitem__)
    total = sum(speech.values())
    if not total:  # no speech: one empty chunk, its language as given (1.0) or undetected
        return language, parts[0].language_probability
    return language, weighted[language] / total


def _append_on_recording(
    transcript: Transcript, part: Transcript, chunk: SpeechChunk, options: TranscribeOptions
) -> None:
    """Add the segments of a VAD chunk's transcript, their times moved from the chunk (speech
    regions back to back) onto the recording, then tightened to the speech regions
    (`_tighten_in_regions`) unless raw_timestamps. An alignment is placed at the chunk's start:
    its panel shows the regions back to back."""
    offset = chunk.start / SAMPLE_RATE
    for segment in part.segments:
        segment.start = chunk.recording_time(segment.start)
        segment.end = max(segment.start, chunk.recording_time(segment.end, end=True))
        window_start = chunk.recording_time(segment.seek / FRAMES_PER_SECOND)
        segment.seek = round(window_start * FRAMES_PER_SECOND)
        for word in segment.words:
            word.start = round(chunk.recording_time(word.start), 2)
            word.end = round(max(word.start, chunk.recording_time(word.end, end=True)), 2)
        if not options.raw_timestamps:
            _tighten_in_regions(segment, chunk)
            if not options.word_timestamps:
                segment.words = []  # aligned only to be tightened
        segment.id = len(transcript.segments)
        transcript.segments.append(segment)
    transcript.text_tokens.extend(part.text_tokens)
    for alignment in part.alignments:
        alignment.offset += offset
        alignment.speech_time = True
    transcript.alignments.extend(part.alignments)


def _tighten_in_regions(segment: Segment, chunk: SpeechChunk) -> None:
    """A VAD chunk's segment (times on the recording) tightened onto its heard words where
    they and its decoded times fall in different speech regions: a segment decoded across a
    seam runs through the pause between two regions (measured: 78.73-84.43 s for speech at
    78.67-81.35 s, a 3 s pause after it). Within one region, which holds speech since VAD cut
    the silence around it, the wider of the two is kept: the path can start a word late at a
    region's edge (measured: "Please" at 9.47 s, spoken from 9.12 s; decoded: 9.02 s)."""
    decoded = segment.start, segment.end
    tighten_to_words(segment)
    if segment.start == segment.end:
        return  # nothing heard: no duration
    if chunk.region_at(decoded[0]) == chunk.region_at(segment.start):
        segment.start = min(segment.start, decoded[0])
    if chunk.region_at(decoded[1], end=True) == chunk.region_at(segment.end, end=True):
        segment.end = max(segment.end, decoded[1])


def _is_one_input(inputs: AudioInput | Sequence[AudioInput]) -> bool:
    """A path or an array is one input (not a sequence of characters or rows)."""
    return isinstance(inputs, (str, os.PathLike, np.ndarray))


def _with_overrides(
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
    merged = _with_overrides(options, overrides)
    single = _is_one_input(inputs)
    items = [inputs] if single else list(inputs)  # an iterator is read once
    if errors == "raise":
        for item in items:
            if not isinstance(item, np.ndarray):
                check_file(Path(item))
    results = Transcriber(model).transcribe(items, options=merged, errors=errors)
    return results[0] if single else results


__all__ = [
    "AudioLoadError",
    "Segment",
    "Word",
    "TranscribeOptions",
    "Transcriber",
    "Transcript",
    "compression_ratio",
    "transcribe",
]

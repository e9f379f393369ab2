"""Window advancing over one file, as openai-whisper's long-form loop does it: where the next
30 s window starts (seek, clips), what prompts it, and what a decoded window adds to the
transcript (segments, word timings, the silence skipped before invented text).

A file's state (`FileState`) knows nothing of the other files in flight: the engine
(`mmseq.transcription.engine`) decodes many files' windows together and hands each its
`WindowResult` through `advance`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mmseq.data.audio import AudioLoadError
from mmseq.encoders.audio_features import (
    FRAMES_PER_SECOND,
    N_FRAMES,
    SAMPLE_RATE,
    WindowedLogMel,
)
from mmseq.transcription.inputs import Job
from mmseq.transcription.options import TranscribeOptions
from mmseq.transcription.results import Transcript
from mmseq.whisper import Whisper
from mmseq.whisper.decoding import WindowResult
from mmseq.whisper.hallucination import (
    Window,
    last_speech_end,
    skip_silence_before_hallucinations,
)
from mmseq.whisper.segments import Segment, split_sentences, split_window
from mmseq.whisper.timing import align, attach_words, tighten_to_words


@dataclass
class FileState:
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


def start(whisper: Whisper, job: Job, options: TranscribeOptions) -> FileState | Transcript:
    """A job's state before its first window; its finished Transcript instead when it cannot
    be read (`error` set) or has nothing to decode (no clip inside the recording)."""
    if job.audio is None:
        return Transcript(job.name, error=job.error)
    features = whisper.model.encoders["audio"].features
    try:
        mel = WindowedLogMel(features, job.audio)  # reads the whole file a first time
    except AudioLoadError as err:
        return Transcript(job.name, error=str(err))
    transcript = Transcript(job.name, duration=len(job.audio) / SAMPLE_RATE)
    prompt = []
    if options.initial_prompt:
        prompt = whisper.tokenizer.encode(" " + options.initial_prompt.strip())
    one_window = job.one_window and mel.content_frames <= N_FRAMES
    clips = clip_frames(options.clip_timestamps, mel.content_frames)
    # English-only models speak English, whatever `en` was spelled as (None, "english")
    language = options.language if whisper.tokenizer.is_multilingual else "en"
    transcript.language = language or transcript.language
    # given (or English-only): certain, as faster-whisper's 1; else set once detected
    transcript.language_probability = None if language is None else 1.0
    state = FileState(
        transcript,
        mel,
        initial_prompt=prompt,
        all_tokens=list(prompt),
        prompt_room=whisper.model.config.decoder.n_ctx // 2 - 1,
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


def clip_frames(clips: tuple[float, ...], content_frames: int) -> list[tuple[int, int]]:
    """Clips in seconds -> mel frames [start, end) within the recording; no clips: all of it."""
    points = [round(t * FRAMES_PER_SECOND) for t in clips] or [0]
    if len(points) % 2:
        points.append(content_frames)
    return [(a, min(b, content_frames)) for a, b in zip(points[::2], points[1::2], strict=True)]


def advance(
    whisper: Whisper,
    state: FileState,
    result: WindowResult,
    frames: int,
    options: TranscribeOptions,
    states: torch.Tensor,
) -> None:
    """Apply one decoded window (`frames` of audio from `state.seek`, its encoder states
    [1, 1500, D]) to its file: skip silence, or add segments and seek."""
    no_speech = (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and not (
            options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold
        )
    )
    if no_speech:
        state.seek += frames
        return
    tokenizer = whisper.tokenizer
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
        add_words(whisper, state, segments, states, frames, window_start, ended, options)
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
        # tightened on the recording, where its speech regions are (mmseq.transcription.vad)
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


def add_words(
    whisper: Whisper,
    state: FileState,
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
    eot = whisper.tokenizer.eot
    text = [t for s in segments for t in s.tokens if t < eot]
    alignment = align(whisper, states, text, frames, state.language, options.task)
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

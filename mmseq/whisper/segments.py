"""Turn one decoded window into timed segments and decide where the next window starts.

The rules are openai-whisper's: consecutive timestamp tokens close a segment; a window that
ends on a single timestamp had no speech after it, so the next window starts after this one;
otherwise the unfinished last segment is dropped and decoding resumes at its start time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import accumulate

from mmseq.encoders.audio_features import HOP_LENGTH, SAMPLE_RATE
from mmseq.whisper.decoding import WindowResult
from mmseq.whisper.tokenizer import TIME_PRECISION, WhisperTokenizer

FRAMES_PER_TOKEN = 2  # mel frames per encoder position (conv stride), i.e. per 0.02 s


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    """A span of speech. tokens include its timestamp tokens, as openai-whisper's do."""

    start: float
    end: float
    text: str
    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    seek: int = 0  # mel frame where its window started
    id: int = 0
    words: list[Word] = field(default_factory=list)


def split_window(
    result: WindowResult,
    tokenizer: WhisperTokenizer,
    seek: int,
    segment_frames: int,
    keep_unfinished: bool = False,
) -> tuple[list[Segment], int, bool]:
    """Segments of a window that starts at mel frame `seek` and holds `segment_frames` frames
    of audio, the frame where the next window starts, and whether the window ended on a single
    timestamp (nothing spoken after it).

    Text after the last complete segment is normally left for the next window, which starts
    at that segment's end. With keep_unfinished (the window holds all that is left, e.g. a
    voice-activity chunk that ends in silence) it becomes a last segment that ends with the
    window instead, so no audio is decoded twice; a window that ends on a pair of timestamps
    still resumes there."""
    tb = tokenizer.timestamp_begin
    tokens = result.tokens
    is_ts = [t >= tb for t in tokens]
    offset = seek * HOP_LENGTH / SAMPLE_RATE
    window_seconds = segment_frames * HOP_LENGTH / SAMPLE_RATE

    def segment(start: float, end: float, part: list[int]) -> Segment:
        return Segment(
            start=offset + start,
            end=offset + end,
            text=tokenizer.decode(part),
            tokens=part,
            avg_logprob=result.avg_logprob,
            compression_ratio=result.compression_ratio,
            no_speech_prob=result.no_speech_prob,
            temperature=result.temperature,
            seek=seek,
        )

    single_timestamp_ending = is_ts[-2:] == [False, True]
    # a segment ends after each pair of consecutive timestamps
    cuts = [i for i in range(1, len(tokens)) if is_ts[i - 1] and is_ts[i]]
    if not cuts:
        duration = window_seconds
        timestamps = [t for t in tokens if t >= tb]
        if timestamps and timestamps[-1] != tb:
            duration = (timestamps[-1] - tb) * TIME_PRECISION
        return [segment(0.0, duration, tokens)], seek + segment_frames, single_timestamp_ending

    # text after the last pair's second timestamp: the window stopped inside a segment. A window
    # that ends on a pair stopped between segments (e.g. <|18.00|><|18.00|> then EOT, 8 s of
    # speech left): decoding resumes at that timestamp, as openai-whisper's does
    unfinished = keep_unfinished and not single_timestamp_ending and cuts[-1] < len(tokens) - 1
    if single_timestamp_ending:
        cuts.append(len(tokens))
    segments, last = [], 0
    for cut in cuts:
        part = tokens[last:cut]
        segments.append(
            segment((part[0] - tb) * TIME_PRECISION, (part[-1] - tb) * TIME_PRECISION, part)
        )
        last = cut
    if unfinished:
        part = tokens[last:]  # starts with the timestamp after the last pair
        segments.append(segment((part[0] - tb) * TIME_PRECISION, window_seconds, part))
    if single_timestamp_ending or unfinished:
        return segments, seek + segment_frames, single_timestamp_ending
    return segments, seek + (tokens[last - 1] - tb) * FRAMES_PER_TOKEN, False


SENTENCE_END = ".。!！?？"  # openai-whisper's sentence ends (word timing uses them too)
WIDE_SENTENCE_END = ("。", "！", "？")  # CJK: no space follows, and never inside a number


def split_sentences(segment: Segment, tokenizer: WhisperTokenizer) -> list[Segment]:
    """A segment decoded without timestamps, cut after each token that ends a sentence and is
    followed by a word (so "3.5" stays whole; after "。", "！" or "？" any text follows). The
    parts keep the segment's times and scores; word timestamps then move each part's bounds
    onto its words."""
    tokens = segment.tokens
    runs = tokenizer.character_runs(tokens)
    ends = list(accumulate(len(run) for run, _ in runs))
    eot = tokenizer.eot
    cuts = [
        end
        for end, (run, text), (following, following_text) in zip(ends, runs, runs[1:], strict=False)
        if run[0] < eot
        and following[0] < eot
        and (
            text.endswith(WIDE_SENTENCE_END)
            or (text.endswith(tuple(SENTENCE_END)) and following_text.startswith(" "))
        )
    ]
    bounds = [0, *cuts, len(tokens)]
    return [
        replace(segment, text=tokenizer.decode(tokens[a:b]), tokens=tokens[a:b], words=[])
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]

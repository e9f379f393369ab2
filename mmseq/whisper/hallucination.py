"""Skipping the silence before likely hallucinations: openai-whisper's
`hallucination_silence_threshold`, which needs word timestamps.

Whisper tends to invent text in long silences, and such text has tell-tale words: improbable
(p < 0.15), very short (< 0.133 s) or very long (> 2 s). A segment whose first words look like
that and that is surrounded by silence (or by more such segments) is dropped, with everything
after it in the window, and decoding resumes after the silence before it; a window whose first
segment looks like that after a silence starts again where the silence ends. Same rules and
numbers as openai-whisper, so the same windows are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmseq.encoders.audio_features import FRAMES_PER_SECOND, N_FRAMES
from mmseq.whisper.segments import Segment, Word
from mmseq.whisper.timing import (
    APPEND_PUNCTUATION,
    IMPROBABLE,
    LONGEST_HEARD_S,
    PREPEND_PUNCTUATION,
)

# a word that is (a part of) this string is not scored; a substring test, as openai-whisper's
PUNCTUATION = PREPEND_PUNCTUATION + APPEND_PUNCTUATION
NEAR_EDGE_S = 2.0  # a segment this close to the window's start or end counts as at a silence


def word_anomaly(word: Word) -> float:
    """How unlike speech a timed word is: 1 if improbable, plus a penalty when too short or
    too long."""
    duration = word.end - word.start
    score = 1.0 if word.probability < IMPROBABLE else 0.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > LONGEST_HEARD_S:
        score += duration - LONGEST_HEARD_S
    return score


def is_anomalous(segment: Segment | None) -> bool:
    """Whether the first 8 words of a segment (punctuation aside) look invented."""
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w.word not in PUNCTUATION][:8]
    score = sum(word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def last_speech_end(segments: list[Segment]) -> float | None:
    """End of the last word, else of the last segment; None without segments."""
    ends = [w.end for s in segments for w in s.words]
    if ends:
        return ends[-1]
    return segments[-1].end if segments else None


@dataclass
class Window:
    """Where a decoded window lies, in mel frames."""

    seek: int  # its first frame
    frames: int  # frames of audio in it (fewer than N_FRAMES at the end of a file)
    content_frames: int  # frames of the whole recording

    @property
    def start(self) -> float:
        return self.seek / FRAMES_PER_SECOND

    @property
    def end(self) -> float:
        """Where a full window would end, even past the recording (as openai-whisper's)."""
        return (self.seek + N_FRAMES) / FRAMES_PER_SECOND


def skip_silence_before_hallucinations(
    segments: list[Segment],
    window: Window,
    next_seek: int,
    single_ending: bool,
    last_speech: float,
    threshold: float,
) -> tuple[list[Segment], int, bool]:
    """(segments kept, the frame the next window starts at, whether the whole window is to be
    decoded again from after its leading silence, keeping nothing of it).

    segments carry word timings; next_seek is where the next window would start without this
    rule; last_speech is where speech last ended before this window; threshold is the
    shortest silence (s) that is skipped."""
    if not single_ending:  # resume at the last word, unless it is near the window's end
        last_end = last_speech_end(segments)
        if last_end is not None and last_end > window.start:
            if window.end - last_end > threshold:
                next_seek = round(last_end * FRAMES_PER_SECOND)
            else:
                next_seek = window.seek + window.frames

    worded = [s for s in segments if s.words]
    if worded and is_anomalous(worded[0]):
        gap = worded[0].start - window.start
        if gap > threshold:
            return [], window.seek + round(gap * FRAMES_PER_SECOND), True

    previous_end = last_speech
    for i, segment in enumerate(segments):
        if not segment.words:
            continue
        if is_anomalous(segment):
            following = next((s for s in segments[i + 1 :] if s.words), None)
            next_start = (
                following.words[0].start
                if following
                else window.start + window.frames / FRAMES_PER_SECOND
            )
            silence_before = (
                segment.start - previous_end > threshold
                or segment.start < threshold
                or segment.start - window.start < NEAR_EDGE_S
            )
            silence_after = (
                next_start - segment.end > threshold
                or is_anomalous(following)
                or window.end - segment.end < NEAR_EDGE_S
            )
            if silence_before and silence_after:
                next_seek = round(max(window.start + 1, segment.start) * FRAMES_PER_SECOND)
                content_end = window.content_frames / FRAMES_PER_SECOND
                if content_end - segment.end < threshold:
                    next_seek = window.content_frames
                return segments[:i], next_seek, False
        previous_end = segment.end
    return segments, next_seek, False

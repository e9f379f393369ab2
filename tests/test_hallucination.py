"""The rules that skip silence before likely hallucinations (mmseq.whisper.hallucination), on
hand-made segments; their agreement with openai-whisper on real audio is tested in
test_longform.py."""

from __future__ import annotations

import pytest

from mmseq.encoders.audio_features import FRAMES_PER_SECOND
from mmseq.transcription import TranscribeOptions
from mmseq.whisper.hallucination import (
    Window,
    is_anomalous,
    last_speech_end,
    skip_silence_before_hallucinations,
    word_anomaly,
)
from mmseq.whisper.segments import Segment, Word

THRESHOLD = 2.0
WINDOW = Window(seek=3000, frames=3000, content_frames=12000)  # 30-60 s of a 120 s recording


def _words(start: float, count: int, length: float = 0.4, probability: float = 0.9) -> list[Word]:
    return [
        Word(f" w{i}", start + i * length, start + (i + 1) * length, probability)
        for i in range(count)
    ]


def _segment(words: list[Word]) -> Segment:
    return Segment(words[0].start, words[-1].end, "".join(w.word for w in words), [], -0.2, 1.2,
                   0.01, 0.0, words=words)  # fmt: skip


def _invented(start: float) -> Segment:
    """Three improbable, very short words: what Whisper makes up in a silence."""
    return _segment(_words(start, 3, length=0.05, probability=0.05))


@pytest.mark.parametrize(
    ("word", "score"),
    [
        (Word(" fine", 1.0, 1.4, 0.9), 0.0),
        (Word(" unsure", 1.0, 1.4, 0.1), 1.0),
        (Word(" clipped", 1.0, 1.033, 0.9), 1.5),
        (Word(" dragged", 1.0, 4.5, 0.9), 1.5),
        (Word(" both", 1.0, 1.0, 0.01), 1.0 + 0.133 * 15),
    ],
)
def test_word_anomaly(word: Word, score: float) -> None:
    assert word_anomaly(word) == pytest.approx(score)


def test_is_anomalous() -> None:
    assert not is_anomalous(None)
    assert not is_anomalous(_segment(_words(0.0, 10)))
    assert is_anomalous(_invented(0.0))
    # punctuation is not judged; only the first eight words are
    punctuated = _segment([Word(",", 0.0, 0.0, 0.01), *_words(0.0, 2)])
    assert not is_anomalous(punctuated)
    late = _segment(_words(0.0, 8) + _words(4.0, 8, length=0.05, probability=0.01))
    assert not is_anomalous(late)


def test_last_speech_end() -> None:
    assert last_speech_end([]) is None
    speech = _segment(_words(31.0, 3))
    wordless = Segment(40.0, 41.0, " hm", [], -0.2, 1.0, 0.0, 0.0)
    assert last_speech_end([speech, wordless]) == pytest.approx(32.2)
    assert last_speech_end([wordless]) == 41.0


def test_speech_is_kept_and_a_nearly_full_window_moves_to_its_end() -> None:
    segments = [_segment(_words(30.5, 10)), _segment(_words(35.0, 60))]  # ends at 59.0
    kept, seek, again = skip_silence_before_hallucinations(
        segments, WINDOW, 5800, False, 29.0, THRESHOLD
    )
    assert kept == segments and not again
    assert seek == WINDOW.seek + WINDOW.frames  # 1 s left is not worth a window


def test_speech_is_kept_and_the_window_resumes_after_the_last_word() -> None:
    segments = [_segment(_words(30.5, 10))]  # ends at 34.5, 25.5 s before the window's end
    kept, seek, again = skip_silence_before_hallucinations(
        segments, WINDOW, 0, False, 29.0, THRESHOLD
    )
    assert (kept, seek, again) == (segments, round(34.5 * FRAMES_PER_SECOND), False)


def test_invented_text_after_a_leading_silence_restarts_the_window_after_it() -> None:
    segments = [_invented(41.0), _segment(_words(45.0, 5))]
    kept, seek, again = skip_silence_before_hallucinations(
        segments, WINDOW, 4700, False, 29.0, THRESHOLD
    )
    assert kept == [] and again
    assert seek == WINDOW.seek + round(11.0 * FRAMES_PER_SECOND)


def test_invented_text_between_silences_is_cut_with_what_follows() -> None:
    speech = _segment(_words(30.5, 5))  # to 32.5
    segments = [speech, _invented(40.0), _segment(_words(50.0, 3))]
    kept, seek, again = skip_silence_before_hallucinations(
        segments, WINDOW, 5120, False, 29.0, THRESHOLD
    )
    assert kept == [speech] and not again
    assert seek == round(40.0 * FRAMES_PER_SECOND)  # decoded again from the invented text on


def test_invented_text_at_the_recording_end_ends_it() -> None:
    last = Window(seek=9000, frames=3000, content_frames=12000)  # the last 30 s
    speech = _segment(_words(90.5, 5))
    segments = [speech, _invented(119.0)]
    kept, seek, again = skip_silence_before_hallucinations(
        segments, last, 12000, True, 89.0, THRESHOLD
    )
    assert (kept, seek, again) == ([speech], 12000, False)


def test_invented_text_next_to_speech_is_kept() -> None:
    """Surrounded by speech, not by silence: improbable words are not enough."""
    segments = [_segment(_words(30.5, 10)), _invented(34.6), _segment(_words(35.0, 10))]
    kept, _, again = skip_silence_before_hallucinations(
        segments, WINDOW, 3900, False, 29.0, THRESHOLD
    )
    assert kept == segments and not again


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hallucination_silence_threshold": 2.0}, "needs word_timestamps"),
        ({"hallucination_silence_threshold": 0.0, "word_timestamps": True}, "expected seconds > 0"),
    ],
)
def test_bad_threshold_is_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TranscribeOptions(**options)

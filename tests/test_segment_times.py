"""Segment times follow the speech by default, on every path (issue 19, item 7).

openai-whisper's segment times are its timestamp tokens', which run over the silence and noise
around the speech (a first segment 0-25 s for speech that starts at 20 s; text invented over
noise timed over seconds of it). By default mmseq tightens each segment onto the words heard in
it; `raw_timestamps` keeps openai-whisper's times. Tokens and text are the same either way.

The recording is spoken by espeak-ng at test time, with digital silence and Gaussian white
noise around and between the sentences, so where speech is not is known from how it was made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from mmseq.data.synth import espeak_available, speak
from mmseq.data.vad import SpeechChunk
from mmseq.explain import WindowPanel, panel_title, window_panel
from mmseq.transcription import TranscribeOptions, Transcriber, Transcript, _tighten_in_regions
from mmseq.whisper.segments import Segment, Word
from mmseq.whisper.timing import tighten_to_words
from mmseq.writers import to_json, to_srt, to_tsv, to_txt, to_vtt

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # see conftest.py
    pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng"),
]

SR = 16000
MARGIN_S = 0.5  # what a segment may overlap a stretch without speech (issue 19's line)
Stretches = dict[str, tuple[float, float]]


@pytest.fixture(scope="module")
def made() -> tuple[np.ndarray, Stretches]:
    """20 s of digital silence, a sentence, 6 s of silence, 15 s of white noise, a sentence,
    5 s of silence; and where (in seconds) the stretches without speech are. Over this noise
    (std 0.1, seed 3) tiny.en invents text twice on the sequential path (measured: "The meeting
    has been moved to Thursday afternoon." at 31-34 s and 38-42 s, openai-whisper's times)."""
    said = "The meeting has been moved to Thursday afternoon because the manager is away."
    then = "Please remember to water the plants in the garden while we are away."
    pieces: list[tuple[str | None, np.ndarray]] = [
        ("leading silence", np.zeros(20 * SR, np.float32)),
        (None, speak(said)),
        ("middle silence", np.zeros(6 * SR, np.float32)),
        ("noise", np.random.default_rng(3).normal(0, 0.1, 15 * SR).astype(np.float32)),
        (None, speak(then, "en")),
        ("trailing silence", np.zeros(5 * SR, np.float32)),
    ]
    stretches, at = {}, 0
    for name, samples in pieces:
        if name is not None:
            stretches[name] = (at / SR, (at + len(samples)) / SR)
        at += len(samples)
    return np.concatenate([samples for _, samples in pieces]), stretches


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber()


Run = Callable[[TranscribeOptions], Transcript]


@pytest.fixture(scope="module")
def run(transcriber: Transcriber, made: tuple[np.ndarray, Stretches]) -> Run:
    """options -> the recording's transcript, computed once."""
    cache: dict[TranscribeOptions, Transcript] = {}

    def transcribe(options: TranscribeOptions) -> Transcript:
        if options not in cache:
            cache[options] = next(transcriber.iter_transcribe([made[0]], options=options))
        return cache[options]

    return transcribe


DEFAULT = TranscribeOptions()
PATHS = {
    "sequential": DEFAULT,
    "sequential-words": TranscribeOptions(word_timestamps=True),
    "vad": TranscribeOptions(vad=True, keep_alignments=True),  # what --explain asks
    "vad-words": TranscribeOptions(vad=True, word_timestamps=True),
}


def _overlap(span: tuple[float, float], stretch: tuple[float, float]) -> float:
    return min(span[1], stretch[1]) - max(span[0], stretch[0])


_CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)$", re.M)


def _cue_spans(subtitles: str) -> list[tuple[float, float]]:
    """The (start, end) seconds of every cue of an SRT or WebVTT file."""
    spans = []
    for match in _CUE.finditer(subtitles):
        h, m, s, ms, h2, m2, s2, ms2 = map(int, match.groups())
        spans.append((h * 3600 + m * 60 + s + ms / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000))
    return spans


def _output_spans(transcript: Transcript) -> dict[str, list[tuple[float, float]]]:
    """The segment (or cue) times that each timed output format writes."""
    segments = json.loads(to_json(transcript))["segments"]
    rows = [line.split("\t") for line in to_tsv(transcript).splitlines()[1:]]
    return {
        "json": [(s["start"], s["end"]) for s in segments],
        "json words": [(w["start"], w["end"]) for s in segments for w in s.get("words", [])],
        "srt": _cue_spans(to_srt(transcript)),
        "vtt": _cue_spans(to_vtt(transcript)),
        "tsv": [(int(a) / 1000, int(b) / 1000) for a, b, _ in rows],
    }


@pytest.mark.parametrize("options", PATHS.values(), ids=PATHS.keys())
def test_no_output_runs_over_silence_or_noise(run: Run, made, options) -> None:  # noqa: ANN001
    transcript, stretches = run(options), made[1]
    assert transcript.error is None
    assert "manager is away" in transcript.text and "water the plants" in transcript.text
    assert to_txt(transcript).split() == transcript.text.split()
    for output, spans in _output_spans(transcript).items():
        assert spans or output == "json words", output
        for span in spans:
            for name, stretch in stretches.items():
                assert _overlap(span, stretch) <= MARGIN_S, (output, span, name, stretch)


@pytest.mark.parametrize("options", PATHS.values(), ids=PATHS.keys())
def test_tightening_changes_no_token(run: Run, options: TranscribeOptions) -> None:
    tight, raw = run(options), run(replace(options, raw_timestamps=True))
    assert [s.tokens for s in tight.segments] == [s.tokens for s in raw.segments]
    assert [(s.text, s.seek) for s in tight.segments] == [(s.text, s.seek) for s in raw.segments]
    assert tight.tokens == raw.tokens and tight.text == raw.text
    for segment in tight.segments:  # ordered, and the words within their segment
        assert segment.start <= segment.end
        inside = segment.start - 0.01, segment.end + 0.01  # VAD words are rounded to 10 ms
        for word in segment.words:
            assert inside[0] <= word.start <= word.end <= inside[1], (word, segment)
    starts = [s.start for s in tight.segments]
    assert starts == sorted(starts)


@pytest.fixture(scope="module")
def openai_segments(made, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:  # noqa: ANN001
    """openai-whisper's greedy segments of the recording, with the embedded tiny.en weights
    (openai-whisper blanks empty segments, mmseq drops them)."""
    whisper = pytest.importorskip("whisper")
    from mmseq.whisper.checkpoints import load_whisper_checkpoint, save_openai_pt
    from mmseq.whisper.loading import embedded_model_dir

    path = tmp_path_factory.mktemp("openai") / "tiny.en.pt"
    save_openai_pt(load_whisper_checkpoint(embedded_model_dir()), path)
    model = whisper.load_model(str(path), device="cpu")
    result = whisper.transcribe(model, made[0], temperature=0.0, fp16=False, language="en")
    return [s for s in result["segments"] if s["text"].strip()]


GREEDY = TranscribeOptions(temperatures=(0.0,))


def test_raw_timestamps_are_openai_whispers(run: Run, made, openai_segments) -> None:  # noqa: ANN001
    """raw_timestamps keeps openai-whisper's segments and times, which run over the leading
    silence and the noise (what tightening is for)."""
    raw = run(replace(GREEDY, raw_timestamps=True))
    assert [s.tokens for s in raw.segments] == [s["tokens"] for s in openai_segments]
    times = [t for s in openai_segments for t in (s["start"], s["end"])]
    assert [t for s in raw.segments for t in (s.start, s.end)] == pytest.approx(times, abs=1e-6)
    over = [_overlap((s.start, s.end), made[1]["leading silence"]) for s in raw.segments]
    assert max(over) > 15
    assert sum(_overlap((s.start, s.end), made[1]["noise"]) > MARGIN_S for s in raw.segments) >= 2


def test_explain_panels_of_vad_chunks_count_speech(run: Run) -> None:
    """A VAD chunk's panel shows its speech regions back to back: its title says so, and
    gives no end time of the recording."""
    panels = [window_panel(a) for a in run(PATHS["vad"]).alignments]
    assert len(panels) == 2 and all(p.speech_time for p in panels)
    title = panel_title(panels[1], 1, 2)
    assert title.startswith("speech chunk 2 of 2: ") and "s of speech from 45." in title
    window = WindowPanel(30.0, 1500, [])
    assert panel_title(window, 1, 2) == "window 2 of 2: 30.0-60.0 s"


def _segment(start: float, end: float, words: list[tuple[float, float]]) -> Segment:
    timed = [Word(f" w{i}", a, b, 0.9) for i, (a, b) in enumerate(words)]
    return Segment(start, end, "", [], -0.2, 1.0, 0.1, 0.0, words=timed)


def test_tightening_follows_heard_words() -> None:
    """Bounds move onto the words; an edge word stretched over a pause keeps at most twice the
    median word; words that are instantaneous or last over 2 s (invented over noise) time
    nothing, and a segment of such words gets no duration."""
    segment = _segment(0.0, 25.0, [(19.7, 20.0), (20.0, 20.3), (20.3, 20.6), (20.6, 22.0)])
    tighten_to_words(segment)
    assert (segment.start, segment.end) == (19.7, 21.2)
    assert segment.words[-1].end == 21.2
    invented = _segment(31.0, 34.0, [(30.0, 30.0), (30.0, 36.9), (36.9, 36.9), (36.9, 39.5)])
    tighten_to_words(invented)
    assert invented.start == invented.end == 30.0
    assert all(w.start == w.end == 30.0 for w in invented.words)
    unaligned = _segment(1.0, 2.0, [])
    tighten_to_words(unaligned)
    assert (unaligned.start, unaligned.end) == (1.0, 2.0)


def test_vad_segment_stops_at_the_region_its_words_end_in() -> None:
    """The issue's case: a segment decoded across the seam of two speech regions ran through
    the 3 s pause between them (78.73-84.43 s for speech at 78.67-81.35 s). Its words end in
    the first region, so it does too; its start, in the region of its first word, keeps the
    earlier of the decoded and word times."""
    chunk = SpeechChunk(((round(70.0 * SR), round(81.55 * SR)), (round(84.35 * SR), 90 * SR)))
    words = [(78.9 + 0.3 * i, 79.2 + 0.3 * i) for i in range(8)]  # 78.9-81.3 s
    segment = _segment(78.73, 84.43, words)
    _tighten_in_regions(segment, chunk)
    assert (segment.start, segment.end) == pytest.approx((78.73, 81.3))


def test_cli_raw_timestamps_flag() -> None:
    from mmseq.cli import _from_args, build_parser

    parser = build_parser()
    for flags, raw in [([], False), (["--raw-timestamps"], True)]:
        args = parser.parse_args(["transcribe", "talk.wav", *flags])
        assert _from_args(TranscribeOptions, args).raw_timestamps is raw

"""Transcript files (SRT, WebVTT, TSV, TXT, JSON) from a hand-built transcript with awkward text
and times, read back by small parsers written here; then `mmseq transcribe --output-format all`
as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import whisper.utils

from mmseq.transcription import Segment, Transcript, Word
from mmseq.writers import (
    FORMATS,
    SubtitleOptions,
    format_timestamp,
    to_json,
    to_srt,
    to_tsv,
    to_txt,
    to_vtt,
    write_transcript,
)

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"

# (start, end, text): leading spaces, a line break and a tab, a cue arrow, non-ASCII text, a
# half-millisecond, and times past one hour
SEGMENTS = [
    (0.0005, 1.5, "   Hello, world.  "),
    (1.5, 3.0015, " First line\nsecond line\n\nthird\tcolumn"),
    (3.2, 4.0, " a --> b"),
    (4.0, 5.25, " Ünïcödé — 日本語 «quoted» 🎉"),
    (3599.9995, 3725.125, " Over an hour in."),
    (3725.125, 36000.5, " Ten hours."),
]


def _segment(i: int, start: float, end: float, text: str) -> Segment:
    return Segment(
        start=start,
        end=end,
        text=text,
        tokens=[50363, 100 + i, 50363 + i],
        avg_logprob=-0.1 * i,
        compression_ratio=1.0 + i,
        no_speech_prob=0.01 * i,
        temperature=0.2 * (i % 2),
        seek=100 * i,
        id=i,
    )


@pytest.fixture
def transcript() -> Transcript:
    segments = [_segment(i, *spec) for i, spec in enumerate(SEGMENTS)]
    segments[0].words = [Word(" Hello,", 0.0, 0.6, 0.9), Word(" world.", 0.6, 1.5, 0.8)]
    return Transcript("/recordings/talk.v2.flac", segments, duration=36001.0)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_cues(body: str, marker: str, numbered: bool) -> list[tuple[float, float, str]]:
    """Cues separated by blank lines: [index line], `HH:MM:SS<marker>mmm --> ...`, text lines.
    Fails on anything else, so it also validates the layout."""
    stamp = rf"(\d{{2}}):(\d{{2}}):(\d{{2}}){re.escape(marker)}(\d{{3}})"
    assert body.endswith("\n\n")
    cues = []
    for n, block in enumerate(body[:-2].split("\n\n"), start=1):
        lines = block.split("\n")
        if numbered:
            assert lines.pop(0) == str(n), block
        timing = re.fullmatch(f"{stamp} --> {stamp}", lines[0])
        assert timing, block
        text = lines[1:]
        assert text and all(line.strip() and "-->" not in line for line in text), block
        groups = timing.groups()
        cues.append((_seconds(*groups[:4]), _seconds(*groups[4:]), "\n".join(text)))
    return cues


def parse_srt(body: str) -> list[tuple[float, float, str]]:
    return parse_cues(body, ",", numbered=True)


def _expected_cues() -> list[tuple[float, float, str]]:
    return [(s, e, _normalised(t).replace("-->", "->")) for s, e, t in SEGMENTS]


def _assert_cues_match(cues: list[tuple[float, float, str]]) -> None:
    assert len(cues) == len(SEGMENTS)
    for (start, end, text), (s, e, t) in zip(cues, _expected_cues(), strict=True):
        assert abs(start - s) <= 0.001 and abs(end - e) <= 0.001
        assert _normalised(text) == t


def test_srt_round_trip(transcript: Transcript) -> None:
    srt = to_srt(transcript)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,500\nHello, world.\n\n")
    assert "00:59:59,999 --> 01:02:05,125" in srt or "01:00:00,000 --> 01:02:05,125" in srt
    assert "01:02:05,125 --> 10:00:00,500" in srt
    _assert_cues_match(parse_srt(srt))


def test_vtt_round_trip(transcript: Transcript) -> None:
    vtt = to_vtt(transcript)
    assert vtt.startswith("WEBVTT\n\n")
    assert "," not in vtt.replace("Hello, world", "")  # '.' is the decimal marker
    cues = parse_cues(vtt.removeprefix("WEBVTT\n\n"), ".", numbered=False)
    _assert_cues_match(cues)


def test_tsv_has_integer_milliseconds(transcript: Transcript) -> None:
    lines = to_tsv(transcript).splitlines()
    assert lines[0] == "start\tend\ttext"
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == 3 for row in rows)  # the tab inside a text did not add a column
    assert [(int(s), int(e)) for s, e, _ in rows] == [
        (round(1000 * s), round(1000 * e)) for s, e, _ in SEGMENTS
    ]
    assert [text for *_, text in rows] == [t for *_, t in _expected_cues()]


def test_txt_one_line_per_segment_line(transcript: Transcript) -> None:
    expected = [line for _, _, t in SEGMENTS for line in t.strip().split("\n")]
    assert to_txt(transcript).splitlines() == expected
    assert to_txt(Transcript("x")) == ""


def test_json(transcript: Transcript) -> None:
    data = json.loads(to_json(transcript))
    assert data["language"] == "en"
    assert data["text"] == transcript.text == "".join(t for *_, t in SEGMENTS).strip()
    assert len(data["segments"]) == len(SEGMENTS)
    for i, (segment, (start, end, text)) in enumerate(zip(data["segments"], SEGMENTS, strict=True)):
        assert segment["text"] == text
        for written, exact in [(segment["start"], start), (segment["end"], end)]:
            assert written == pytest.approx(exact, abs=0.00051) and written == round(written, 3)
        assert segment["tokens"] == [50363, 100 + i, 50363 + i]
        assert segment["avg_logprob"] == pytest.approx(-0.1 * i)
        assert segment["compression_ratio"] == pytest.approx(1.0 + i)
        assert segment["no_speech_prob"] == pytest.approx(0.01 * i)
        assert segment["temperature"] == pytest.approx(0.2 * (i % 2))
    assert data["segments"][0]["words"] == [
        {"word": " Hello,", "start": 0.0, "end": 0.6, "probability": 0.9},
        {"word": " world.", "start": 0.6, "end": 1.5, "probability": 0.8},
    ]
    assert "words" not in data["segments"][1]
    assert "日本語" in to_json(transcript)  # written as UTF-8, not \u escapes


def test_empty_transcript_files_are_valid() -> None:
    empty = Transcript("silence.wav", duration=60.0)
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n\n"
    assert to_tsv(empty) == "start\tend\ttext\n"
    expected = {"text": "", "segments": [], "language": "en", "language_probability": None}
    assert json.loads(to_json(empty)) == expected


@pytest.mark.parametrize(
    "seconds", [0.0, 0.0005, 0.0015, 0.001, 1.9999, 59.9995, 61.25, 3599.9995, 3600.0, 36000.5]
)
def test_format_timestamp_as_openai(seconds: float) -> None:
    for marker in (",", "."):
        expected = whisper.utils.format_timestamp(seconds, True, marker)
        assert format_timestamp(seconds, marker) == expected


def test_format_timestamp_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_timestamp(-0.001)


def test_write_transcript_paths(tmp_path: Path, transcript: Transcript) -> None:
    out = tmp_path / "new" / "dir"  # created on demand
    written = write_transcript(transcript, out, list(FORMATS))
    assert written == [out / f"talk.v2.{fmt}" for fmt in FORMATS]
    writers = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv, "json": to_json}
    for path, fmt in zip(written, FORMATS, strict=True):
        assert path.read_text(encoding="utf-8") == writers[fmt](transcript)
    array = Transcript("<array>", transcript.segments)
    assert write_transcript(array, out, ["srt"]) == [out / "audio.srt"]


def test_cli_writes_every_format(tmp_path: Path) -> None:
    clip = CLIPS / "clip4_en-m3.flac"
    run = subprocess.run(
        [sys.executable, "-m", "mmseq.cli", "-q", "transcribe", str(clip)]
        + ["--output-format", "all", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    said = "It is going to rain tomorrow, so bring an umbrella to work."
    assert run.stdout == said + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"clip4_en-m3.{f}" for f in FORMATS)
    cues = parse_srt((tmp_path / "clip4_en-m3.srt").read_text(encoding="utf-8"))
    assert " ".join(text for *_, text in cues) == said
    assert all(0 <= start < end <= 4.04 for start, end, _ in cues)
    data = json.loads((tmp_path / "clip4_en-m3.json").read_text(encoding="utf-8"))
    assert data["text"] == said
    times = [t for s in data["segments"] for t in (s["start"], s["end"])]
    assert times == pytest.approx([t for start, end, _ in cues for t in (start, end)], abs=0.001)
    assert (tmp_path / "clip4_en-m3.txt").read_text(encoding="utf-8").split() == said.split()
    tsv = (tmp_path / "clip4_en-m3.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0] == "start\tend\ttext" and len(tsv) == len(cues) + 1
    assert (tmp_path / "clip4_en-m3.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n\n")


def test_output_dir_alone_writes_every_format(tmp_path: Path) -> None:
    from mmseq.cli import main

    clip = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips" / "clip4_en-m3.flac"
    assert main(["-q", "transcribe", str(clip), "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".srt", ".tsv", ".txt", ".vtt"]


# a word-timed transcript: three segments, a 4 s pause before the last, words of every length
WORDED = [
    [(" The", 0.0, 0.2), (" quick", 0.2, 0.5), (" brown", 0.5, 0.9), (" fox", 0.9, 1.2),
     (" jumps", 1.3, 1.7), (" over", 1.7, 2.0), (" the", 2.0, 2.1), (" lazy", 2.1, 2.5),
     (" dog.", 2.5, 3.0)],
    [(" Then", 3.4, 3.6), (" it", 3.6, 3.7), (" naps", 3.7, 4.2), (" in", 4.2, 4.3),
     (" the", 4.3, 4.4), (" extraordinarily", 4.4, 5.4), (" warm", 5.4, 5.8), (" sun.", 5.8, 6.3)],
    [(" Later,", 10.3, 10.8), (" rain.", 10.9, 11.5)],
]  # fmt: skip


@pytest.fixture
def worded() -> Transcript:
    segments = []
    for i, words in enumerate(WORDED):
        segment = _segment(i, words[0][1] - 0.1, words[-1][2] + 0.2, "".join(w for w, *_ in words))
        segment.words = [Word(w, s, e, 0.9) for w, s, e in words]
        segments.append(segment)
    return Transcript("talk.wav", segments)


def _openai_result(t: Transcript) -> dict:
    segments = [
        {"start": s.start, "end": s.end, "text": s.text,
         "words": [{"word": w.word, "start": w.start, "end": w.end} for w in s.words]}
        for s in t.segments
    ]  # fmt: skip
    return {"text": t.text, "segments": segments, "language": "en"}


SUBTITLE_OPTIONS = [
    {},
    {"max_words_per_line": 3},
    {"max_words_per_line": 1},
    {"max_line_width": 16},
    {"max_line_width": 16, "max_line_count": 2},
    {"max_line_width": 42, "max_line_count": 1},
    {"highlight_words": True},
    {"highlight_words": True, "max_words_per_line": 4},
    {"highlight_words": True, "max_line_width": 20, "max_line_count": 2},
]


@pytest.mark.parametrize("options", SUBTITLE_OPTIONS, ids=str)
def test_subtitle_cues_as_openai(tmp_path: Path, worded: Transcript, options: dict) -> None:
    """SRT bytes equal openai-whisper's writer's for the same words and options; VTT has the
    same cues (openai-whisper leaves the hours out of VTT times under an hour)."""
    subtitles = SubtitleOptions(**options)
    for fmt, ours in [("srt", to_srt(worded, subtitles)), ("vtt", to_vtt(worded, subtitles))]:
        whisper.utils.get_writer(fmt, str(tmp_path))(_openai_result(worded), "talk.wav", options)
        reference = (tmp_path / f"talk.{fmt}").read_text(encoding="utf-8")
        if fmt == "srt":
            assert ours == reference
        else:
            reference = re.sub(r"(?m)^(\d\d:\d\d\.\d{3}) --> (\d\d:\d\d\.\d{3})$",
                               r"00:\1 --> 00:\2", reference)  # fmt: skip
            assert ours == reference
    cues = parse_srt(to_srt(worded, subtitles))
    assert cues, "no cues"
    for start, end, text in cues:
        assert start <= end
        if "max_line_width" in options and "highlight_words" not in options:
            assert all(len(line) <= options["max_line_width"] or " " not in line
                       for line in text.split("\n"))  # fmt: skip


def test_word_cues_use_word_times_and_keep_every_word(worded: Transcript) -> None:
    cues = parse_srt(to_srt(worded))
    assert [(start, end) for start, end, _ in cues] == [(0.0, 3.0), (3.4, 6.3), (10.3, 11.5)]
    three = parse_srt(to_srt(worded, SubtitleOptions(max_words_per_line=3)))
    assert [len(text.split()) for *_, text in three] == [3, 3, 3, 3, 3, 2, 2]
    for cut in (three, parse_srt(to_srt(worded, SubtitleOptions(max_line_width=16)))):
        assert " ".join(text.replace("\n", " ") for *_, text in cut) == worded.text


def test_segment_without_words_keeps_its_text(worded: Transcript) -> None:
    worded.segments[1].words = []
    cues = parse_srt(to_srt(worded))
    assert cues[1] == (3.3, 6.5, _normalised(worded.segments[1].text))
    assert len(cues) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_line_width": 0}, "max_line_width: expected a positive number"),
        ({"max_words_per_line": -2}, "max_words_per_line: expected a positive number"),
        ({"max_line_count": 2}, "max_line_count needs max_line_width"),
        ({"max_line_width": 20, "max_words_per_line": 3}, "use one of them"),
    ],
)
def test_subtitle_options_refuse_nonsense(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SubtitleOptions(**options)


def test_cli_subtitle_options(tmp_path: Path) -> None:
    clip = CLIPS / "clip4_en-m3.flac"

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mmseq.cli", "-q", "transcribe", str(clip), *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    refused = run("--max-line-width", "20", "--output-format", "srt")
    assert refused.returncode == 2 and "add --word-timestamps" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = run("--word-timestamps", "--max-words-per-line", "3", "--output-format", "srt",
               "--output-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    cues = parse_srt((tmp_path / "clip4_en-m3.srt").read_text(encoding="utf-8"))
    assert len(cues) >= 4 and all(len(text.split()) <= 3 for *_, text in cues)
    assert " ".join(text for *_, text in cues) == done.stdout.strip()

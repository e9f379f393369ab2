"""Transcript files in openai-whisper's formats: `<output_dir>/<input stem>.<ext>`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from mmseq.serialization import write_text_atomic
from mmseq.transcription import Segment, Transcript, Word

FORMATS = ("txt", "srt", "vtt", "tsv", "json")
CUE_FORMATS = ("srt", "vtt")  # cut by SubtitleOptions


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """12.3456 -> '00:00:12,346' (SRT); with '.', WebVTT's form."""
    if seconds < 0:
        raise ValueError(f"timestamp must be non-negative, got {seconds}")
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _cue_text(text: str) -> str:
    # a blank line would end the cue early in SRT/VTT; "-->" would be read as timing
    return " ".join(text.split()).replace("-->", "->")


@dataclass(frozen=True)
class SubtitleOptions:
    """How a transcript with word timestamps is cut into SRT/VTT cues: openai-whisper's
    `--max_line_width`, `--max_line_count`, `--max_words_per_line`, `--highlight_words`.

    With word timestamps a cue runs from its first word's start to its last word's end (not
    the segment's times); without them a cue is a segment and these options change nothing.
    By default every segment is a cue. max_words_per_line starts a cue every N words of a
    segment; max_line_width wraps lines at N characters, and with max_line_count cues are
    cut every N lines or at a pause over 3 s, whatever the segments. highlight_words repeats
    each cue once per word with that word underlined (`<u>`), karaoke style."""

    max_line_width: int | None = None
    max_line_count: int | None = None
    max_words_per_line: int | None = None
    highlight_words: bool = False

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_line_count", "max_words_per_line"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: expected a positive number, got {value}")
        if self.max_line_count is not None and self.max_line_width is None:
            raise ValueError("max_line_count needs max_line_width (lines of what width?)")
        if self.max_words_per_line is not None and self.max_line_width is not None:
            raise ValueError("max_words_per_line and max_line_width: use one of them")


Cue = tuple[float, float, str]  # start, end (seconds), text


def subtitle_cues(t: Transcript, options: SubtitleOptions | None = None) -> list[Cue]:
    """The cues of an SRT or VTT file, with the same cuts and text as openai-whisper's writers.
    A segment without words in a word-timed transcript becomes one cue of its own."""
    options = options or SubtitleOptions()
    if not any(s.words for s in t.segments):
        return [(s.start, s.end, _cue_text(s.text)) for s in t.segments]
    cues: list[Cue] = []
    for words in _word_cues(t.segments, options):
        text = "".join(w.word for w in words)
        if not options.highlight_words:
            cues.append((words[0].start, words[-1].end, text))
            continue
        shown = words[0].start  # end of what has been shown so far
        for i, word in enumerate(words):
            if _ms(shown) != _ms(word.start):  # a gap before this word: the plain cue
                cues.append((shown, word.start, text))
            underlined = "".join(
                _underline(w.word) if j == i else w.word for j, w in enumerate(words)
            )
            cues.append((word.start, word.end, underlined))
            shown = word.end
    return cues


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _underline(word: str) -> str:
    text = word.lstrip()
    return f"{word[: len(word) - len(text)]}<u>{text}</u>"


def _word_cues(segments: list[Segment], options: SubtitleOptions) -> Iterator[list[Word]]:
    """Group the words into cues, a line break ("\n") before the first word of a new line."""
    keep_segments = options.max_line_count is None or options.max_line_width is None
    width = options.max_line_width or 1000
    per_chunk = options.max_words_per_line or 1000
    cue: list[Word] = []
    line_len, lines = 0, 1
    words = [_cue_words(s) for s in segments]
    last_start = next(w.start for ws in words for w in ws)
    for segment_words in words:
        for index, word in enumerate(segment_words):
            text = word.word
            pause = not keep_segments and word.start - last_start > 3.0
            new_chunk = keep_segments and index % per_chunk == 0 and bool(cue)
            if line_len > 0 and line_len + len(text) <= width and not pause and not new_chunk:
                line_len += len(text)
            else:
                text = text.strip()
                full = options.max_line_count is not None and (
                    pause or lines >= options.max_line_count
                )
                if new_chunk or (cue and full):
                    yield cue
                    cue, lines = [], 1
                elif line_len > 0:
                    lines += 1
                    text = "\n" + text
                line_len = len(text.strip())
            cue.append(Word(text, word.start, word.end, word.probability))
            last_start = word.start
    if cue:
        yield cue


def _cue_words(segment: Segment) -> list[Word]:
    """A segment's words, each made safe for a cue line; a segment without words (its text
    could not be aligned) is one word, so that no text is lost."""
    if not segment.words:
        text = _cue_text(segment.text)
        return [Word(" " + text, segment.start, segment.end, 1.0)] if text else []
    return [Word(_safe_word(w.word), w.start, w.end, w.probability) for w in segment.words]


def _safe_word(word: str) -> str:
    # keep the leading space that separates words; nothing inside may break the cue
    inner = _cue_text(word)
    return (" " + inner) if word[:1].isspace() and inner else inner


def to_txt(t: Transcript) -> str:
    return "".join(s.text.strip() + "\n" for s in t.segments)


def to_srt(t: Transcript, options: SubtitleOptions | None = None) -> str:
    return "".join(
        f"{i}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n\n"
        for i, (start, end, text) in enumerate(subtitle_cues(t, options), start=1)
    )


def to_vtt(t: Transcript, options: SubtitleOptions | None = None) -> str:
    cues = "".join(
        f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n\n"
        for start, end, text in subtitle_cues(t, options)
    )
    return "WEBVTT\n\n" + cues


def to_tsv(t: Transcript) -> str:
    """Milliseconds, as openai-whisper's TSV."""
    rows = (
        f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_cue_text(s.text)}\n" for s in t.segments
    )
    return "start\tend\ttext\n" + "".join(rows)


def to_json(t: Transcript) -> str:
    segments = []
    for s in t.segments:
        segment = asdict(s)
        segment["start"], segment["end"] = round(s.start, 3), round(s.end, 3)
        if not s.words:
            del segment["words"]
        segments.append(segment)
    data = {
        "text": t.text,
        "segments": segments,
        "language": t.language,
        "language_probability": t.language_probability,  # faster-whisper's info field
    }
    return json.dumps(data, ensure_ascii=False, indent=1)


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "json": to_json,
}


def write_transcript(
    transcript: Transcript,
    output_dir: Path,
    formats: list[str],
    subtitles: SubtitleOptions | None = None,
) -> list[Path]:
    """Write each format as `<output_dir>/<stem>.<ext>`, atomically (complete or not at all);
    returns the paths written. subtitles: how SRT and VTT cues are cut (word-timed
    transcripts)."""
    stem = Path(transcript.source).stem if transcript.source != "<array>" else "audio"
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = output_dir / f"{stem}.{fmt}"
        writer = partial(WRITERS[fmt], options=subtitles) if fmt in CUE_FORMATS else WRITERS[fmt]
        write_text_atomic(path, writer(transcript))
        written.append(path)
    return written

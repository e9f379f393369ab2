"""Transcript files in openai-whisper's formats: `<output_dir>/<input stem>.<ext>`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from mmseq.transcribe import Transcript

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


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


def to_txt(t: Transcript) -> str:
    return "".join(s.text.strip() + "\n" for s in t.segments)


def to_srt(t: Transcript) -> str:
    return "".join(
        f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_cue_text(s.text)}\n\n"
        for i, s in enumerate(t.segments, start=1)
    )


def to_vtt(t: Transcript) -> str:
    cues = "".join(
        f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n"
        f"{_cue_text(s.text)}\n\n"
        for s in t.segments
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
    data = {"text": t.text, "segments": segments, "language": t.language}
    return json.dumps(data, ensure_ascii=False, indent=1)


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
    "json": to_json,
}


def write_transcript(transcript: Transcript, output_dir: Path, formats: list[str]) -> list[Path]:
    """Write each format as `<output_dir>/<stem>.<ext>`; returns the paths written."""
    stem = Path(transcript.source).stem if transcript.source != "<array>" else "audio"
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = output_dir / f"{stem}.{fmt}"
        path.write_text(WRITERS[fmt](transcript), encoding="utf-8")
        written.append(path)
    return written

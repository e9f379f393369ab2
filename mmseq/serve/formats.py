"""Transcripts in OpenAI's response shapes: json, text, srt, vtt, verbose_json and the
server-sent events of `stream=true` (what the OpenAI SDKs parse)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from mmseq.serve.languages import language_name
from mmseq.transcription import Transcript
from mmseq.writers import to_srt, to_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")


def usage(t: Transcript) -> dict[str, Any]:
    """OpenAI bills audio by the second, rounded up."""
    return {"type": "duration", "seconds": math.ceil(t.duration)}


def as_json(t: Transcript) -> dict[str, Any]:
    return {"text": t.text, "usage": usage(t)}


def as_verbose_json(t: Transcript, task: str, granularities: tuple[str, ...]) -> dict[str, Any]:
    """segments unless only words were asked for; words only when asked for."""
    body: dict[str, Any] = {
        "task": task,
        "language": "english" if task == "translate" else language_name(t.language),
        "duration": round(t.duration, 3),
        "text": t.text,
    }
    if "segment" in granularities or "word" not in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in t.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in t.segments
            for w in s.words
        ]
    body["usage"] = usage(t)
    return body


def as_text(t: Transcript, response_format: str) -> str:
    """text, srt or vtt: the body as OpenAI sends it."""
    if response_format == "srt":
        return to_srt(t)
    if response_format == "vtt":
        return to_vtt(t)
    return t.text + "\n"


def deltas(t: Transcript) -> list[str]:
    """The text, one piece per segment, such that the pieces join to exactly `t.text`."""
    pieces = [s.text for s in t.segments]
    if not pieces:
        return []
    pieces[0] = pieces[0].lstrip()
    pieces[-1] = pieces[-1].rstrip()
    joined = "".join(pieces)
    if joined != t.text:  # whitespace inside a segment's edges: send the text whole
        return [t.text]
    return [p for p in pieces if p]


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def stream_events(t: Transcript) -> Iterator[bytes]:
    """transcript.text.delta events, one transcript.text.done, then [DONE]."""
    for piece in deltas(t):
        yield sse({"type": "transcript.text.delta", "delta": piece})
    yield sse({"type": "transcript.text.done", "text": t.text, "usage": usage(t)})
    yield sse("[DONE]")

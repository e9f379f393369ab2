"""What a transcription returns: one `Transcript` an input, made of Whisper's `Segment`s and
`Word`s (re-exported here, where users of transcripts look for them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmseq.whisper.segments import Segment, Word
from mmseq.whisper.timing import Alignment


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


__all__ = ["Segment", "Transcript", "Word"]

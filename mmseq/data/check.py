"""`mmseq data check`: every bad row of speech, caption and text-pair manifests, without training.

Rows are read by the functions the datasets read them with (`read_speech_manifest`,
`read_caption_manifest`, `read_text_pairs`), with every audio and image header checked as
``skip_bad=True`` checks them, so what is reported here is what training would refuse at
start-up (or skip with `skip_bad`). One rule is added: a transcript, caption or target longer
than `max_tokens` (the training collator would cut it to the decoder's context).

Audio and images are not decoded, only their headers read, so 10,000 rows take seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mmseq.data.errors import DataError
from mmseq.data.manifest import (
    BadEntry,
    Rejects,
    decode_line,
    parse_json_object,
    read_lines,
    where,
)
from mmseq.data.speech import SpeechEntry, read_speech_manifest
from mmseq.data.text_pairs import DELIMITERS, TextPair, read_text_pairs
from mmseq.terminal import for_stream

if TYPE_CHECKING:  # mmseq.data.captions is imported for caption manifests only (torchvision)
    from mmseq.data.captions import CaptionEntry

    Entry = SpeechEntry | CaptionEntry | TextPair

KINDS = ("speech", "caption", "text")
# The field that tells a JSON-lines manifest's kind, in the order they are looked for.
KIND_FIELDS = {
    "audio_filepath": "speech",
    "image_filepath": "caption",
    "source": "text",
    "target": "text",
}
SNIFF_LINES = 50  # JSON lines looked at for a field that tells the kind
DEFAULT_MAX_TOKENS = 448  # the decoder's default n_ctx (mmseq.decoder.DecoderConfig)

Counter = Callable[[Sequence[str]], list[int]]


@dataclass
class ManifestReport:
    """What `check_manifest` found in one manifest. `bad` holds ``(line, message)`` sorted by
    line (0: the manifest as a whole); counts are over the good rows."""

    path: Path
    kind: str | None = None
    rows: int = 0  # non-blank lines, a TSV/CSV header excluded
    blank: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    unit: str = "word"  # what `tokens` counts: "token" with a tokenizer
    seconds: float = 0.0  # speech: the manifest's durations
    images: int = 0  # caption: distinct image files
    captions: int = 0
    tokens: int = 0  # transcripts, captions or targets
    source_tokens: int = 0  # text pairs

    def summary(self) -> str:
        parts = [_plural(self.rows, "row"), f"{len(self.bad)} bad"]
        if self.blank:
            parts.append(f"{_plural(self.blank, 'blank line')} skipped")
        if self.kind == "speech":
            hours = f"{self.seconds / 3600:.2f} h ({self.seconds:.1f} s) of audio"
            parts += [hours, f"{_plural(self.tokens, self.unit)} of transcripts"]
        elif self.kind == "caption":
            parts += [_plural(self.images, "image"), _plural(self.captions, "caption")]
            parts.append(f"{_plural(self.tokens, self.unit)} of captions")
        else:
            parts.append(f"{self.source_tokens} source and {self.tokens} target {self.unit}s")
        return f"{self.path}: {self.kind} manifest: {', '.join(parts)}"


def check_manifest(
    path: str | Path,
    kind: str | None = None,
    count: Counter | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> ManifestReport:
    """Every bad row of one manifest, and what the good ones hold.

    Args:
        kind: "speech", "caption" or "text"; None: told by the fields (`detect_kind`).
        count: texts -> their lengths in tokens (`token_counter`); None: whitespace words.
        max_tokens: longest transcript, caption or target (None or 0: no limit).
    """
    report = ManifestReport(Path(path), unit="word" if count is None else "token")
    count = count or _word_counts
    try:
        report.kind = kind or detect_kind(report.path)
        rejects = Rejects(skip_bad=True)  # collect every bad row; never raises
        entries = _read(report.path, report.kind, rejects)
        report.blank = _blank_lines(report.path)
    except DataError as exc:  # the manifest as a whole: missing, unreadable, unknown format
        report.bad = [(0, str(exc))]
        return report
    report.rows = len(entries) + len(rejects.skipped)
    if report.rows == 0:
        report.bad = [(0, f"{report.path}: no rows (training stops with 'no usable entries')")]
        return report
    too_long = _too_long(report.path, entries, count, max_tokens, report.unit)
    report.bad = sorted([*rejects.skipped, *too_long], key=lambda bad: bad[0])
    bad_lines = {line for line, _ in too_long}
    _summarise(report, [e for e in entries if e.line not in bad_lines], count)
    return report


def detect_kind(path: Path) -> str:
    """The kind of manifest at `path`: text pairs for TSV and CSV; for JSON lines, the kind
    that the fields of its first rows name."""
    if path.suffix.lower() in DELIMITERS:
        return "text"
    number = -1
    for number, (_, raw) in enumerate(read_lines(path)):
        if number == SNIFF_LINES:
            break
        try:
            record = parse_json_object(decode_line(raw))
        except BadEntry:
            continue
        for name, kind in KIND_FIELDS.items():
            if name in record:
                return kind
    if number == -1:
        raise DataError(f"{path}: no rows (training stops with 'no usable entries')")
    raise DataError(
        f"{path}: cannot tell the manifest's kind: no row among its first {SNIFF_LINES} has "
        "'audio_filepath' (speech), 'image_filepath' (caption) or 'source'/'target' (text "
        f"pairs); pass --kind ({', '.join(KINDS)})"
    )


def token_counter(spec: str) -> Counter:
    """Token counts by a tokenizer (a tokenizer.json, `whisper`, ...: see `load_tokenizer`)."""
    from mmseq.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(spec)
    return lambda texts: [len(ids) for ids in tokenizer.encode_batch(texts)] if texts else []


def run_check(
    paths: Sequence[str | Path],
    kind: str | None = None,
    tokenizer: str | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    out: TextIO | None = None,
) -> int:
    """`mmseq data check`: print each manifest's bad rows and summary; 1 if any row is bad."""
    out = out or sys.stdout
    if max_tokens is not None and max_tokens < 0:
        raise ValueError(
            f"--max-tokens: expected a number of tokens >= 0 (0: no limit), got {max_tokens}"
        )
    count = None if tokenizer is None else token_counter(tokenizer)
    n_bad = 0
    for path in paths:
        report = check_manifest(path, kind, count, max_tokens)
        for _, message in report.bad:  # rows quote the manifest: escaped on a terminal
            print(for_stream(message, out), file=out)
        if report.kind is not None:  # else the manifest as a whole failed: said above
            print(for_stream(report.summary(), out), file=out)
        n_bad += len(report.bad)
    if n_bad:
        print(f"{_plural(n_bad, 'bad row')} in {_plural(len(paths), 'manifest')}", file=out)
    return 1 if n_bad else 0


def _read(path: Path, kind: str, rejects: Rejects) -> Sequence[Entry]:
    if kind == "speech":
        return read_speech_manifest(path, rejects, read_headers=True)
    if kind == "caption":
        from mmseq.data.captions import read_caption_manifest

        return read_caption_manifest(path, rejects, read_headers=True)
    if kind == "text":
        return read_text_pairs(path, rejects)
    raise DataError(f"{path}: unknown manifest kind '{kind}'; expected one of {', '.join(KINDS)}")


def _targets(entry: Entry) -> list[tuple[str, str]]:
    """(field name, text) of what the decoder is trained to write."""
    if isinstance(entry, SpeechEntry):
        return [("text", entry.text)]
    if isinstance(entry, TextPair):
        return [("target", entry.target)]
    if len(entry.captions) == 1:
        return [("caption", entry.captions[0])]
    return [(f"captions[{i}]", text) for i, text in enumerate(entry.captions)]


def _too_long(
    path: Path, entries: Sequence[Entry], count: Counter, max_tokens: int | None, unit: str
) -> list[tuple[int, str]]:
    if not max_tokens:
        return []
    targets = [(entry, name, text) for entry in entries for name, text in _targets(entry)]
    lengths = count([text for _, _, text in targets])
    bad: dict[int, str] = {}
    for (entry, name, _), n in zip(targets, lengths, strict=True):
        if n > max_tokens and entry.line not in bad:
            bad[entry.line] = (
                f"{where(path, entry.line)}: field '{name}' is over-long: {_plural(n, unit)} > "
                f"--max-tokens {max_tokens} (the decoder's context; training would cut it short)"
            )
    return list(bad.items())


def _summarise(report: ManifestReport, entries: Sequence[Entry], count: Counter) -> None:
    targets = [text for entry in entries for _, text in _targets(entry)]
    report.tokens = sum(count(targets))
    if report.kind == "speech":
        report.seconds = sum(entry.duration for entry in entries)
    elif report.kind == "caption":
        report.images = len({entry.path for entry in entries})
        report.captions = sum(len(entry.captions) for entry in entries)
    else:
        report.source_tokens = sum(count([entry.source for entry in entries]))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _word_counts(texts: Sequence[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def _blank_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for raw in f if not raw.strip())

"""Speech datasets: NeMo-style JSON-lines manifests and the LibriSpeech folder layout.

Items are ``{"id": str, "audio": Tensor float32 [samples] (mono, `sample_rate`), "text": str}``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from mmseq.data.audio import AudioLoadError, load_audio
from mmseq.data.errors import DataError
from mmseq.data.manifest import (
    BadEntry,
    EntryDataset,
    Rejects,
    UniqueIds,
    decode_line,
    duration_value,
    field,
    optional_id,
    parse_json_object,
    read_lines,
    resolve_file,
    text_value,
    where,
)

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ("audio_filepath", "duration", "text")


@dataclass(frozen=True)
class SpeechEntry:
    id: str
    path: Path
    text: str
    duration: float  # seconds
    location: str  # "manifest, line N": named by errors raised when the audio is decoded
    line: int


class _SpeechDataset(EntryDataset):
    """Entries plus decoding; subclasses fill `entries` and `rejects`."""

    entries: list[SpeechEntry]
    rejects: Rejects
    sample_rate: int
    filtered: list[tuple[int, str]]

    def __getitem__(self, index: int) -> dict[str, object]:
        entry = self.entries[index]
        try:
            audio = load_audio(entry.path, self.sample_rate)
        except AudioLoadError as exc:
            raise DataError(f"{entry.location}: {exc}") from exc
        return {"id": entry.id, "audio": torch.from_numpy(audio), "text": entry.text}

    def costs(self) -> list[float]:
        """Seconds of audio per item (from the manifest or the file header), for bucketing."""
        return [entry.duration for entry in self.entries]

    def _keep(self, entry: SpeechEntry, max_duration: float | None) -> None:
        if max_duration is not None and entry.duration > max_duration:
            self.filtered.append(
                (
                    entry.line,
                    f"{entry.location}: {entry.duration:.2f} s > max_duration {max_duration}",
                )
            )
        else:
            self.entries.append(entry)

    def _finish(self, source: str | os.PathLike, max_duration: float | None) -> None:
        if self.filtered:
            # Asked for, so not an error; logged so that a wrong threshold is noticed.
            log.warning(
                "%s: left out %d utterance(s) longer than max_duration=%s s",
                source,
                len(self.filtered),
                max_duration,
            )
        self.rejects.report(source, len(self.entries) + len(self.filtered))
        if not self.entries:
            raise DataError(f"{source}: every utterance is longer than max_duration={max_duration}")


class SpeechManifestDataset(_SpeechDataset):
    """Utterances listed in a NeMo-style JSON-lines manifest, one object per line:
    ``{"audio_filepath": "clips/a.wav", "duration": 3.2, "text": "hello there"}`` (an optional
    ``"id"`` names the item, else the audio path as written).

    Relative paths resolve against the manifest's folder. The manifest is checked when the
    dataset is built (see `read_speech_manifest`): JSON, fields, empty transcripts, duplicate
    ids, files that are missing, empty or have no readable audio header, paths leaving the
    manifest's folder: a run stops at start-up, not hours in. With ``skip_bad=True`` bad lines
    are skipped (see `skipped`); otherwise one `DataError` lists them. Audio whose header reads
    but whose samples fail to decode later raises `DataError` naming the manifest line.

    Args:
        max_duration: leave out utterances longer than this many seconds (listed in
            `filtered` and logged).
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        sample_rate: int = 16000,
        skip_bad: bool = False,
        max_duration: float | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        self.manifest = Path(manifest)
        self.sample_rate = sample_rate
        self.rejects = Rejects(skip_bad)
        self.entries, self.filtered = [], []
        rows = read_speech_manifest(self.manifest, self.rejects, allow_outside_root, True)
        for entry in rows:
            self._keep(entry, max_duration)
        self._finish(self.manifest, max_duration)


def read_speech_manifest(
    manifest: Path, rejects: Rejects, allow_outside_root: bool = False, read_headers: bool = False
) -> list[SpeechEntry]:
    """The usable lines of a NeMo-style manifest; the others go to `rejects`. The rules of
    `SpeechManifestDataset` and of `mmseq data check`.

    Args:
        read_headers: also read each audio file's header (`check_audio`).
    """
    entries: list[SpeechEntry] = []
    ids = UniqueIds()
    for line, raw in read_lines(manifest):
        location = where(manifest, line)
        with rejects.guard(location, line):
            record = parse_json_object(decode_line(raw))
            value = field(record, "audio_filepath", MANIFEST_FIELDS)
            duration = duration_value(field(record, "duration", MANIFEST_FIELDS))
            text = text_value(field(record, "text", MANIFEST_FIELDS), "text")
            item_id = optional_id(record, value)
            path = resolve_file(value, manifest.parent, "audio_filepath", allow_outside_root)
            if read_headers:
                try:
                    check_audio(path)
                except BadEntry as exc:
                    raise BadEntry(f"audio_filepath '{value}': {exc}") from None
            ids.add(item_id, line)
            entries.append(SpeechEntry(item_id, path, text, duration, location, line))
    return entries


class LibriSpeechDataset(_SpeechDataset):
    """A LibriSpeech split laid out as `torchaudio.datasets.LIBRISPEECH` expects, without
    downloading: ``root/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` (lines
    ``<utterance id> <TRANSCRIPT>``) beside ``<utterance id>.flac``. ``root/LibriSpeech/<split>``
    (torchaudio's `folder_in_archive`) is found too.

    Durations come from each FLAC's header, read when the dataset is built. Errors name the
    transcript file and line; `skip_bad` and `max_duration` work as in `SpeechManifestDataset`.
    Transcripts are kept as written (upper case).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        sample_rate: int = 16000,
        skip_bad: bool = False,
        max_duration: float | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        self.folder = _split_folder(Path(root), split)
        self.sample_rate = sample_rate
        self.rejects = Rejects(skip_bad)
        self.entries, self.filtered = [], []
        transcripts = sorted(self.folder.glob("*/*/*.trans.txt"))
        if not transcripts:
            raise DataError(
                f"{self.folder}: no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt files"
            )
        for transcript in transcripts:
            for line, raw in read_lines(transcript):
                location = where(transcript, line)
                with self.rejects.guard(location, line):
                    text = decode_line(raw)
                    entry = self._entry(text, transcript, location, line, allow_outside_root)
                    self._keep(entry, max_duration)
        self._finish(self.folder, max_duration)

    def _entry(
        self, text: str, transcript: Path, location: str, line: int, allow_outside_root: bool
    ) -> SpeechEntry:
        utterance, _, words = text.strip().partition(" ")
        if not words.strip():
            raise BadEntry(f"empty transcript for utterance '{utterance}'")
        audio = resolve_file(
            str(transcript.parent / f"{utterance}.flac"), self.folder, "audio", allow_outside_root
        )
        duration = check_audio(audio)
        return SpeechEntry(utterance, audio, words.strip(), duration, location, line)


def _split_folder(root: Path, split: str) -> Path:
    for folder in (root / split, root / "LibriSpeech" / split):
        if folder.is_dir():
            return folder
    raise DataError(
        f"{root}: no LibriSpeech split '{split}' (looked for {root / split} and "
        f"{root / 'LibriSpeech' / split})"
    )


def check_audio(path: Path) -> float:
    """Seconds of audio in `path`, from its header; `BadEntry` if it is not readable audio."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        # Not a format libsndfile knows (e.g. m4a): decode it as training would, via ffmpeg.
        try:
            return len(load_audio(path)) / 16000
        except AudioLoadError as exc:
            raise BadEntry(str(exc)) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise BadEntry(f"{path}: audio file has no samples")
    return info.frames / info.samplerate

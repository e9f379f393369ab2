"""The Whisper model behind /v1/audio: requests' files checked, then transcribed in batches.

A batch's requests that share their options go through one `Transcriber.transcribe` call,
whose engine encodes one 30 s window of every file per round and decodes together the windows
that share a prompt; that changes no token (tests/test_serve.py checks a request's text alone
and batched). Requests with other options (word timestamps, prompt, temperature, task) are
transcribed in turn. The batch runs until its longest file is done: requests that arrive
meanwhile wait for the next batch (joining between windows is not done yet).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mmseq.data.audio import AudioStream
from mmseq.encoders.audio_features import SAMPLE_RATE
from mmseq.transcription import TranscribeOptions, Transcriber, Transcript


class AudioError(ValueError):
    """A request's file is not audio that can be decoded."""


@dataclass(frozen=True)
class SpeechJob:
    path: str
    options: TranscribeOptions


class SpeechModel:
    def __init__(self, transcriber: Transcriber, name: str) -> None:
        self.transcriber, self.name = transcriber, name

    @classmethod
    def load(cls, model: str, device: str = "cpu", compute_type: str = "float32") -> SpeechModel:
        return cls(Transcriber(model, device=device, compute_type=compute_type), model_id(model))

    @property
    def multilingual(self) -> bool:
        return self.transcriber.whisper.tokenizer.is_multilingual

    def check(self, options: TranscribeOptions) -> None:
        """Raise ValueError for what the model cannot do (a language it lacks), before any
        file is read."""
        self.transcriber.iter_transcribe([], options)

    def probe(self, path: str | os.PathLike) -> float:
        """The recording's duration in seconds, from its header; AudioError if it is not audio."""
        try:
            return len(AudioStream(path)) / SAMPLE_RATE
        except (ValueError, OSError) as err:
            raise AudioError(str(err)) from None

    def warmup(self) -> None:
        """Decode one second of silence, so the first request does not pay for first calls."""
        self.transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32))

    def run_batch(self, jobs: Sequence[SpeechJob]) -> list[Transcript | Exception]:
        results: list[Transcript | Exception] = [AudioError("not transcribed")] * len(jobs)
        groups: dict[TranscribeOptions, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.options, []).append(i)
        for options, rows in groups.items():
            batched = replace(options, batch_size=max(options.batch_size, len(rows)))
            try:
                transcripts = self.transcriber.transcribe([jobs[i].path for i in rows], batched)
            except Exception as err:  # noqa: BLE001 - this group's requests fail, not others
                transcripts = [err] * len(rows)
            for i, transcript in zip(rows, transcripts, strict=True):
                if isinstance(transcript, Transcript) and transcript.error:
                    transcript = AudioError(transcript.error)
                results[i] = transcript
        return results


def model_id(model: str) -> str:
    """'tiny.en' -> 'tiny.en'; a path -> its last part ('/ckpt/whisper-base' -> 'whisper-base')."""
    return os.path.basename(os.path.normpath(str(model))) or str(model)

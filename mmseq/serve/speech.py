"""The Whisper model behind /v1/audio: requests' files checked, then transcribed in batches.

`SpeechWorker` keeps one `LiveBatch` per set of request options (prompt, temperature, word
timestamps, task, language): each step encodes the current 30 s window of every request in
flight and decodes together the windows that share a prompt, which changes no token
(tests/test_serve.py checks a request's text alone and batched). Requests join and leave
between steps, so a short file never waits for a long one to finish; one whose client left,
or whose time budget ran out, is dropped at the next step. Requests with `chunking_strategy`
auto (voice activity, `--vad`) run whole through `Transcriber.transcribe`, between steps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mmseq.data.audio import AudioStream
from mmseq.encoders.audio_features import SAMPLE_RATE
from mmseq.loading import load_as
from mmseq.serve.workers import Queued, QueuedWorker, settle
from mmseq.transcription import LiveBatch, TranscribeOptions, Transcriber, Transcript


class AudioError(ValueError):
    """A request's file is not audio that can be decoded."""


class RequestTimeout(Exception):
    """A request ran past its time budget (answered 504)."""


@dataclass(frozen=True)
class SpeechJob:
    """deadline: `time.monotonic()` by which the transcript must be done (None: no limit)."""

    path: str
    options: TranscribeOptions
    deadline: float | None = None


class SpeechModel:
    def __init__(self, transcriber: Transcriber, name: str) -> None:
        self.transcriber, self.name = transcriber, name

    @classmethod
    def load(cls, model: str, device: str = "cpu", compute_type: str = "float32") -> SpeechModel:
        transcriber = load_as(
            Transcriber, model, "--model", device=device, compute_type=compute_type
        )  # a Whisper name or checkpoint, or a fine-tuned Whisper .ckpt / mmseq folder
        return cls(transcriber, model_id(model))

    @property
    def multilingual(self) -> bool:
        return self.transcriber.whisper.tokenizer.is_multilingual

    def check(self, options: TranscribeOptions) -> None:
        """Raise ValueError for what the model cannot do (a language it lacks), before any
        file is read."""
        self.transcriber.iter_transcribe([], options=options)

    def probe(self, path: str | os.PathLike) -> float:
        """The recording's duration in seconds, from its header; AudioError if it is not audio."""
        try:
            return len(AudioStream(path)) / SAMPLE_RATE
        except (ValueError, OSError) as err:
            raise AudioError(str(err)) from None

    def warmup(self) -> None:
        """Decode one second of silence, so the first request does not pay for first calls."""
        self.transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32))

    def live(self, options: TranscribeOptions) -> LiveBatch:
        """Requests in flight with these options, joining and leaving between windows."""
        return self.transcriber.live(options)

    def run_batch(self, jobs: Sequence[SpeechJob]) -> list[Transcript | Exception]:
        results: list[Transcript | Exception] = [AudioError("not transcribed")] * len(jobs)
        groups: dict[TranscribeOptions, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.options, []).append(i)
        for options, rows in groups.items():
            batched = replace(options, batch_size=max(options.batch_size, len(rows)))
            try:
                paths = [jobs[i].path for i in rows]  # a bad file fails its request only
                transcripts = self.transcriber.transcribe(paths, options=batched, errors="collect")
            except Exception as err:  # noqa: BLE001 - this group's requests fail, not others
                transcripts = [err] * len(rows)
            for i, transcript in zip(rows, transcripts, strict=True):
                if isinstance(transcript, Transcript):
                    transcript = _checked(transcript)
                results[i] = transcript
        return results


class SpeechWorker(QueuedWorker):
    """The thread that owns the speech model: requests join the `LiveBatch` of their options
    whenever fewer than `batch_size` are in flight, and each step advances every one of them
    by a window (on_batch reports the requests per step)."""

    def __init__(self, model: SpeechModel, batch_size: int, max_queue: int, **hooks) -> None:
        self.model = model
        self._owners: dict[int, Queued] = {}  # id(item) -> item, for every request in flight
        super().__init__(model.name, batch_size, max_queue, **hooks)

    @property
    def in_flight(self) -> int:
        """Requests being transcribed (not counting those waiting in the queue)."""
        return len(self._owners)

    def _loop(self) -> None:
        groups: dict[TranscribeOptions, LiveBatch] = {}
        owners = self._owners
        stopped = False
        while not (stopped and not owners):
            if not stopped:
                room = self.batch_size - len(owners)
                items, stopped = self._take(room, block=not owners) if room > 0 else ([], False)
                for item in items:
                    self._admit(item, groups, owners)
            for options, live in list(groups.items()):
                if live:
                    self._step(live, owners)
                if not live:
                    del groups[options]
            self._drop_abandoned(groups, owners)

    def _admit(self, item: Queued, groups: dict, owners: dict) -> None:
        job: SpeechJob = item.job
        if _late(job):  # its budget ran out in the queue
            settle(item.future, RequestTimeout(_LATE))
            return
        if job.options.vad:  # whole, now: its chunks are batched inside transcribe
            started = time.perf_counter()
            settle(item.future, self.model.run_batch([job])[0])
            self._timed(1, started)
            return
        live = groups.get(job.options)
        try:
            if live is None:
                live = groups[job.options] = self.model.live(job.options)
            done = live.add(id(item), job.path)
        except Exception as err:  # noqa: BLE001 - this request fails, not the others
            settle(item.future, err)
            return
        if done is None:
            owners[id(item)] = item
        else:
            settle(item.future, _checked(done))

    def _step(self, live: LiveBatch, owners: dict) -> None:
        """A window of every request of `live`; each answered as soon as its prompt group is
        decoded (short requests' groups first)."""
        started = time.perf_counter()
        size = len(live)
        try:
            for key, transcript in live.iter_step():
                settle(owners.pop(key).future, _checked(transcript))
        except Exception as err:  # noqa: BLE001 - the requests of this group fail
            for key in [k for k in owners if k in live]:
                live.drop(key)
                settle(owners.pop(key).future, err)
            return
        self._timed(size, started)

    def _drop_abandoned(self, groups: dict, owners: dict) -> None:
        """Requests whose client left (Future cancelled) or whose deadline passed."""
        for key, item in list(owners.items()):
            late = _late(item.job)
            if not (item.future.cancelled() or late):
                continue
            for live in groups.values():
                live.drop(key)
            del owners[key]
            if late:
                settle(item.future, RequestTimeout(_LATE))


_LATE = "the transcription ran past its time budget"


def _late(job: SpeechJob) -> bool:
    return job.deadline is not None and time.monotonic() > job.deadline


def _checked(transcript: Transcript) -> Transcript | AudioError:
    return AudioError(transcript.error) if transcript.error else transcript


def model_id(model: str) -> str:
    """'tiny.en' -> 'tiny.en'; a path -> its last part ('/ckpt/whisper-base' -> 'whisper-base')."""
    return os.path.basename(os.path.normpath(str(model))) or str(model)

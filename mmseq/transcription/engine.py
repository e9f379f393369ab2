"""The batched step engine: files in flight together, one 30 s window of each a round.

A round encodes the current window of every file in flight, detects the language of files
on their first window (multilingual models), decodes together the windows that share a
language and prompt, and hands each result to its file (`mmseq.transcription.windows`).
Files join and leave between rounds (`LiveBatch`); what a file is batched with changes no
token of its transcript.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from mmseq.encoders.audio_features import FRAMES_PER_SECOND
from mmseq.transcription.inputs import AudioInput, Job, load
from mmseq.transcription.options import TranscribeOptions, check_language
from mmseq.transcription.results import Transcript
from mmseq.transcription.windows import FileState, advance, start
from mmseq.whisper import Whisper
from mmseq.whisper.decoding import decode_windows, detect_language

if TYPE_CHECKING:  # the package's front end, which imports this module
    from mmseq.transcription import Transcriber


class LiveBatch:
    """Inputs in flight together, which join and leave between windows.

    `add` starts an input (and returns its Transcript at once if it cannot be read or has
    nothing to decode); `step` encodes the current 30 s window of every input in flight,
    decodes together the windows that share a prompt, and returns the inputs that are done;
    `drop` forgets one (its client left). An input's transcript is the one `transcribe` gives
    it alone: what it is batched with changes no token. `Transcriber.transcribe` runs on one
    of these; `mmseq serve` keeps one per set of options and lets requests join at any step,
    so a short file never waits for a long one to finish. Whole inputs only: `vad` options
    (chunks cut by voice activity) go through `transcribe`.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        options: TranscribeOptions,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        check_language(transcriber.whisper.tokenizer, options)
        self.transcriber, self.options, self.progress = transcriber, options, progress
        self._files: dict[Hashable, FileState] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._files

    def add(self, key: Hashable, item: AudioInput) -> Transcript | None:
        """Start transcribing `item` (a path or a 16 kHz array) under `key`; None once it is
        in flight, or its finished Transcript (`error` set if unreadable)."""
        if self.options.vad:
            raise ValueError("LiveBatch transcribes whole inputs: vad options need transcribe")
        if key in self._files:
            raise ValueError(f"LiveBatch: {key!r} is already in flight")
        return self.add_job(key, load(item))

    def add_job(self, key: Hashable, job: Job) -> Transcript | None:
        state = start(self.transcriber.whisper, job, self.options)
        if isinstance(state, Transcript):
            return state
        self._files[key] = state
        return None

    def transcript(self, key: Hashable) -> Transcript:
        """The transcript of `key`, in flight: the segments of the windows decided so far
        (what `mmseq transcribe --verbose` prints as they come)."""
        return self._files[key].transcript

    def drop(self, key: Hashable) -> None:
        self._files.pop(key, None)

    def step(self) -> list[tuple[Hashable, Transcript]]:
        """One window of every input in flight; the (key, transcript) of those now done."""
        return list(self.iter_step())

    def iter_step(self) -> Iterator[tuple[Hashable, Transcript]]:
        """As `step`, yielding each input as soon as it is done: the windows that share a
        prompt are decoded together, group after group, short inputs' groups first."""
        whisper = self.transcriber.whisper
        for _ in decode_round(whisper, list(self._files.values()), self.options, self.progress):
            done = [(key, state.transcript) for key, state in self._files.items() if state.done]
            for key, transcript in done:
                del self._files[key]
                yield key, transcript


def transcribe_jobs(
    transcriber: Transcriber,
    jobs: Iterator[Job],
    options: TranscribeOptions,
    progress: Callable[[float], None] | None,
) -> Iterator[Transcript]:
    """Up to batch_size inputs are in flight (a `LiveBatch` keyed by input index); each
    round encodes one window of each and decodes together the windows that share a
    prompt. Yields in input order."""
    pending = enumerate(jobs)
    live = LiveBatch(transcriber, options, progress)
    finished: dict[int, Transcript] = {}
    next_out = 0
    while True:
        while len(live) < options.batch_size:
            item = next(pending, None)
            if item is None:
                break
            done = live.add_job(*item)
            if done is not None:
                finished[item[0]] = done
        while next_out in finished:
            yield finished.pop(next_out)
            next_out += 1
        if not live:
            return
        finished.update(live.step())


@torch.inference_mode()
def decode_round(
    whisper: Whisper,
    active: list[FileState],
    options: TranscribeOptions,
    progress: Callable[[float], None] | None,
) -> Iterator[None]:
    """Encode the current window of every active file, then decode by shared prompt,
    yielding after each prompt group. The group whose files have the least audio left
    goes first, so that a short file that just joined is done without waiting for the
    windows of long ones (the order of the groups changes no token)."""
    sizes = [s.window_frames for s in active]
    mels = torch.stack([s.mel.window(s.seek, n) for s, n in zip(active, sizes, strict=True)])
    states = encode(whisper, mels.to(whisper.device))
    undetected = [i for i, state in enumerate(active) if state.language is None]
    if undetected:  # the first window of a file, on a multilingual model
        detect_languages(whisper, [active[i] for i in undetected], states[undetected])
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for i, state in enumerate(active):
        groups.setdefault((state.language, state.prompt), []).append(i)
    decoding = options.decoding()

    def audio_left(rows: list[int]) -> int:
        return min(active[i].mel.content_frames - active[i].seek for i in rows)

    for (language, prompt), rows in sorted(groups.items(), key=lambda g: audio_left(g[1])):
        results = decode_windows(
            whisper, states[rows], prompt, replace(decoding, language=language)
        )
        for i, result in zip(rows, results, strict=True):
            before = active[i].seek
            advance(whisper, active[i], result, sizes[i], options, states[i : i + 1])
            active[i].enter_clip()
            if progress:
                done = min(active[i].seek, active[i].mel.content_frames) - before
                progress(done / FRAMES_PER_SECOND)
        yield


def detect_languages(whisper: Whisper, files: list[FileState], states: torch.Tensor) -> None:
    """Set each file's language from its first window's encoder states [B, S, D], or
    from its `detection_mel` where that was kept (encoded here). A VAD chunk is detected
    on the window it decodes."""
    for k, state in enumerate(files):
        if state.detection_mel is not None:
            mel = state.detection_mel[None].to(whisper.device)
            states[k] = encode(whisper, mel)[0]
            state.detection_mel = None
    languages, probs = detect_language(whisper, states)
    for state, language, p in zip(files, languages, probs.amax(-1).tolist(), strict=True):
        state.language = state.transcript.language = language
        state.transcript.language_probability = p  # of the most probable: `language`


def encode(whisper: Whisper, mels: torch.Tensor) -> torch.Tensor:
    """log-mel windows [B, n_mels, 3000] -> encoder states [B, 1500, D].

    On the CPU one 30 s window already fills the matrix multiplies (1500 rows), so the
    windows are encoded one at a time: as fast as a batch (tiny.en, 2 threads: 8 windows
    2.56 s one by one, 2.72 s as a batch) with the activation memory of one window, so the
    peak memory does not grow with the batch size. Accelerators get the whole batch."""
    model = whisper.model
    if mels.device.type != "cpu":
        return model.encode("audio", mels).states
    return torch.cat([model.encode("audio", mel[None]).states for mel in mels])

"""The voice-activity path (`vad=True`): only the speech Silero VAD finds is transcribed.

Each file's speech is packed into chunks of up to 30 s of speech (`SpeechChunk`), decoded by
the engine as independent inputs of one window each (no conditioning across chunks), then
put back on the file's timeline: times moved from the chunk (speech regions back to back)
onto the recording, and the file's language chosen by the speech each chunk detected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from mmseq.data.audio import AudioLoadError, AudioStream
from mmseq.data.vad import SpeechChunk, speech_chunks
from mmseq.encoders.audio_features import FRAMES_PER_SECOND, SAMPLE_RATE, ForwardReader
from mmseq.transcription.engine import transcribe_jobs
from mmseq.transcription.inputs import Job
from mmseq.transcription.options import TranscribeOptions
from mmseq.transcription.results import Segment, Transcript
from mmseq.whisper.timing import tighten_to_words

if TYPE_CHECKING:  # the package's front end, which imports this module
    from mmseq.transcription import Transcriber


def transcribe_speech(
    transcriber: Transcriber,
    jobs: Iterator[Job],
    options: TranscribeOptions,
    progress: Callable[[float], None] | None,
) -> Iterator[Transcript]:
    """The batched path: only the speech found by VAD is transcribed, packed into chunks
    of up to 30 s of speech (`SpeechChunk`) that are decoded as independent inputs of one
    window each (no conditioning across chunks), then put back on the file's timeline. A
    file without speech still passes one empty chunk, to keep the order. Each file is read
    twice: for voice activity, then for the chunks' samples. Yields in input order."""
    files: deque[tuple[Job, list[SpeechChunk]]] = deque()

    def chunk_jobs() -> Iterator[Job]:
        for job in jobs:
            chunks: list[SpeechChunk] = []
            if job.audio is not None:
                try:
                    chunks = speech_chunks(job.audio, options.vad_options) or [
                        SpeechChunk(((0, 0),))
                    ]
                except AudioLoadError as err:  # found while reading the file
                    job = Job(job.name, None, str(err))
            files.append((job, chunks))
            if job.audio is None:
                yield job
                continue
            reader = ForwardReader(job.audio.blocks())
            for chunk in chunks:
                samples = [reader.read(start, end).numpy() for start, end in chunk.regions]
                yield Job(job.name, AudioStream(np.concatenate(samples)), one_window=True)

    results = transcribe_jobs(transcriber, chunk_jobs(), options, progress)
    for first in results:
        job, chunks = files.popleft()
        if job.audio is None:
            yield first
            continue
        transcript = Transcript(job.name, duration=len(job.audio) / SAMPLE_RATE)
        parts = [first, *(next(results) for _ in chunks[1:])]
        for chunk, part in zip(chunks, parts, strict=True):
            _append_on_recording(transcript, part, chunk, options)
        transcript.language, transcript.language_probability = _main_language(parts, chunks)
        if progress:
            progress(transcript.duration - sum(c.samples for c in chunks) / SAMPLE_RATE)
        yield transcript


def _main_language(parts: list[Transcript], chunks: list[SpeechChunk]) -> tuple[str, float | None]:
    """The language detected on most of the speech of a file's VAD chunks, and its
    probability: the speech-weighted mean of the chunks' probabilities for it, counting 0 for
    the chunks that detected another (their probability of it is not kept)."""
    speech: dict[str, int] = {}
    weighted: dict[str, float] = {}
    for part, chunk in zip(parts, chunks, strict=True):
        speech[part.language] = speech.get(part.language, 0) + chunk.samples
        p = part.language_probability or 0.0
        weighted[part.language] = weighted.get(part.language, 0.0) + p * chunk.samples
    language = max(speech, key=speech.__getitem__)
    total = sum(speech.values())
    if not total:  # no speech: one empty chunk, its language as given (1.0) or undetected
        return language, parts[0].language_probability
    return language, weighted[language] / total


def _append_on_recording(
    transcript: Transcript, part: Transcript, chunk: SpeechChunk, options: TranscribeOptions
) -> None:
    """Add the segments of a VAD chunk's transcript, their times moved from the chunk (speech
    regions back to back) onto the recording, then tightened to the speech regions
    (`_tighten_in_regions`) unless raw_timestamps. An alignment is placed at the chunk's start:
    its panel shows the regions back to back."""
    offset = chunk.start / SAMPLE_RATE
    for segment in part.segments:
        segment.start = chunk.recording_time(segment.start)
        segment.end = max(segment.start, chunk.recording_time(segment.end, end=True))
        window_start = chunk.recording_time(segment.seek / FRAMES_PER_SECOND)
        segment.seek = round(window_start * FRAMES_PER_SECOND)
        for word in segment.words:
            word.start = round(chunk.recording_time(word.start), 2)
            word.end = round(max(word.start, chunk.recording_time(word.end, end=True)), 2)
        if not options.raw_timestamps:
            _tighten_in_regions(segment, chunk)
            if not options.word_timestamps:
                segment.words = []  # aligned only to be tightened
        segment.id = len(transcript.segments)
        transcript.segments.append(segment)
    transcript.text_tokens.extend(part.text_tokens)
    for alignment in part.alignments:
        alignment.offset += offset
        alignment.speech_time = True
    transcript.alignments.extend(part.alignments)


def _tighten_in_regions(segment: Segment, chunk: SpeechChunk) -> None:
    """A VAD chunk's segment (times on the recording) tightened onto its heard words where
    they and its decoded times fall in different speech regions: a segment decoded across a
    seam runs through the pause between two regions (measured: 78.73-84.43 s for speech at
    78.67-81.35 s, a 3 s pause after it). Within one region, which holds speech since VAD cut
    the silence around it, the wider of the two is kept: the path can start a word late at a
    region's edge (measured: "Please" at 9.47 s, spoken from 9.12 s; decoded: 9.02 s)."""
    decoded = segment.start, segment.end
    tighten_to_words(segment)
    if segment.start == segment.end:
        return  # nothing heard: no duration
    if chunk.region_at(decoded[0]) == chunk.region_at(segment.start):
        segment.start = min(segment.start, decoded[0])
    if chunk.region_at(decoded[1], end=True) == chunk.region_at(segment.end, end=True):
        segment.end = max(segment.end, decoded[1])

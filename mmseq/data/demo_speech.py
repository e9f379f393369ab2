"""The speech part of the demo data: sentences spoken by espeak-ng in several voices.

Training and validation clips use `TRAIN_VOICES`; test clips use `TEST_VOICES` (other accents
and other voice variants), and every split has its own sentences, so the test split measures
generalisation to unseen speakers and text. Speaking rates vary over `WORDS_PER_MINUTE`.
Transcripts are the sentences as written (case and punctuation kept): they hold only words
espeak-ng reads as written (`mmseq.data.sentences`), and WER evaluation normalises case and
punctuation.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from mmseq.data.synth import SAMPLE_RATE, speak
from mmseq.serialization import atomic_path

TRAIN_VOICES = tuple(
    f"{voice}{variant}"
    for voice in ("en-us", "en", "en-gb-scotland", "en-029")
    for variant in ("", "+m3", "+f2", "+m1", "+f4")
)
TEST_VOICES = tuple(
    f"{voice}{variant}"
    for voice in ("en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
    for variant in ("", "+m2", "+f3", "+f5")
)
WORDS_PER_MINUTE = (130, 190)


def plan_clips(
    split: str, sentences: Sequence[str], voices: Sequence[str], seed: int
) -> list[dict]:
    """One clip per sentence, each with a seeded random voice and speaking rate:
    [{"audio_filepath": "wavs/<split>_00000.wav", "text", "voice", "wpm"}, ...]."""
    rng = random.Random(f"{seed}/speech/{split}")
    return [
        {
            "audio_filepath": f"wavs/{split}_{i:05d}.wav",
            "text": text,
            "voice": rng.choice(voices),
            "wpm": rng.randint(*WORDS_PER_MINUTE),
        }
        for i, text in enumerate(sentences)
    ]


def synthesize(
    clips: list[dict],
    folder: Path,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[dict]:
    """Speak each planned clip into `folder` (16 kHz mono 16-bit WAV) and return the NeMo
    manifest rows {"audio_filepath", "duration" (seconds), "text", "voice", "wpm"}.

    espeak-ng runs as a subprocess, so threads keep `workers` cores busy.
    """
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    workers = workers or min(4, os.cpu_count() or 1)

    def one(clip: dict) -> dict:
        audio = speak(clip["text"], clip["voice"], clip["wpm"])
        # made durable with the rest of the part, before its stamp (mmseq.data.demo)
        with atomic_path(folder / clip["audio_filepath"], durable=False) as tmp:
            sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        if on_done is not None:
            on_done()
        return {
            "audio_filepath": clip["audio_filepath"],
            "duration": round(len(audio) / SAMPLE_RATE, 4),
            "text": clip["text"],
            "voice": clip["voice"],
            "wpm": clip["wpm"],
        }

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, clips))

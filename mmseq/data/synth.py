"""Synthetic speech with espeak-ng: demo data, test fixtures and benchmark recordings that need
no download. espeak-ng is a Debian/Homebrew package (`apt-get install espeak-ng`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmseq.data.audio import load_audio

SAMPLE_RATE = 16000


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> np.ndarray:
    """`text` spoken by espeak-ng -> float32 mono samples at 16 kHz."""
    if not espeak_available():
        raise RuntimeError(
            "espeak-ng is not installed; install it (e.g. `apt-get install espeak-ng`)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return load_audio(wav, SAMPLE_RATE)


def recording(
    parts: Sequence[str | float],
    voices: Sequence[str] = ("en-us", "en", "en-us+f3", "en+m3"),
    noise_level: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A long recording: each str part is spoken (voices in turn), each float part is that many
    seconds of silence; noise_level adds Gaussian noise of that standard deviation throughout."""
    pieces, voice = [], 0
    for part in parts:
        if isinstance(part, str):
            pieces.append(speak(part, voices[voice % len(voices)]))
            voice += 1
        else:
            pieces.append(np.zeros(round(part * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if noise_level:
        rng = np.random.default_rng(seed)
        audio = audio + rng.normal(0, noise_level, audio.shape).astype(np.float32)
    return audio

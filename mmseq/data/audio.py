"""Reading audio files into the float32 mono waveforms the audio encoder expects."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioLoadError(ValueError):
    """An audio file could not be turned into a waveform; the message names file and cause."""


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as a float32 mono waveform at `sample_rate`.

    `sample_rate` defaults to Whisper's 16 kHz (the literal mirrors the audio encoder's
    `SAMPLE_RATE`, which cannot be imported here without a cycle).

    Returns:
        (n_samples,) float32 array, roughly in [-1, 1]; channels are averaged.

    Raises:
        AudioLoadError: the file is missing, a directory, empty, not decodable audio,
            truncated, or holds NaN/inf samples.
    """
    path = Path(path)
    _check_file(path)
    audio, rate = _decode(path)  # (n_samples, n_channels) float32
    if audio.shape[0] == 0:
        raise AudioLoadError(f"{path}: audio file has no samples")
    if not np.isfinite(audio).all():
        raise AudioLoadError(f"{path}: audio contains NaN or infinite samples")
    mono = audio.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioLoadError(f"{path}: audio file does not exist")
    if path.is_dir():
        raise AudioLoadError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"{path}: audio file is empty (0 bytes)")


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(n_samples, n_channels) float32 samples and the sample rate."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as sf_error:
        # libsndfile knows neither the container nor the codec: try librosa's audioread
        # backend (ffmpeg and friends) before giving up.
        return _decode_fallback(path, sf_error)
    expected = info.frames
    try:
        # always_2d: mono and multi-channel files come back with the same layout.
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioLoadError(f"{path}: unreadable or corrupt audio ({exc})") from exc
    # libsndfile quietly returns the samples it finds in a file that was cut short, so compare
    # with what the header promised.
    if audio.shape[0] < expected:
        raise AudioLoadError(
            f"{path}: truncated audio: header declares {expected} frames, file holds "
            f"{audio.shape[0]}"
        )
    if info.format in ("WAV", "WAVEX"):
        _check_riff_length(path)
    return audio, rate


def _check_riff_length(path: Path) -> None:
    """Fail when a RIFF/WAVE `data` chunk declares more bytes than the file holds.

    libsndfile shrinks its frame count to fit a truncated WAV, so only the chunk header tells.
    """
    with path.open("rb") as f:
        header = f.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := f.read(8):
            if len(chunk) < 8:
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                available = path.stat().st_size - f.tell()
                # 0 and 0xFFFFFFFF mark streamed WAVs whose length was never filled in.
                if size not in (0, 0xFFFFFFFF) and size > available:
                    raise AudioLoadError(
                        f"{path}: truncated WAV: data chunk declares {size} bytes, "
                        f"file holds {available}"
                    )
                return
            f.seek(size + (size & 1), 1)  # chunks are padded to an even size


def _decode_fallback(path: Path, sf_error: Exception) -> tuple[np.ndarray, int]:
    import librosa  # imported lazily: slow to import and rarely needed

    try:
        with warnings.catch_warnings():
            # librosa warns "PySoundFile failed. Trying audioread instead."; we know.
            warnings.simplefilter("ignore")
            audio, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # audioread raises several unrelated exception types
        raise AudioLoadError(
            f"{path}: not a readable audio file (soundfile: {sf_error}; audioread: {exc!r})"
        ) from exc
    audio = np.atleast_2d(audio).T  # librosa gives (n_channels, n_samples)
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)

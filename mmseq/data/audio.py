"""Reading audio files into the float32 mono waveforms the audio encoder expects.

`AudioStream` reads a file block by block (mono, resampled on the fly), so that transcribing a
recording holds a few seconds of it rather than all of it; `load_audio` reads the whole file
through the same stream.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

BLOCK_FRAMES = 1 << 17  # samples per block of a stream (8 s at 16 kHz)


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
    stream = AudioStream(path, sample_rate)
    return np.concatenate([np.zeros(0, np.float32), *stream.blocks()])


class AudioStream:
    """A recording as float32 mono samples at `sample_rate`, delivered block by block.

    `len(stream)` is known when it is opened; each call to `blocks()` is a new pass from the
    start that holds one block of the file (plus a few samples of resampling context), so a
    caller that keeps only what it needs has memory that does not grow with the recording.
    Channels are averaged per frame; other rates are resampled as by
    `torchaudio.functional.resample` of the whole file (see `StreamingResampler`).

    Files libsndfile cannot read (AAC/M4A and others, through librosa's audioread fallback) are
    decoded whole when opened: their stream holds the whole waveform, as does a stream made from
    samples already in memory (a 1-D array, taken to be at `sample_rate`; not copied).

    Raises AudioLoadError: when made, for a missing, empty, unknown or cut WAV file, or an array
    that is not 1-D or holds NaN/inf; while read, for a file found corrupt, truncated or
    holding NaN/inf samples.
    """

    def __init__(self, source: str | os.PathLike | np.ndarray, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.path: Path | None = None
        self._samples: np.ndarray | None = None  # the whole waveform, when held in memory
        if isinstance(source, np.ndarray):
            self._samples = _checked_samples(source, sample_rate)
            self._length = len(self._samples)
            return
        self.path = Path(source)
        _check_file(self.path)
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError) as sf_error:
            # libsndfile knows neither the container nor the codec: try librosa's audioread
            # backend (ffmpeg and friends) before giving up.
            self._samples = _decode_fallback(self.path, sf_error, sample_rate)
            self._length = len(self._samples)
            return
        if info.frames == 0:
            raise AudioLoadError(f"{self.path}: audio file has no samples")
        if info.format in ("WAV", "WAVEX"):
            _check_riff_length(self.path)
        self._file_rate, self._file_frames = info.samplerate, info.frames
        self._length = resampled_length(info.frames, info.samplerate, sample_rate)

    def __len__(self) -> int:
        return self._length

    def blocks(self) -> Iterator[np.ndarray]:
        """(n,) float32 blocks, in order, that add up to len(self) samples."""
        if self._samples is not None:
            for start in range(0, len(self._samples), BLOCK_FRAMES):
                yield self._samples[start : start + BLOCK_FRAMES]
            return
        resample, block_frames = None, BLOCK_FRAMES
        if self._file_rate != self.sample_rate:
            resample = StreamingResampler(self._file_rate, self.sample_rate)
            block_frames = resample.in_samples  # BLOCK_FRAMES out, one block behind
        frames = 0
        with self._open() as file:
            while len(block := self._read(file, block_frames)):
                frames += len(block)
                if not np.isfinite(block).all():
                    raise AudioLoadError(f"{self.path}: audio contains NaN or infinite samples")
                mono = block.mean(axis=1, dtype=np.float32)
                if len(out := resample.push(mono) if resample else mono):
                    yield out
        # libsndfile quietly returns the samples it finds in a file that was cut short, so
        # compare with what the header promised.
        if frames < self._file_frames:
            raise AudioLoadError(
                f"{self.path}: truncated audio: header declares {self._file_frames} frames, "
                f"file holds {frames}"
            )
        if resample:
            yield resample.flush()

    def _open(self) -> sf.SoundFile:
        try:
            return sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioLoadError(f"{self.path}: unreadable or corrupt audio ({exc})") from exc

    def _read(self, file: sf.SoundFile, frames: int) -> np.ndarray:
        """The next block -> (n, n_channels) float32; n is 0 at the end."""
        try:
            # always_2d: mono and multi-channel files come back with the same layout
            return file.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioLoadError(f"{self.path}: unreadable or corrupt audio ({exc})") from exc


def resampled_length(n_samples: int, orig_freq: int, new_freq: int) -> int:
    """Samples in torchaudio's resampling of n_samples: ceil(n_samples * new / orig)."""
    return -(-n_samples * new_freq // orig_freq)


class StreamingResampler:
    """`torchaudio.functional.resample` of a signal that arrives in pieces: the samples of
    resampling the whole signal at once (up to float rounding: within 3e-7 for signals in
    [-1, 1], as the convolution runs on other lengths), holding a few seconds of input.

    torchaudio resamples with a strided convolution. With orig/new reduced by their gcd, output
    block b (new samples from b * new on) depends only on the input samples
    [b * orig - width, (b + 1) * orig + width), zero outside the signal. So `step` blocks at a
    time are resampled from their input plus `context` blocks on each side (zeros before the
    start), and the output of the context is dropped. Every call but the last has the same
    shape: oneDNN keeps a compiled convolution per input shape, and varied shapes made the
    memory of an hour-long 44.1 kHz file grow by 120 MB.
    """

    LOWPASS_FILTER_WIDTH, ROLLOFF = 6, 0.99  # torchaudio's defaults, which load_audio uses

    def __init__(self, orig_freq: int, new_freq: int, out_samples: int = BLOCK_FRAMES) -> None:
        self.orig_freq, self.new_freq = orig_freq, new_freq
        gcd = math.gcd(orig_freq, new_freq)
        self.orig, self.new = orig_freq // gcd, new_freq // gcd
        # torchaudio's filter half-width, in input samples
        width = math.ceil(
            self.LOWPASS_FILTER_WIDTH * self.orig / (min(self.orig, self.new) * self.ROLLOFF)
        )
        self.context = math.ceil(width / self.orig)  # in blocks of `orig` input samples
        self.step = -(-out_samples // self.new)  # blocks per call: out_samples or a few more
        self.in_samples = self.step * self.orig  # input per call; pushes of it return as much
        # the input from `context` blocks before the first block not yet output; zeros before
        # the signal, as torchaudio pads
        self.held = np.zeros(self.context * self.orig, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Take the next input samples -> the output samples that are now final."""
        self.held = np.concatenate([self.held, samples])
        out = []
        piece = (2 * self.context + self.step) * self.orig
        while len(self.held) >= piece:
            y = self._resample(self.held[:piece])
            out.append(y[self.context * self.new : (self.context + self.step) * self.new])
            self.held = self.held[self.step * self.orig :]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """The input has ended -> the rest of the output (zeros past the end, as torchaudio).
        Called once, last."""
        # the outputs of the context come first, then exactly the ones left (torchaudio keeps
        # ceil(new * n_input / orig) in all)
        return self._resample(self.held)[self.context * self.new :]

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        return AF.resample(torch.from_numpy(samples), self.orig_freq, self.new_freq).numpy()


def _checked_samples(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim != 1:
        raise AudioLoadError(
            f"<array>: expected mono {sample_rate // 1000} kHz samples [S], got {samples.shape}"
        )
    if not np.isfinite(samples).all():
        raise AudioLoadError("<array>: audio contains NaN or infinite samples")
    return samples


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioLoadError(f"{path}: audio file does not exist")
    if path.is_dir():
        raise AudioLoadError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioLoadError(f"{path}: audio file is empty (0 bytes)")


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


def _decode_fallback(path: Path, sf_error: Exception, sample_rate: int) -> np.ndarray:
    """The whole file through librosa's audioread backend -> (n,) float32 at sample_rate."""
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
    if audio.shape[0] == 0:
        raise AudioLoadError(f"{path}: audio file has no samples")
    if not np.isfinite(audio).all():
        raise AudioLoadError(f"{path}: audio contains NaN or infinite samples")
    mono = audio.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), int(rate), sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)

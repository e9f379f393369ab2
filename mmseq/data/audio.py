"""Reading audio files into the float32 mono waveforms the audio encoder expects.

`AudioStream` reads a file block by block (mono, resampled on the fly), so that transcribing a
recording holds a few seconds of it rather than all of it; `load_audio` reads the whole file
through the same stream.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

BLOCK_FRAMES = 1 << 17  # samples per block of a stream (8 s at 16 kHz)
MIN_RATE, MAX_RATE = 1000, 768_000  # sample rates a file may declare, in Hz
# Files whose rate and the target rate, divided by their gcd, multiply to more than this are
# resampled by ffmpeg: torchaudio's kernel holds about that many floats times the filter width
MAX_RESAMPLING_TAPS = 1 << 24


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
            truncated, declares a sample rate outside MIN_RATE..MAX_RATE, or holds NaN/inf
            samples.
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

    MP3 files, files libsndfile cannot read (AAC/M4A and others) and files at a rate that
    torchaudio cannot resample to `sample_rate` in bounded memory (`MAX_RESAMPLING_TAPS`, e.g.
    44057 Hz) are decoded whole by ffmpeg when opened (see `_decode_ffmpeg`): their stream
    holds the whole waveform, as does a stream made from samples already in memory (a 1-D
    array, taken to be at `sample_rate`; not copied).

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
        check_file(self.path)
        if _is_mp3(self.path):
            self._samples = _decode_mp3(self.path, sample_rate)
            self._length = len(self._samples)
            return
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError) as sf_error:
            # libsndfile knows neither the container nor the codec: ffmpeg may
            self._samples = _decode_ffmpeg(self.path, sample_rate, _reason(sf_error))
            self._length = len(self._samples)
            return
        if info.frames == 0:
            raise AudioLoadError(f"{self.path}: audio file has no samples")
        if not MIN_RATE <= info.samplerate <= MAX_RATE:
            raise AudioLoadError(
                f"{self.path}: header declares a sample rate of {info.samplerate} Hz; "
                f"expected {MIN_RATE} to {MAX_RATE} Hz"
            )
        if info.format in ("WAV", "WAVEX"):
            _check_riff_length(self.path)
        if _resampling_taps(info.samplerate, sample_rate) > MAX_RESAMPLING_TAPS:
            # torchaudio's kernel for such a ratio (44057 -> 16000 Hz: 12 GB) would not fit
            self._samples = _decode_ffmpeg(self.path, sample_rate, None)
            self._length = len(self._samples)
            return
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


def _resampling_taps(orig_freq: int, new_freq: int) -> int:
    gcd = math.gcd(orig_freq, new_freq)
    return (orig_freq // gcd) * (new_freq // gcd)


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


def check_file(path: Path) -> None:
    """AudioLoadError unless `path` is an existing, non-empty file (before anything reads it)."""
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


def _reason(error: Exception) -> str:
    """libsndfile's own words, without soundfile's "Error opening '<path>': " in front."""
    text = getattr(error, "error_string", None) or str(error)
    return text.strip().rstrip(".")


FFMPEG_HINT = "not installed (install ffmpeg to read mp3, m4a, aac, wma, webm, ... files)"


def _decode_ffmpeg(path: Path, sample_rate: int, soundfile_error: str | None) -> np.ndarray:
    """The whole file through ffmpeg (as openai-whisper reads every file) -> (n,) float32
    mono at sample_rate, resampled and downmixed by ffmpeg. `soundfile_error`: why libsndfile
    could not read it, for the message (None: libsndfile was not tried)."""
    tried = "" if soundfile_error is None else f"soundfile: {soundfile_error}; "
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioLoadError(f"{path}: not a readable audio file: {tried}ffmpeg: {FFMPEG_HINT}")
    command = [ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(path)]
    command += ["-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["failed"]
        # ffmpeg's last line says why, after the input's name ("<path>: Invalid data ...")
        reason = lines[-1].removeprefix(f"{path}: ").strip()
        raise AudioLoadError(f"{path}: not a readable audio file: {tried}ffmpeg: {reason}")
    samples = np.frombuffer(done.stdout, np.float32).copy()  # frombuffer's is read-only
    if len(samples) == 0:
        raise AudioLoadError(f"{path}: audio file has no samples")
    if not np.isfinite(samples).all():
        raise AudioLoadError(f"{path}: audio contains NaN or infinite samples")
    return samples


def header_seconds(path: str | os.PathLike) -> float:
    """The duration a file's header declares, without decoding it (0.0 when libsndfile cannot
    tell): for progress bars. MP3 headers are read with fd 2 silenced (see `_decode_mp3`)."""
    try:
        if _is_mp3(Path(path)):
            with _fd2_silenced():
                return float(sf.info(str(path)).duration)
        return float(sf.info(str(path)).duration)
    except (OSError, sf.LibsndfileError, RuntimeError):
        return 0.0


def _is_mp3(path: Path) -> bool:
    """An .mp3 name, or an ID3 tag / MPEG audio frame sync at the start of the file."""
    if path.suffix.lower() == ".mp3":
        return True
    with path.open("rb") as f:
        head = f.read(3)
    return head == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _decode_mp3(path: Path, sample_rate: int) -> np.ndarray:
    """MP3 through ffmpeg when it is installed; else libsndfile with fd 2 silenced.

    libsndfile's MP3 decoder (libmpg123) writes warnings such as "Xing stream size off by more
    than 1%" straight to file descriptor 2, past Python's sys.stderr, once per open and read;
    ffmpeg with -loglevel error says nothing for such files.
    """
    if shutil.which("ffmpeg") is not None:
        return _decode_ffmpeg(path, sample_rate, None)
    try:
        with _fd2_silenced():
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioLoadError(
            f"{path}: not a readable audio file: soundfile: {_reason(exc)}; ffmpeg: {FFMPEG_HINT}"
        ) from None
    if audio.shape[0] == 0:
        raise AudioLoadError(f"{path}: audio file has no samples")
    if not np.isfinite(audio).all():
        raise AudioLoadError(f"{path}: audio contains NaN or infinite samples")
    mono = audio.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:  # as the stream of a file libsndfile reads block by block
        mono = AF.resample(torch.from_numpy(mono), int(rate), sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


@contextmanager
def _fd2_silenced() -> Iterator[None]:
    """File descriptor 2 points to /dev/null inside, for C libraries that write there.
    What other threads write to stderr meanwhile is lost too: keep the block short."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)

"""Whisper's log-mel front-end, computed in torch on the model's device.

openai-whisper pads the waveform with 30 s of zeros, takes the STFT (n_fft 400, hop 160, Hann),
drops the last frame, applies Slaney mel filters (librosa), log10, clamps to max - 8 and scales
by (x + 4) / 4. For a clip shorter than 30 s it then keeps the frames that hold audio and pads
the *log-mel* with zeros up to 3000 frames. That last step differs from Hugging Face (which pads
the waveform, i.e. uses log-mel of silence) and we follow openai-whisper end to end.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds in one Whisper window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100


# Whisper's filterbanks (80 and 128 mels), precomputed by assets/make_mel_filters.py: librosa
# would cost a short clip's transcription 2-3 s of imports (numba, scipy.signal)
_SHIPPED_FILTERS = Path(__file__).resolve().parents[1] / "assets" / "mel_filters.npz"


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised mel filterbank [n_mels, n_fft // 2 + 1], as Whisper was trained with
    (librosa's, in float32)."""
    if (n_fft, sample_rate) == (N_FFT, SAMPLE_RATE) and n_mels in (80, 128):
        with np.load(_SHIPPED_FILTERS) as shipped:
            return shipped[f"mel_{n_mels}"]
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


class LogMelSpectrogram(nn.Module):
    """Waveforms [B, S] at 16 kHz -> log-mel [B, n_mels, T] and frame lengths [B].

    pad_to_frames=3000 reproduces openai-whisper's 30 s windows exactly; None returns
    variable-length features (frames past a clip's end are zero), for models trained without
    30 s padding.
    """

    def __init__(
        self,
        n_mels: int = 80,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        pad_to_frames: int | None = N_FRAMES,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.pad_to_frames = pad_to_frames
        self.n_mels = n_mels
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer(
            "filters", torch.from_numpy(mel_filters(n_mels, n_fft)), persistent=False
        )

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - torch's signature
        # Follow device moves but not dtype casts: a bf16 model keeps an fp32 front-end, as
        # rounding the mel filters would change every feature.
        super()._apply(fn, recurse)
        device = self.window.device
        self.window = torch.hann_window(self.n_fft, device=device)
        self.filters = torch.from_numpy(mel_filters(self.n_mels, self.n_fft)).to(device)
        return self

    def log10_mel(self, audio: Tensor, center: bool = True) -> Tensor:
        """[B, S] -> log10 mel power [B, n_mels, T].

        center=True: one frame per hop centred on it (reflect padding at the edges), the STFT's
        last frame dropped as Whisper does, T = S // hop. center=False: frames start at sample 0
        and are all kept, for audio the caller has already padded (see WindowedLogMel).
        """
        stft = torch.stft(
            audio,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=center,
            return_complex=True,
        )
        if center:
            stft = stft[..., :-1]
        return torch.clamp(self.filters @ stft.abs() ** 2, min=1e-10).log10()

    @staticmethod
    def normalize(log_spec: Tensor, peak: Tensor | float) -> Tensor:
        """Whisper's dynamic range: at most 8 (80 dB) below the peak, then (x + 4) / 4."""
        return (torch.maximum(log_spec, torch.as_tensor(peak) - 8.0) + 4.0) / 4.0

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio [B, S] float, lengths [B] in samples (None: all S) -> (mel, frame_lengths)."""
        if audio.dim() != 2:
            raise ValueError(f"audio: expected waveforms [B, S], got shape {tuple(audio.shape)}")
        batch, n_samples = audio.shape
        if lengths is None:
            lengths = torch.full((batch,), n_samples, device=audio.device)
        # 30 s of zeros after the audio as openai-whisper does; the content frames depend only on
        # the audio since every frame's window lies within the audio plus zeros either way.
        padding = N_SAMPLES if self.pad_to_frames else self.n_fft
        log_spec = self.log10_mel(F.pad(audio.float(), (0, padding)))
        peak = log_spec.amax(dim=(-2, -1), keepdim=True)
        log_spec = self.normalize(log_spec, peak)

        frame_lengths = lengths.to(audio.device) // self.hop_length
        n_frames = self.pad_to_frames or int(frame_lengths.max())
        log_spec = log_spec[..., :n_frames]
        if log_spec.shape[-1] < n_frames:
            log_spec = F.pad(log_spec, (0, n_frames - log_spec.shape[-1]))
        frames = torch.arange(n_frames, device=audio.device)
        log_spec = log_spec * (frames[None, :] < frame_lengths[:, None])[:, None, :]
        return log_spec, frame_lengths.clamp(max=n_frames)


class SampleSource(Protocol):
    """Mono 16 kHz samples delivered in blocks, e.g. mmseq.data.audio.AudioStream: its length,
    and its samples in order as (n,) blocks, each call a new pass from the start."""

    def __len__(self) -> int: ...

    def blocks(self) -> Iterator[np.ndarray | Tensor]: ...


class ForwardReader:
    """Samples lo..hi-1 of a signal that arrives in blocks, for requests whose start never
    moves back: holds only the samples from the last start on (plus the rest of the last
    block read)."""

    def __init__(self, blocks: Iterator[np.ndarray | Tensor], device: torch.device | None = None):
        self._blocks = blocks
        self._device = device
        self._held = torch.zeros(0, device=device)  # samples from self.start on
        self.start = 0

    @property
    def held(self) -> int:
        """Samples held now."""
        return len(self._held)

    def read(self, lo: int, hi: int) -> Tensor:
        """Samples lo..hi-1, fewer where the signal ends first -> [<= hi - lo] float32."""
        if lo < self.start:
            raise ValueError(f"cannot read back to sample {lo}: only {self.start} on are held")
        pieces = [self._held[lo - self.start :]]
        end = self.start + len(self._held)
        while end < hi and (block := next(self._blocks, None)) is not None:
            block = torch.as_tensor(block, dtype=torch.float32).to(self._device)
            pieces.append(block[max(lo - end, 0) :])  # a block wholly before lo is dropped
            end += len(block)
        self._held = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        self.start = lo
        return self._held[: max(hi - lo, 0)]


class _InMemory:
    """ForwardReader's `read` over samples held in memory, in any order."""

    def __init__(self, audio: Tensor) -> None:
        self.audio = audio

    def read(self, lo: int, hi: int) -> Tensor:
        return self.audio[lo:hi]


class WindowedLogMel:
    """openai-whisper's log-mel of a whole recording, computed one window at a time.

    openai-whisper takes the log-mel of the entire file (plus 30 s of zeros) at once, whose
    complex STFT alone needs about 0.6 GB per hour of audio. Here the dynamic-range peak is
    found in a first pass over bounded chunks, and each window is computed when asked for,
    from the samples it needs: the same numbers with memory that does not grow with length.

    `audio` is a tensor [S], or a `SampleSource` such as a file's `AudioStream`, which is then
    read twice, block by block: once for the peak (a file found corrupt raises here) and once
    for the windows, which must then be asked for at non-decreasing `seek`.
    """

    CHUNK_FRAMES = N_FRAMES  # frames per chunk in the peak pass (30 s)

    def __init__(self, spectrogram: LogMelSpectrogram, audio: Tensor | SampleSource) -> None:
        if isinstance(audio, Tensor) and audio.dim() != 1:
            raise ValueError(f"audio: expected mono samples [S], got shape {tuple(audio.shape)}")
        self.spec = spectrogram
        self.hop = spectrogram.hop_length
        self.n_samples = len(audio)
        self.content_frames = self.n_samples // self.hop
        device = spectrogram.window.device
        if isinstance(audio, Tensor):
            reader = self._reader = _InMemory(audio.to(device, torch.float32))
        else:  # two passes: the peak's reads to the end, the windows' starts when asked
            reader = ForwardReader(audio.blocks(), device)
            self._reader = ForwardReader(audio.blocks(), device)
        # frames whose window touches the audio; all later frames are digital silence (-10)
        touching = (self.n_samples + spectrogram.n_fft // 2) // self.hop + 1
        peak = -10.0
        for start in range(0, touching, self.CHUNK_FRAMES):
            end = min(start + self.CHUNK_FRAMES, touching)
            peak = max(peak, float(self._log10_frames(reader, start, end).max()))
        self.peak = peak

    def _log10_frames(self, reader: ForwardReader | _InMemory, start: int, end: int) -> Tensor:
        """Raw log10 mel of frames start..end-1 -> [n_mels, end - start]."""
        half, n_fft = self.spec.n_fft // 2, self.spec.n_fft
        # sample i of the centred signal is audio[i - half], mirrored at the start, 0 past the end
        lo = start * self.hop - half
        hi = (end - 1) * self.hop + n_fft - half
        first = max(lo, 0)
        held = reader.read(first, max(hi, 1 - lo))  # the mirror needs audio[1..-lo]
        samples = held[: max(hi - first, 0)]
        if lo < 0:
            mirror = held[1 : 1 - lo]  # audio[1..-lo], zeros past its end, reversed
            samples = torch.cat([F.pad(mirror, (0, -lo - len(mirror))).flip(0), samples])
        samples = F.pad(samples, (0, hi - lo - len(samples)))
        # the same computation as the whole-file path, so the numbers match bit for bit
        return self.spec.log10_mel(samples, center=False)

    def first_window_of_padded(self) -> Tensor:
        """The first N_FRAMES frames of the recording followed by digital silence ->
        [n_mels, N_FRAMES]: openai-whisper's `log_mel_spectrogram(audio, padding=N_SAMPLES)
        [:, :N_FRAMES]`, which it detects the language on. It equals `window(0)` when the
        recording fills a window; a shorter one is decoded zero-padded (`window`) instead."""
        return self.spec.normalize(self._log10_frames(self._reader, 0, N_FRAMES), self.peak)

    def window(self, seek: int, n_frames: int = N_FRAMES) -> Tensor:
        """Frames seek..seek+n_frames-1 of the content, zero-padded to N_FRAMES ->
        [n_mels, N_FRAMES], as openai-whisper's `pad_or_trim(mel[:, seek:seek + n])`.
        `seek` may not go back from one call to the next."""
        n_frames = min(n_frames, self.content_frames - seek, N_FRAMES)
        if n_frames <= 0:
            raise ValueError(f"window at frame {seek} is past the audio's {self.content_frames}")
        log_spec = self._log10_frames(self._reader, seek, seek + n_frames)
        mel = self.spec.normalize(log_spec, self.peak)
        return F.pad(mel, (0, N_FRAMES - n_frames))

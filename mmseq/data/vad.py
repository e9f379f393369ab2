"""Voice-activity detection with Silero VAD (the `silero-vad` package ships its model, so
nothing is downloaded), and packing of speech into chunks of at most 30 s.

The batched transcription path decodes only these chunks: silence and noise between them never
reach the decoder, which is where Whisper invents text.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.data.audio import AudioStream

SAMPLE_RATE = 16000
FRAME = 512  # samples per silero frame at 16 kHz
CONTEXT = 64  # samples of the previous frame that silero prepends to each frame
N_FFT = 256
N_BINS = N_FFT // 2 + 1


@dataclass(frozen=True)
class VadOptions:
    threshold: float = 0.5  # speech probability above which a 32 ms frame is speech
    min_speech_ms: int = 250
    min_silence_ms: int = 500  # shorter pauses stay inside one speech region
    speech_pad_ms: int = 200  # margin kept around each region so no word is clipped
    max_chunk_s: float = 30.0  # speech per chunk: one Whisper window
    max_gap_s: float = 3.0  # a longer pause between regions starts a new chunk
    # speech ends below this probability (None: threshold - 0.15, silero's default)
    neg_threshold: float | None = None


class SileroVad(nn.Module):
    """Silero VAD (v5/v6, 16 kHz) over a whole run of frames at once.

    Silero's own model is called once per 32 ms frame, its LSTM state carried between calls:
    ~31 Python calls per second of audio. Only the LSTM needs that order. Here the STFT and the
    convolutional encoder see every frame as one batch, and `nn.LSTM` runs the recurrence over
    the sequence in one call: the same arithmetic, a fraction of the calls. The weights are
    those of the TorchScript model that the silero-vad package ships.
    """

    def __init__(self) -> None:
        super().__init__()
        # a fixed Fourier basis as a strided convolution: rows 0-128 real, 129-257 imaginary
        self.stft = nn.Conv1d(1, 2 * N_BINS, N_FFT, stride=N_FFT // 2, bias=False)
        self.encoder = nn.Sequential(
            nn.Conv1d(N_BINS, 128, 3, padding=1), nn.ReLU(),
            nn.Conv1d(128, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(64, 128, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.head = nn.Linear(128, 1)

    def forward(
        self, frames: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """frames [N, CONTEXT + FRAME] (each frame behind the previous frame's last CONTEXT
        samples) -> speech probabilities [N] and the LSTM state after the last frame."""
        padded = F.pad(frames.unsqueeze(1), (0, CONTEXT), mode="reflect")  # [N, 1, 640]
        real, imag = self.stft(padded).chunk(2, dim=1)  # [N, 129, 4] each
        features = self.encoder(torch.sqrt(real**2 + imag**2)).squeeze(-1)  # [N, 128]
        hidden, state = self.lstm(features.unsqueeze(0), state)  # [1, N, 128]
        return torch.sigmoid(self.head(F.relu(hidden[0]))).squeeze(-1), state


def _weight_name(silero_name: str) -> str:
    """The name in SileroVad of a weight of silero's TorchScript 16 kHz model (an unknown name
    is returned as it is, and then refused)."""
    parts = silero_name.split(".")
    if silero_name == "stft.forward_basis_buffer":
        return "stft.weight"
    if parts[0] == "encoder" and parts[2:3] == ["reparam_conv"]:  # every other layer is ours
        return f"encoder.{2 * int(parts[1])}.{parts[-1]}"
    if silero_name.startswith("decoder.rnn."):  # an LSTMCell's weights are a 1-layer LSTM's
        return "lstm." + silero_name.removeprefix("decoder.rnn.") + "_l0"
    if silero_name.startswith("decoder.decoder.2."):  # the 1x1 output convolution
        return "head." + silero_name.removeprefix("decoder.decoder.2.")
    return silero_name


@functools.lru_cache(maxsize=1)
def _silero() -> SileroVad:
    threads = torch.get_num_threads()
    try:
        # get_speech_timestamps_from_probs: silero-vad >= 6.2.2
        from silero_vad import get_speech_timestamps_from_probs, load_silero_vad  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "voice-activity detection needs the silero-vad package (6.2.2 or later): "
            "pip install -U 'mmseq[vad]'"
        ) from None
    finally:
        # importing silero_vad runs torch.set_num_threads(1) for the whole process: everything
        # after it (encoder, decoder) ran on one thread until this was restored
        torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        silero = load_silero_vad()._model  # the 16 kHz model; TorchScript, not a pickle
    model = SileroVad()
    ours = model.state_dict()
    theirs = {_weight_name(name): w for name, w in silero.state_dict().items()}
    if theirs.keys() != ours.keys() or any(w.numel() != ours[k].numel() for k, w in theirs.items()):
        raise RuntimeError(
            "this silero-vad release's 16 kHz model has another layout than the v5/v6 network "
            "mmseq batches; install silero-vad 6.x (>= 6.2.2)"
        )
    model.load_state_dict({k: w.reshape(ours[k].shape) for k, w in theirs.items()})
    return model.eval()


def speech_regions(
    audio: np.ndarray | AudioStream, options: VadOptions = VadOptions()
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech in 16 kHz mono audio, each at most max_chunk_s.

    The regions of silero's `get_speech_timestamps`; a stream is read once, block by block.
    """
    stream = audio if isinstance(audio, AudioStream) else AudioStream(audio)
    if len(stream) == 0:
        return []
    probabilities = speech_probabilities(stream.blocks())
    from silero_vad import get_speech_timestamps_from_probs  # checked by _silero()

    regions = get_speech_timestamps_from_probs(
        probabilities,
        sampling_rate=SAMPLE_RATE,
        threshold=options.threshold,
        min_speech_duration_ms=options.min_speech_ms,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        neg_threshold=options.neg_threshold,
        max_speech_duration_s=options.max_chunk_s - 1.0,
        audio_length_samples=len(stream),
    )
    return [(r["start"], r["end"]) for r in regions]


@torch.no_grad()
def speech_probabilities(blocks: Iterable[np.ndarray]) -> list[float]:
    """Silero's speech probability of each 512-sample frame (the last one zero-padded), the
    LSTM state and 64-sample context carried from frame to frame: what `get_speech_timestamps`
    computes over the whole waveform, from blocks of any size, a block's frames as one batch."""
    model = _silero()
    probabilities: list[float] = []
    state = None
    context = torch.zeros(CONTEXT)  # the samples before the first frame
    rest = np.zeros(0, np.float32)  # samples after the last whole frame

    def run(samples: np.ndarray) -> None:
        nonlocal state, context
        audio = torch.cat([context, torch.from_numpy(samples)])
        frames = audio.unfold(0, CONTEXT + FRAME, FRAME)  # [N, 576]
        speech, state = model(frames, state)
        probabilities.extend(speech.tolist())
        context = audio[-CONTEXT:]

    for block in blocks:
        samples = np.concatenate([rest, block])
        whole = len(samples) - len(samples) % FRAME
        if whole:
            run(samples[:whole])
        rest = samples[whole:]
    if len(rest):
        run(np.pad(rest, (0, FRAME - len(rest))))
    return probabilities


SEAM_SNAP_S = VadOptions.speech_pad_ms / 1000  # the default padding; see SpeechChunk.recording_time


@dataclass(frozen=True)
class SpeechChunk:
    """Speech regions transcribed as one window: their samples back to back, without the
    silence between them (as faster-whisper's batched pipeline packs them), so a window holds
    up to 30 s of speech; `recording_time` puts a time in the chunk back on the recording."""

    regions: tuple[tuple[int, int], ...]  # (start, end) samples in the recording, in order

    @property
    def start(self) -> int:
        return self.regions[0][0]

    @property
    def samples(self) -> int:
        return sum(end - start for start, end in self.regions)

    def region_at(self, seconds: float, end: bool = False) -> int:
        """The index of the region that holds a time of the recording: a start at a region's
        end belongs to the next region, an end (`end`) to that one; a time in a pause belongs
        to the region after it."""
        at = seconds * SAMPLE_RATE
        for i, (_, stop) in enumerate(self.regions):
            if at < stop or (end and at <= stop):
                return i
        return len(self.regions) - 1

    def recording_time(self, seconds: float, end: bool = False) -> float:
        """Seconds from the chunk's first sample -> seconds in the recording, within the
        chunk's regions. Whisper's times come in 20 ms steps and a region ends in its padding,
        so a start within SEAM_SNAP_S before a seam moves to the next region's start, and an
        end (`end`) within SEAM_SNAP_S after a seam to the previous region's end."""
        at = seconds * SAMPLE_RATE
        probe = at - SEAM_SNAP_S * SAMPLE_RATE if end else at + SEAM_SNAP_S * SAMPLE_RATE
        before = 0  # chunk samples before the current region
        for i, (start, stop) in enumerate(self.regions):
            length = stop - start
            if probe < before + length or i == len(self.regions) - 1:
                return (start + min(max(at - before, 0), length)) / SAMPLE_RATE
            before += length
        raise ValueError("a SpeechChunk needs at least one region")


def pack_regions(
    regions: list[tuple[int, int]], max_samples: int, max_gap: int
) -> list[SpeechChunk]:
    """Consecutive speech regions packed into chunks of at most max_samples of speech. A pause
    longer than max_gap samples starts a new chunk, so no segment decoded across the seam of
    two regions can span a long silence."""
    chunks: list[list[tuple[int, int]]] = []
    used = 0
    for start, end in regions:
        end = min(end, start + max_samples)
        if chunks and used + end - start <= max_samples and start - chunks[-1][-1][1] <= max_gap:
            chunks[-1].append((start, end))
            used += end - start
        else:
            chunks.append([(start, end)])
            used = end - start
    return [SpeechChunk(tuple(c)) for c in chunks]


def speech_chunks(
    audio: np.ndarray | AudioStream, options: VadOptions = VadOptions()
) -> list[SpeechChunk]:
    """What to transcribe: speech regions packed into chunks of at most one window."""
    return pack_regions(
        speech_regions(audio, options),
        round(options.max_chunk_s * SAMPLE_RATE),
        round(options.max_gap_s * SAMPLE_RATE),
    )

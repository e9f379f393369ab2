"""Streamed audio: files read block by block (mono, resampled on the fly) give the samples of
the whole-file path, the windowed log-mel and VAD read them without holding the recording, and
transcribing a file equals transcribing its samples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from mmseq.data.audio import (
    BLOCK_FRAMES,
    AudioLoadError,
    AudioStream,
    StreamingResampler,
    load_audio,
)
from mmseq.data.vad import (
    SpeechChunk,
    VadOptions,
    pack_regions,
    speech_probabilities,
    speech_regions,
)
from mmseq.encoders.audio_features import (
    N_FRAMES,
    N_SAMPLES,
    ForwardReader,
    LogMelSpectrogram,
    WindowedLogMel,
)

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
SR = 16000


def _noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32 in [-0.5, 0.5]."""
    frames = int(seconds * rate)
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype(np.float32)


def _whole_file(path: Path) -> np.ndarray:
    """The reference: the whole file read, averaged and resampled at once."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(audio.mean(axis=1, dtype=np.float32))
    return AF.resample(mono, rate, SR).numpy()


def _speech(seconds: float) -> np.ndarray:
    """The bundled clips in turn with 1-3 s pauses, cut to `seconds` at 16 kHz."""
    pieces, n = [], 0
    clips = [sf.read(clip, dtype="float32")[0] for clip in sorted(CLIPS.glob("*.flac"))]
    while n < seconds * SR:
        clip = clips[len(pieces) // 2 % len(clips)]
        pieces += [clip, np.zeros((1 + len(pieces) % 3) * SR, np.float32)]
        n += len(clip) + len(pieces[-1])
    return np.concatenate(pieces)[: int(seconds * SR)]


# --- reading and resampling ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels"), [(44100, 2), (8000, 1), (48000, 1), (22050, 2)], ids=str
)
def test_streamed_resampling_equals_whole_file(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "noise.wav"
    sf.write(path, _noise(20.3, rate, channels), rate, subtype="FLOAT")  # several blocks
    stream = AudioStream(path)
    blocks = list(stream.blocks())
    assert len(blocks) > 2
    streamed = np.concatenate(blocks)
    expected = _whole_file(path)
    assert len(stream) == len(streamed) == len(expected)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rate", [44100, 8000, 48000])
def test_streaming_resampler_takes_any_pieces(rate: int) -> None:
    """Signals shorter than one call, at its edges and longer, pushed in pieces of any size."""
    step = StreamingResampler(rate, SR)
    call = (2 * step.context + step.step) * step.orig  # input per resampling call
    rng = np.random.default_rng(rate)
    for n in (1, 441, call - 1, call, call + 1, 3 * call + 17):
        x = rng.uniform(-1, 1, n).astype(np.float32)
        expected = AF.resample(torch.from_numpy(x), rate, SR).numpy()
        for size in (4099, n):
            resampler = StreamingResampler(rate, SR)
            pieces = [resampler.push(x[i : i + size]) for i in range(0, n, size)]
            y = np.concatenate([*pieces, resampler.flush()])
            assert y.shape == expected.shape, (n, size)
            np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)


def test_16k_stream_is_the_file(tmp_path: Path) -> None:
    path = tmp_path / "speech.flac"
    sf.write(path, _speech(10.0), SR)
    blocks = list(AudioStream(path).blocks())
    assert max(len(b) for b in blocks) == BLOCK_FRAMES
    assert np.array_equal(np.concatenate(blocks), sf.read(path, dtype="float32")[0])
    assert np.array_equal(load_audio(path), np.concatenate(blocks))


def test_array_stream_holds_no_copy() -> None:
    samples = _speech(5.0)
    blocks = list(AudioStream(samples).blocks())
    assert all(np.shares_memory(b, samples) for b in blocks)
    assert np.array_equal(np.concatenate(blocks), samples)


def test_nan_in_a_later_block_fails_while_reading(tmp_path: Path) -> None:
    audio = _noise(10.0, SR)[:, 0]
    audio[-5] = np.nan
    path = tmp_path / "late-nan.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    stream = AudioStream(path)  # the header is fine
    assert len(stream) == len(audio)
    with pytest.raises(AudioLoadError, match=r"late-nan\.wav: audio contains NaN"):
        list(stream.blocks())


def test_forward_reader_holds_only_what_is_asked() -> None:
    signal = torch.arange(100_000, dtype=torch.float32)
    blocks = (signal[i : i + 1000] for i in range(0, len(signal), 1000))
    reader = ForwardReader(blocks)
    assert torch.equal(reader.read(500, 2500), signal[500:2500])
    assert reader.held <= 2500 - 500 + 1000
    assert torch.equal(reader.read(50_000, 50_010), signal[50_000:50_010])  # skips blocks
    assert reader.held <= 1000
    assert torch.equal(reader.read(99_990, 120_000), signal[99_990:])  # the end
    with pytest.raises(ValueError, match="cannot read back"):
        reader.read(10, 20)


# --- windowed log-mel over a stream ----------------------------------------------------------


class _Counting:
    """A source that counts the samples it has handed out, to show reading is lazy."""

    def __init__(self, stream: AudioStream) -> None:
        self.stream, self.given, self.largest = stream, 0, 0

    def __len__(self) -> int:
        return len(self.stream)

    def blocks(self) -> Iterator[np.ndarray]:
        self.given = 0
        for block in self.stream.blocks():
            self.given += len(block)
            self.largest = max(self.largest, len(block))
            yield block


@pytest.mark.parametrize("rate", [16000, 44100])
def test_windows_of_a_long_file_are_read_window_by_window(tmp_path: Path, rate: int) -> None:
    """A 4-minute file: the windows of its stream equal those of its whole waveform, and each
    is computed from at most a window plus one block of samples."""
    audio = np.tile(_speech(60.0), 4)
    if rate != SR:
        audio = AF.resample(torch.from_numpy(audio), SR, rate).numpy()
    path = tmp_path / "long.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    spec = LogMelSpectrogram()
    whole = WindowedLogMel(spec, torch.from_numpy(load_audio(path)))
    source = _Counting(AudioStream(path))
    streamed = WindowedLogMel(spec, source)
    assert source.given == len(source)  # the peak pass read the whole file
    assert streamed.peak == whole.peak
    assert streamed.content_frames == whole.content_frames == 240 * 100
    assert source.largest <= 2 * BLOCK_FRAMES + 1000  # resampled: the last holds two
    for seek in [0, 1, 2999, 4500, 9000, 17_777, 20_000, 22_000, 24_000 - 1]:
        window = streamed.window(seek)
        assert torch.equal(window, whole.window(seek)), seek
        assert streamed._reader.held <= N_SAMPLES + 400 + source.largest
        needed = (seek + N_FRAMES) * 160 + 200
        assert source.given <= needed + source.largest, seek  # not read ahead
    with pytest.raises(ValueError, match="cannot read back"):
        streamed.window(0)


# --- voice activity over a stream ------------------------------------------------------------


def test_streamed_vad_equals_silero_on_the_whole_waveform(tmp_path: Path) -> None:
    """mmseq's batched Silero (safetensors weights, one call per block) against silero-vad's
    own TorchScript model called frame by frame by its get_speech_timestamps."""
    from silero_vad import get_speech_timestamps, load_silero_vad

    audio = _speech(45.0)
    audio[20 * SR : 30 * SR] += (
        np.random.default_rng(1).normal(0, 0.005, 10 * SR).astype(np.float32)
    )
    probabilities = speech_probabilities(audio[i : i + 7777] for i in range(0, len(audio), 7777))
    np.testing.assert_allclose(probabilities, speech_probabilities([audio]), atol=1e-6)
    reference = load_silero_vad()
    expected_probabilities = []
    for start in range(0, len(audio), 512):
        frame = torch.from_numpy(audio[start : start + 512])
        frame = torch.nn.functional.pad(frame, (0, 512 - len(frame)))
        expected_probabilities.append(reference(frame, SR).item())
    assert len(probabilities) == len(expected_probabilities) == -(-len(audio) // 512)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-5)
    assert min(probabilities) < 0.1 and max(probabilities) > 0.9  # speech and silence both seen
    options = VadOptions()
    expected = get_speech_timestamps(
        torch.from_numpy(audio),
        reference,
        threshold=options.threshold,
        sampling_rate=SR,
        min_speech_duration_ms=options.min_speech_ms,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=options.speech_pad_ms,
        max_speech_duration_s=options.max_chunk_s - 1.0,
    )
    assert len(expected) >= 5
    path = tmp_path / "speech.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    assert speech_regions(AudioStream(path)) == [(r["start"], r["end"]) for r in expected]
    assert speech_regions(audio) == speech_regions(AudioStream(path))


def test_vad_refuses_a_silero_model_of_another_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import silero_vad

    from mmseq.data import vad

    class Other(torch.nn.Module):  # what a future release might ship
        def __init__(self) -> None:
            super().__init__()
            self._model = torch.nn.Module()
            self._model.add_module("encoder", torch.nn.Sequential(torch.nn.Linear(4, 4)))

    monkeypatch.setattr(silero_vad, "load_silero_vad", Other)
    vad._silero.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="another layout"):
            vad._silero()
    finally:
        vad._silero.cache_clear()


def test_loading_the_vad_keeps_torchs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing silero_vad runs torch.set_num_threads(1) for the whole process; before mmseq
    restored the count, the VAD path's encoder and decoder ran on one thread (int8, 2 x 4 min:
    16.3 s instead of 11.8 s)."""
    import sys

    from mmseq.data import vad

    for name in [m for m in sys.modules if m.split(".")[0] == "silero_vad"]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a new process
    threads = torch.get_num_threads()
    vad._silero.cache_clear()
    try:
        torch.set_num_threads(2)
        vad._silero()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
        vad._silero.cache_clear()


def test_vad_of_audio_shorter_than_a_frame() -> None:
    tiny = _speech(1.0)[:100]
    probabilities = speech_probabilities([tiny])
    assert len(probabilities) == 1 and 0.0 <= probabilities[0] <= 1.0
    assert speech_probabilities([]) == []


def test_regions_are_packed_up_to_a_window_of_speech_and_split_at_long_pauses() -> None:
    sr = 16000
    regions = [(0, 10 * sr), (12 * sr, 22 * sr), (23 * sr, 31 * sr), (32 * sr, 40 * sr)]
    chunks = pack_regions(regions, max_samples=30 * sr, max_gap=3 * sr)
    # 10 + 10 + 8 s of speech fill one window (9 s of pauses dropped); the fourth starts another
    assert [c.regions for c in chunks] == [tuple(regions[:3]), (regions[3],)]
    assert chunks[0].samples == 28 * sr and chunks[1].start == 32 * sr
    # a pause longer than max_gap starts a new chunk however little speech it holds
    split = pack_regions([(0, sr), (5 * sr, 6 * sr)], max_samples=30 * sr, max_gap=3 * sr)
    assert [c.regions for c in split] == [((0, sr),), ((5 * sr, 6 * sr),)]
    # a region longer than a window is cut to one
    assert pack_regions([(0, 40 * sr)], 30 * sr, 3 * sr)[0].regions == ((0, 30 * sr),)
    assert pack_regions([], 30 * sr, 3 * sr) == []


def test_chunk_times_go_back_onto_the_recording() -> None:
    # regions 2-7 s and 10-14 s: chunk time 0-5 s is 2-7 s, 5-9 s is 10-14 s
    chunk = SpeechChunk(((2 * 16000, 7 * 16000), (10 * 16000, 14 * 16000)))
    assert chunk.recording_time(0.0) == 2.0 and chunk.recording_time(1.5) == 3.5
    assert chunk.recording_time(6.0) == 11.0 and chunk.recording_time(6.0, end=True) == 11.0
    # near the seam (chunk time 5.0): a start in the first region's last 0.2 s opens the
    # second region; an end in the second region's first 0.2 s closes the first one
    assert chunk.recording_time(4.9) == 10.0 and chunk.recording_time(4.7) == pytest.approx(6.7)
    assert chunk.recording_time(5.1, end=True) == 7.0
    assert chunk.recording_time(5.3, end=True) == pytest.approx(10.3)
    # times outside the chunk stay on its speech
    assert chunk.recording_time(12.0, end=True) == 14.0 and chunk.recording_time(-1.0) == 2.0


# --- transcription of a streamed file --------------------------------------------------------


@pytest.fixture(scope="module")
def transcriber():  # noqa: ANN201
    from mmseq.transcription import Transcriber

    return Transcriber()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("vad", [False, True], ids=["sequential", "vad"])
def test_transcribing_a_file_equals_transcribing_its_samples(
    transcriber, tmp_path: Path, vad: bool
) -> None:
    """A 44.1 kHz stereo file of about 40 s (two windows), and a file whose last block holds a
    NaN, which fails alone."""
    from mmseq.transcription import TranscribeOptions

    audio = AF.resample(torch.from_numpy(_speech(40.0)), SR, 44100).numpy()
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([audio, 0.5 * audio], axis=1), 44100, subtype="FLOAT")
    bad = tmp_path / "bad.wav"
    nan = _noise(10.0, SR)[:, 0] * 0.01
    nan[-1] = np.nan
    sf.write(bad, nan, SR, subtype="FLOAT")
    options = TranscribeOptions(temperatures=(0.0,), vad=vad)
    inputs = [path, bad, load_audio(path)]
    from_file, failed, from_samples = transcriber.transcribe(
        inputs, options=options, errors="collect"
    )
    assert from_file.error is None and from_file.text
    assert from_file.duration == from_samples.duration == pytest.approx(40.0, abs=1e-3)
    assert from_file.text_tokens == from_samples.text_tokens
    assert [(s.start, s.end, s.tokens) for s in from_file.segments] == [
        (s.start, s.end, s.tokens) for s in from_samples.segments
    ]
    assert failed.segments == [] and "bad.wav: audio contains NaN" in failed.error

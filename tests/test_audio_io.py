"""load_audio: formats, downmixing, resampling and the errors for broken files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmseq.data.audio import AudioLoadError, load_audio

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype", "atol"),
    [
        (".wav", "WAV", "PCM_16", 1e-4),
        (".wav", "WAV", "FLOAT", 0.0),
        (".flac", "FLAC", "PCM_16", 1e-4),
        (".ogg", "OGG", "VORBIS", None),  # lossy: only the shape and level are checked
    ],
)
def test_formats_at_16k(tmp_path: Path, suffix: str, fmt: str, subtype: str, atol) -> None:
    x = _tone(1.0, 16000)
    path = tmp_path / f"tone{suffix}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape == x.shape
    if atol is None:
        assert abs(np.sqrt(np.mean(y**2)) - np.sqrt(np.mean(x**2))) < 0.05
    else:
        np.testing.assert_allclose(y, x, atol=atol)


def test_stereo_44k_downmixed_and_resampled(tmp_path: Path) -> None:
    left = _tone(2.0, 44100, 440.0, 0.8)
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape == (32000,)  # 2 s at 16 kHz
    # Mean downmix halves the amplitude; the resampled tone keeps its level away from the edges.
    peak = np.abs(y[1000:-1000]).max()
    assert 0.38 < peak < 0.42
    expected = _tone(2.0, 16000, 440.0, 0.4)
    np.testing.assert_allclose(y[1000:-1000], expected[1000:-1000], atol=0.02)


def test_other_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, _tone(1.0, 16000), 16000)
    assert load_audio(path, sample_rate=8000).shape == (8000,)


def test_int16_scaled_to_unit_range(tmp_path: Path) -> None:
    data = np.array([0, 16384, -16384, 32767, -32768], dtype=np.int16)
    path = tmp_path / "int16.wav"
    sf.write(path, data, 16000, subtype="PCM_16")
    y = load_audio(path)
    np.testing.assert_allclose(y, [0.0, 0.5, -0.5, 32767 / 32768, -1.0])


def test_demo_clips_load() -> None:
    clips = sorted(CLIPS.glob("*.flac"))
    assert len(clips) == 5
    for clip in clips:
        y = load_audio(clip)
        assert 3 * 16000 <= y.shape[0] <= 8 * 16000, clip
        assert np.abs(y).max() > 0.05, clip


def test_fallback_decoder_for_aac(tmp_path: Path) -> None:
    # libsndfile cannot read AAC in MP4, so this exercises the ffmpeg fallback.
    path = tmp_path / "tone.m4a"
    tone = "sine=frequency=440:duration=1:sample_rate=22050"
    command = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", tone, "-c:a", "aac", str(path)]
    subprocess.run(command, check=True, timeout=60)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.shape[0] - 16000) < 800  # AAC adds encoder padding
    assert np.abs(y).max() > 0.05


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError, match=r"nope\.wav: audio file does not exist"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError, match="is a directory"):
        load_audio(tmp_path)


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(AudioLoadError, match=r"empty\.wav: audio file is empty"):
        load_audio(path)


def test_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is a shopping list, not audio\n" * 20)
    with pytest.raises(AudioLoadError, match=r"notes\.wav: not a readable audio file"):
        load_audio(path)


def test_truncated_wav(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, _tone(1.0, 16000), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioLoadError, match=r"cut\.wav: truncated"):
        load_audio(path)


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 48000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioLoadError, match=r"cut\.flac: (truncated|unreadable)"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, bad, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match=r"nan\.wav: audio contains NaN or infinite"):
        load_audio(path)

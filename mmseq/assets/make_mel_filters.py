"""Regenerates mel_filters.npz: the Slaney mel filterbanks of Whisper's front-end (16 kHz,
n_fft 400) for 80 and 128 mel bins, as librosa computes them (float32), the values
openai-whisper also ships precomputed. Shipped so that starting a transcription does not import
librosa (with numba and scipy.signal, 2-3 s of a short clip's whole run); the test suite checks
the file against librosa. Run: python mmseq/assets/make_mel_filters.py"""

from pathlib import Path

import librosa
import numpy as np

if __name__ == "__main__":
    banks = {
        f"mel_{n}": librosa.filters.mel(sr=16000, n_fft=400, n_mels=n).astype(np.float32)
        for n in (80, 128)
    }
    np.savez_compressed(Path(__file__).with_name("mel_filters.npz"), **banks)

"""Starting a transcription loads only what it needs: users call the CLI once per file, and a
short clip's whole run is mostly start-up (imports, model load, the first window)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest

from mmseq.encoders.audio_features import mel_filters

CLIP = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips" / "clip4_en-m3.flac"
# heavy modules a transcription has no use for (librosa only computed the mel filters, now
# shipped; the others belong to training, the text models and the server)
NOT_NEEDED = ["librosa", "numba", "scipy.signal", "lightning", "transformers", "fastapi"]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_shipped_mel_filters_are_librosas(n_mels: int) -> None:
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels).astype(np.float32)
    assert np.array_equal(mel_filters(n_mels), expected)


def test_other_mel_sizes_are_computed_by_librosa() -> None:
    expected = librosa.filters.mel(sr=16000, n_fft=400, n_mels=64).astype(np.float32)
    assert np.array_equal(mel_filters(64), expected)


def test_transcribing_a_clip_imports_nothing_it_does_not_need() -> None:
    script = (
        "import json, sys; from mmseq.cli import main; "
        f"code = main(['transcribe', {str(CLIP)!r}]); "
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    code, modules = json.loads(run.stdout.strip().splitlines()[-1])
    assert code == 0 and "umbrella" in run.stdout
    loaded = [name for name in NOT_NEEDED if name in modules]
    assert not loaded, f"transcribe imported {loaded}"


def test_skip_init_skips_initialisers_only_inside() -> None:
    import torch
    from torch import nn

    from mmseq.nn.init import skip_init

    original = nn.init.normal_
    ones = torch.ones(3)
    with skip_init():
        assert nn.init.normal_(ones) is ones and torch.equal(ones, torch.ones(3))
        with skip_init():  # nested: no deadlock, and the outer one still skips afterwards
            pass
        assert nn.init.normal_(ones) is ones and torch.equal(ones, torch.ones(3))
    assert nn.init.normal_ is original
    with pytest.raises(KeyError), skip_init():
        raise KeyError  # an error inside restores them too
    assert nn.init.normal_ is original

"""The three Whisper checkpoint formats give the same model, and broken files give clear errors.

The embedded tiny.en (CTranslate2) is written back out as an openai-whisper .pt and as a Hugging
Face directory; all three must import to identical weights and logits.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmseq.errors import CheckpointError
from mmseq.whisper.checkpoints import (
    WhisperCheckpoint,
    load_whisper_checkpoint,
    openai_to_hf,
    save_openai_pt,
)
from mmseq.whisper.loading import embedded_model_dir, load_whisper


@pytest.fixture(scope="module")
def ct2() -> WhisperCheckpoint:
    return load_whisper_checkpoint(embedded_model_dir())


@pytest.fixture(scope="module")
def saved(ct2: WhisperCheckpoint, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded model as an openai .pt file and as a Hugging Face directory."""
    from transformers import WhisperConfig

    folder = tmp_path_factory.mktemp("whisper")
    pt = folder / "tiny.en.pt"
    save_openai_pt(ct2, pt)

    hf = folder / "hf"
    hf.mkdir()
    WhisperConfig(**ct2.hf_config()).to_json_file(hf / "config.json")
    tensors = openai_to_hf(ct2.state_dict)
    del tensors["proj_out.weight"]  # tied to the token embedding: safetensors refuses aliases
    save_file({k: t.contiguous() for k, t in tensors.items()}, hf / "model.safetensors")
    return {"pt": pt, "hf": hf}


@pytest.mark.parametrize("fmt", ["pt", "hf"])
def test_formats_give_the_same_model(
    ct2: WhisperCheckpoint, saved: dict[str, Path], fmt: str
) -> None:
    other = load_whisper_checkpoint(saved[fmt])
    assert other.dims == ct2.dims
    assert other.state_dict.keys() == ct2.state_dict.keys()
    for name, tensor in ct2.state_dict.items():
        assert torch.equal(other.state_dict[name], tensor), name

    torch.manual_seed(0)
    mel, tokens = torch.randn(1, 80, 3000), torch.tensor([[50257, 50362, 440, 2068]])
    with torch.no_grad():
        expected = ct2.build_model()("audio", mel, tokens).logits
        logits = other.build_model()("audio", mel, tokens).logits
    assert torch.equal(logits, expected)


def test_load_whisper_pt_falls_back_to_the_english_tokenizer(saved: dict[str, Path]) -> None:
    assert not (saved["pt"].parent / "tokenizer.json").exists()
    whisper = load_whisper(saved["pt"])
    assert whisper.tokenizer.vocab_size == 51864
    assert whisper.tokenizer.decode(whisper.tokenizer.encode(" Hello world")) == " Hello world"
    assert whisper.source == saved["pt"]


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such file or directory"):
        load_whisper_checkpoint(tmp_path / "nope.pt")


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout; expected an openai"):
        load_whisper_checkpoint(tmp_path)


def test_pt_without_dims(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"model_state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match=r"plain\.pt: expected .* 'dims' and 'model_state"):
        load_whisper_checkpoint(path)


def test_pt_that_is_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "text.pt"
    path.write_text("hello")
    with pytest.raises(
        CheckpointError, match=r"text\.pt: not an openai-whisper .* not a torch archive"
    ):
        load_whisper_checkpoint(path)


class _Payload:
    """Unpickling this runs `open(marker, "w")`: the file appearing means code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"dims": _Payload(marker), "model_state_dict": {}}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"evil\.pt: .*never unpickled"):
        load_whisper_checkpoint(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(path, weights_only=False)["dims"].close()
    assert marker.exists()


def test_corrupt_hf_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"d_model": 384,')
    save_file({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_whisper_checkpoint(tmp_path)


def test_hf_config_missing_a_field(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 384}))
    save_file({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"config\.json: missing Whisper field"):
        load_whisper_checkpoint(tmp_path)


def _ct2_string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def test_ct2_model_that_is_not_whisper(tmp_path: Path) -> None:
    """A valid CTranslate2 file (binary version 6) holding one unrelated variable."""
    weight = torch.ones(2, 2)
    variable = (
        _ct2_string("encoder/embeddings/weight")
        + struct.pack("<B2I", 2, 2, 2)
        + struct.pack("<BI", 0, 16)
        + weight.numpy().tobytes()
    )
    header = struct.pack("<I", 6) + _ct2_string("TransformerSpec") + struct.pack("<I", 1)
    data = header + struct.pack("<I", 1) + variable + struct.pack("<I", 0)
    (tmp_path / "model.bin").write_bytes(data)
    with pytest.raises(CheckpointError, match=r"model\.bin: not a CTranslate2 Whisper model"):
        load_whisper_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["tiny", "base.en", "large-v3"])
def test_a_model_name_that_is_not_embedded(name: str) -> None:
    """Names of other Whisper sizes are not downloaded: the error says what is embedded."""
    expected = rf"model '{name}': .* embedded are 'tiny.en', 'base'"
    with pytest.raises(CheckpointError, match=expected):
        load_whisper(name)

"""`mmseq.load`: every kind of model path to the object that runs it, with the options it was
given applied (a fine-tuned Whisper `.ckpt` in bfloat16 too) or refused when the model cannot
follow them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mmseq
from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry, load_trained, save_folder
from mmseq.errors import CheckpointError
from mmseq.inference import ChunkTranscriber
from mmseq.transcription import Transcriber

CLIP = sorted((Path(__file__).resolve().parents[1] / "mmseq/assets/clips").glob("*.flac"))[2]

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(model, tokenizer, tasks: dict, path: Path) -> Path:  # noqa: ANN001
    entry = checkpoint_entry(model.config, tokenizer, tasks)
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "mmseq": entry}, path)
    return path


def test_whisper_names_and_fine_tunes(tmp_path: Path) -> None:
    from mmseq.data.tokenizer import WhisperTextTokenizer

    tiny = mmseq.load("tiny.en")
    assert isinstance(tiny, Transcriber)
    whisper = tiny.whisper
    tuned = _save(
        whisper.model, WhisperTextTokenizer(whisper.tokenizer), {"audio": None}, tmp_path / "t.ckpt"
    )
    loaded = mmseq.load(tuned, compute_type="bfloat16")
    assert isinstance(loaded, Transcriber)
    fc1 = loaded.whisper.model.decoder.blocks[0].mlp.fc1
    assert fc1.weight.dtype == torch.bfloat16  # applied, not dropped
    expected = mmseq.load("tiny.en", compute_type="bfloat16").transcribe(CLIP).text
    assert loaded.transcribe(CLIP).text == expected
    folder = save_folder(load_trained(tuned), tmp_path / "folder")
    assert isinstance(mmseq.load(folder), Transcriber)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A speech model trained from scratch (its own tokenizer, no 30 s windows)."""
    from mmseq.data.tokenizer import train_bpe
    from mmseq.decoder import DecoderConfig
    from mmseq.encoders import AudioEncoderConfig
    from mmseq.model import EncoderDecoder, ModelConfig
    from mmseq.nn import BlockConfig

    tokenizer = train_bpe(["the meeting has been moved"] * 20, vocab_size=300)
    block = BlockConfig(d_model=32, n_heads=2, d_ff=64)
    config = ModelConfig(
        audio=AudioEncoderConfig(n_layers=1, block=block, pad_to_30s=False),
        decoder=DecoderConfig(vocab_size=tokenizer.vocab_size, n_ctx=16, n_layers=1, block=block),
    )
    path = tmp_path_factory.mktemp("scratch") / "s.ckpt"
    return _save(EncoderDecoder(config), tokenizer, {"audio": "transcribe"}, path)


def test_trained_from_scratch_and_bad_paths(scratch: Path, tmp_path: Path) -> None:
    path = scratch
    assert isinstance(mmseq.load(path), ChunkTranscriber)
    with pytest.raises(ValueError, match="trained from scratch.*cannot follow compute_type"):
        mmseq.load(path, compute_type="int8")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        mmseq.load(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="no such file or directory"):
        mmseq.load("tiny")


def test_serve_loads_through_mmseq_load(scratch: Path, tmp_path: Path) -> None:
    """`mmseq serve --model` takes what `mmseq.load` takes, and names a model of the wrong
    kind."""
    from mmseq.serve.speech import SpeechModel

    assert SpeechModel.load("tiny.en").transcriber.whisper is not None
    with pytest.raises(CheckpointError, match="no such file or directory"):
        SpeechModel.load(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match=r"--model .*loads as a ChunkTranscriber"):
        SpeechModel.load(str(scratch))

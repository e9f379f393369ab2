"""`mmseq export --format openai|hf` for a fine-tuned Whisper: openai-whisper and transformers
load what it writes and compute the checkpoint's logits (openai-whisper also its transcript);
models that are no Whisper are refused with what they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import CLIPS

import mmseq
from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry, load_trained, write_checkpoint
from mmseq.cli import main
from mmseq.data.audio import load_audio
from mmseq.data.tokenizer import TextTokenizer, WhisperTextTokenizer, train_bpe
from mmseq.decoder import DecoderConfig
from mmseq.encoders import AudioEncoderConfig, ImageEncoderConfig
from mmseq.generation import generate
from mmseq.inference import whisper_from_trained
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.nn import BlockConfig
from mmseq.transcription import Transcript
from mmseq.whisper.loading import load_whisper

whisper = pytest.importorskip("whisper")  # openai-whisper, the reference

CLIP = CLIPS / "clip1_en-us.flac"

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(model: EncoderDecoder, tokenizer: TextTokenizer, path: Path) -> Path:
    """A checkpoint as `mmseq fit` writes it (the `mmseq` entry and the module's weights)."""
    modality = model.config.modalities[0]
    entry = checkpoint_entry(model.config, tokenizer, {modality: None})
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    write_checkpoint({"state_dict": state, "mmseq": entry}, path)
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.en after a little fine-tuning: MLP weights and the final norm moved, and key biases
    set, which Whisper's layers lack (the softmax cancels them: the export drops them)."""
    tiny = load_whisper("tiny.en")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in tiny.model.named_parameters():
            if name.endswith("mlp.fc2.weight"):
                p.add_(torch.randn_like(p) * 0.05 * p.std())
            elif name.endswith(("attn.qkv.bias", "cross_attn.kv.bias")):
                d = tiny.model.config.decoder.block.d_model
                key = slice(d, 2 * d) if name.endswith("qkv.bias") else slice(0, d)
                p[key] += torch.randn(d) * 0.5
        tiny.model.decoder.norm.bias.add_(torch.randn(384) * 0.05)
    path = tmp_path_factory.mktemp("tuned") / "tuned.ckpt"
    return _save(tiny.model, WhisperTextTokenizer(tiny.tokenizer), path)


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A clip's log-mel [1, 80, 3000] (openai-whisper's) and a prompt plus text [1, T]."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(load_audio(CLIP))))
    t = load_whisper("tiny.en").tokenizer
    tokens = [t.sot, t.no_timestamps, *t.encode(" The quick brown fox jumps")]
    return mel[None], torch.tensor([tokens])


@pytest.fixture(scope="module")
def expected(tuned: Path) -> Transcript:
    """mmseq's transcript of the clip with the checkpoint."""
    return mmseq.load(tuned).transcribe(CLIP)


@torch.no_grad()
def _logits(model: EncoderDecoder, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return model("audio", *inputs).logits


def test_openai_pt_gives_the_checkpoints_logits_and_transcript(
    tuned: Path,
    inputs: tuple,
    expected: Transcript,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    assert main(["export", "--format", "openai", str(tuned), str(tmp_path)]) == 0  # a folder
    pt = tmp_path / "model.pt"
    assert f"{pt}: openai-whisper checkpoint written" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.tokenizer.json"]
    raw = torch.load(pt, map_location="cpu", weights_only=True)  # tensors and plain dicts only
    assert sorted(raw) == ["dims", "model_state_dict"]
    assert raw["dims"]["n_vocab"] == 51864 and raw["dims"]["n_text_layer"] == 4

    reference = whisper.load_model(str(pt), device="cpu")
    ours = _logits(load_trained(tuned).model, inputs)
    with torch.no_grad():
        theirs = reference(*inputs)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-5)  # |logits| up to ~25
    pretrained = _logits(load_whisper("tiny.en").model, inputs)
    assert (ours - pretrained).abs().max() > 0.1  # the fine-tuned weights were exported

    result = whisper.transcribe(reference, load_audio(CLIP), fp16=False)
    assert [t for s in result["segments"] for t in s["tokens"]] == [
        t for s in expected.segments for t in s.tokens
    ]
    assert expected.text.strip()
    # mmseq reads the .pt back, with the tokenizer written beside it
    assert mmseq.load(pt).transcribe(CLIP).text == expected.text

    # a file path is used as given; an existing file is never overwritten
    assert main(["export", "--format", "openai", str(tuned), str(tmp_path / "w.pt")]) == 0
    assert (tmp_path / "w.tokenizer.json").is_file()
    assert main(["export", "--format", "openai", str(tuned), str(pt)]) == 2
    assert capsys.readouterr().err.strip().endswith("model.pt: exists; choose a new name")


def test_hf_folder_gives_the_checkpoints_logits(
    tuned: Path,
    inputs: tuple,
    expected: Transcript,
    tmp_path: Path,
) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out = tmp_path / "hf"
    assert main(["export", "--format", "hf", str(tuned), str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no staging folder left
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    reference = WhisperForConditionalGeneration.from_pretrained(out).eval()
    mel, tokens = inputs
    with torch.no_grad():
        theirs = reference(input_features=mel, decoder_input_ids=tokens).logits
    torch.testing.assert_close(
        theirs, _logits(load_trained(tuned).model, inputs), atol=1e-4, rtol=1e-5
    )

    t = load_whisper("tiny.en").tokenizer
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["decoder_start_token_id"] == t.sot
    assert generation["no_timestamps_token_id"] == t.no_timestamps
    assert generation["alignment_heads"] == [[2, h] for h in range(6)] + [[3, h] for h in range(6)]
    processor = WhisperProcessor.from_pretrained(out)
    ids = t.encode(" Hello, world!")
    assert processor.tokenizer(" Hello, world!", add_special_tokens=False).input_ids == ids
    audio = load_audio(CLIP)
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
    torch.testing.assert_close(features.input_features, mel, atol=1e-5, rtol=0)
    assert mmseq.load(out).transcribe(CLIP).text == expected.text  # mmseq reads it back

    # transformers' `generate` with the exported generation config decodes as mmseq does
    # (greedy, without timestamps: the prompt, suppressions and end as Whisper's)
    tuned_whisper = whisper_from_trained(load_trained(tuned))
    prompt = t.sot_sequence(without_timestamps=True)
    ours = generate(tuned_whisper.model, "audio", mel, prompt, tuned_whisper.generation_config())
    n = int(ours.lengths[0, 0])
    ids = ours.sequences[0, 0, len(prompt) : len(prompt) + n].tolist()
    with torch.no_grad():
        theirs = reference.generate(features.input_features)
    assert theirs[0].tolist() == [i for i in ids if i != t.eot]


def test_models_that_are_no_whisper_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    block = BlockConfig(d_model=32, n_heads=2, d_ff=64)
    bpe = train_bpe(["the meeting has been moved"] * 20, vocab_size=300)
    decoder = DecoderConfig(vocab_size=bpe.vocab_size, n_ctx=16, n_layers=1, block=block)
    speech = ModelConfig(audio=AudioEncoderConfig(n_layers=1, block=block), decoder=decoder)
    image = ImageEncoderConfig(image_size=(16, 16), patch_size=8, n_layers=1, block=block)
    captioner = ModelConfig(image=image, decoder=decoder)
    tiny = load_whisper("tiny.en")
    odd = ModelConfig.from_dict(tiny.model.config.to_dict())  # Whisper's, but tanh GELUs
    odd.decoder.block = BlockConfig(d_model=384, n_heads=6, d_ff=1536, activation="gelu_tanh")
    cases = {
        "scratch.ckpt": (speech, bpe, "a speech model trained from scratch with its own tokenizer"),
        "caption.ckpt": (captioner, bpe, "an image captioning model"),
        "odd.ckpt": (odd, WhisperTextTokenizer(tiny.tokenizer), "not its architecture"),
    }
    for name, (config, tokenizer, what) in cases.items():
        path = _save(EncoderDecoder(config), tokenizer, tmp_path / name)
        for fmt in ("openai", "hf"):
            out = tmp_path / f"{name}.{fmt}"
            assert main(["export", "--format", fmt, str(path), str(out)]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"mmseq: error: {path}: ") and err.count("\n") == 1, err
            assert what in err
            assert not out.exists()
    assert "decoder.block.activation is 'gelu_tanh'" in err
    assert main(["export", "--format", "mmseq", str(path), str(tmp_path / "any")]) == 0


def test_whisper_tuned_without_30s_windows_is_exported_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """openai-whisper and transformers always encode 30 s windows: said, not silently done."""
    tiny = load_whisper("tiny.en")
    config = ModelConfig.from_dict(tiny.model.config.to_dict())
    config.audio.pad_to_30s = False
    model = EncoderDecoder(config)
    model.load_state_dict(tiny.model.state_dict())
    path = _save(model, WhisperTextTokenizer(tiny.tokenizer), tmp_path / "unpadded.ckpt")
    assert main(["export", "--format", "openai", str(path), str(tmp_path / "w.pt")]) == 0
    assert "not padded to 30 s" in caplog.text

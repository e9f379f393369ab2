"""Parity with the reference implementations on tiny random models and real audio:
Hugging Face Whisper (forward, greedy and beam search), the log-mel front-ends of Hugging Face and
openai-whisper, and Hugging Face ViT through mmseq.vision's importer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BOS, CLIPS, EOS, PAD, WhisperPair, until_eos
from transformers.generation.utils import GenerationMixin

from mmseq.data.audio import load_audio
from mmseq.encoders import ImageEncoder, resample_positions
from mmseq.encoders.audio_features import N_SAMPLES, LogMelSpectrogram
from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig, generate
from mmseq.vision import hf_vit_to_mmseq, image_encoder_config_from_hf, load_hf_vit_dir

# ---------------------------------------------------------------------------------------------
# Whisper: forward and decoding


@torch.no_grad()
def test_whisper_forward(tiny_whisper_pair: WhisperPair) -> None:
    hf, model = tiny_whisper_pair.hf, tiny_whisper_pair.mmseq
    mel = torch.randn(2, 80, 3000)
    tokens = torch.randint(0, tiny_whisper_pair.vocab_size, (2, 9))
    expected = hf.model.encoder(mel).last_hidden_state
    torch.testing.assert_close(model.encode("audio", mel).states, expected, atol=1e-4, rtol=0)
    logits = hf(input_features=mel, decoder_input_ids=tokens).logits
    torch.testing.assert_close(model("audio", mel, tokens).logits, logits, atol=1e-4, rtol=0)


SEARCHES = [
    {"num_beams": 1},
    {"num_beams": 1, "suppress_tokens": (3, 7, 9), "begin_suppress_tokens": (EOS, 5)},
    {"num_beams": 2, "length_penalty": 1.0, "early_stopping": False},
    {"num_beams": 2, "length_penalty": 0.0, "early_stopping": True, "num_return_sequences": 2},
    {"num_beams": 2, "length_penalty": 1.0, "early_stopping": "never"},
    {"num_beams": 4, "length_penalty": 1.0, "early_stopping": False, "num_return_sequences": 2},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": "never"},
    {"num_beams": 4, "length_penalty": 0.0, "early_stopping": "never", "num_return_sequences": 2},
    {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": False, "num_return_sequences": 2},
    {"num_beams": 4, "length_penalty": -1.0, "early_stopping": "never", "num_return_sequences": 2},
    {
        "num_beams": 4,
        "length_penalty": 1.0,
        "early_stopping": False,
        "suppress_tokens": (3, 7, 9),
        "begin_suppress_tokens": (EOS, 5),
    },
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_whisper_generate_matches_hf(tiny_whisper_pair: WhisperPair, search: dict) -> None:
    hf, model = tiny_whisper_pair.hf, tiny_whisper_pair.mmseq
    torch.manual_seed(123)
    mel = torch.randn(3, 80, 3000)
    prefix = torch.tensor([[BOS, 5]] * 3)
    config = GenerationConfig(max_new_tokens=16, eos_token_id=EOS, pad_token_id=PAD, **search)
    ours = generate(model, "audio", mel, prefix, config)

    hf_options = dict(search)
    for key in ("suppress_tokens", "begin_suppress_tokens"):
        if key in hf_options:
            hf_options[key] = list(hf_options[key])
    with torch.no_grad():
        ref = GenerationMixin.generate(
            hf,
            input_features=mel,
            decoder_input_ids=prefix,
            max_new_tokens=16,
            do_sample=False,
            eos_token_id=EOS,
            pad_token_id=PAD,
            return_dict_in_generate=True,
            output_scores=True,
            **hf_options,
        )
    expected = until_eos(ref.sequences.tolist(), prefix.shape[1])
    assert until_eos(ours.sequences.flatten(0, 1).tolist(), prefix.shape[1]) == expected
    if search["num_beams"] > 1:
        torch.testing.assert_close(
            ours.scores.flatten(), ref.sequences_scores, atol=1e-4, rtol=1e-4
        )
    for row in ours.sequences.flatten(0, 1).tolist():
        generated = row[prefix.shape[1] :]
        assert not set(generated) & set(search.get("suppress_tokens", ()))
        assert generated[0] not in search.get("begin_suppress_tokens", ())


def test_whisper_pair_ends_sequences_at_varied_lengths(tiny_whisper_pair: WhisperPair) -> None:
    """The decoding parity above only tests the stopping rules if EOS occurs at varied steps."""
    torch.manual_seed(123)
    mel = torch.randn(3, 80, 3000)
    lengths = set()
    for beams in (1, 4):
        config = GenerationConfig(
            max_new_tokens=16, num_beams=beams, eos_token_id=EOS, pad_token_id=PAD
        )
        out = generate(tiny_whisper_pair.mmseq, "audio", mel, [BOS, 5], config)
        lengths |= set(out.lengths.flatten().tolist())
    assert len(lengths - {16}) >= 2


# ---------------------------------------------------------------------------------------------
# Log-mel front-end


def _chirp(seconds: float = 5.0, f0: float = 100.0, f1: float = 4000.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))).astype(
        np.float32
    )


AUDIO = {
    "clip1": lambda: load_audio(CLIPS / "clip1_en-us.flac"),
    "chirp": _chirp,
}


@pytest.mark.parametrize("name", sorted(AUDIO))
def test_log_mel_matches_hf_feature_extractor(name: str) -> None:
    """Hugging Face pads the waveform to 30 s; so does this test before mmseq's front-end."""
    from transformers import WhisperFeatureExtractor

    audio = AUDIO[name]()
    expected = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt")
    padded = F.pad(torch.from_numpy(audio), (0, N_SAMPLES - len(audio)))[None]
    mel, frames = LogMelSpectrogram(pad_to_frames=None)(padded)
    assert int(frames) == 3000
    torch.testing.assert_close(mel, expected.input_features, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(AUDIO))
def test_log_mel_matches_openai_whisper(name: str) -> None:
    import whisper.audio as whisper_audio

    audio = torch.from_numpy(AUDIO[name]())
    expected = whisper_audio.log_mel_spectrogram(audio, padding=N_SAMPLES)[:, :3000]
    mel, frames = LogMelSpectrogram()(audio[None])
    n = len(audio) // 160
    assert mel.shape == (1, 80, 3000) and int(frames) == n
    torch.testing.assert_close(mel[0, :, :n], expected[:, :n], atol=1e-4, rtol=0)
    assert not mel[0, :, n:].any()


# ---------------------------------------------------------------------------------------------
# ViT


def _tiny_vit(seed: int = 0, **overrides: object):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    options = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "image_size": 32,
        "patch_size": 8,
        "layer_norm_eps": 1e-12,
    }
    config = ViTConfig(**(options | overrides))
    return ViTModel(config).eval()


def _import(vit) -> ImageEncoder:
    encoder = ImageEncoder(image_encoder_config_from_hf(vit.config.to_dict()))
    encoder.load_state_dict(hf_vit_to_mmseq(vit.state_dict()))
    return encoder.eval()


@pytest.mark.parametrize(
    "overrides",
    [{}, {"hidden_act": "gelu_pytorch_tanh"}, {"qkv_bias": False}, {"num_channels": 1}],
    ids=["default", "gelu_tanh", "no_qkv_bias", "one_channel"],
)
@torch.no_grad()
def test_vit_matches_hf(overrides: dict) -> None:
    vit = _tiny_vit(**overrides)
    encoder = _import(vit)
    pixels = torch.randn(2, overrides.get("num_channels", 3), 32, 32)
    expected = vit(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(encoder(pixels).states, expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_vit_saved_directory_loads(tmp_path) -> None:
    """save_pretrained writes the file naming (`encoder.layer.0.attention.attention.query`),
    which differs from transformers 5's in-memory naming; both import the same."""
    vit = _tiny_vit(seed=1)
    vit.save_pretrained(tmp_path)
    encoder = load_hf_vit_dir(tmp_path)
    pixels = torch.randn(1, 3, 32, 32)
    expected = vit(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(encoder(pixels).states, expected, atol=1e-4, rtol=0)


@torch.no_grad()
def test_vit_at_another_size_matches_hf_with_resampled_positions() -> None:
    """48x64 input to a 32x32 model. Hugging Face's `interpolate_pos_encoding` resizes with
    plain bicubic (kernel a=-0.75); mmseq follows timm (antialiased bicubic, a=-0.5, which
    differs even when upsampling). So the reference is a Hugging Face ViT built at 48x64 whose
    positions are mmseq's resampled table: everything but the resampling is compared here, the
    resampling itself below."""
    from transformers import ViTModel

    vit = _tiny_vit()
    encoder = _import(vit)
    resized = ViTModel(vit.config.__class__(**(vit.config.to_dict() | {"image_size": (48, 64)})))
    sd = vit.state_dict()
    table = resample_positions(sd["embeddings.position_embeddings"][0], (4, 4), (6, 8), 1)
    resized.load_state_dict(sd | {"embeddings.position_embeddings": table[None]})
    pixels = torch.randn(2, 3, 48, 64)
    states = encoder(pixels).states
    assert states.shape == (2, 1 + 6 * 8, 64)
    expected = resized.eval()(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(states, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("new_grid", [(3, 5), (6, 8)], ids=["down", "up"])
def test_resampled_positions_are_antialiased_bicubic(new_grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    pos = torch.randn(1 + 4 * 4, 16)
    out = resample_positions(pos, (4, 4), new_grid, n_prefix=1)
    n = new_grid[0] * new_grid[1]
    grid = pos[1:].reshape(1, 4, 4, 16).permute(0, 3, 1, 2)

    def resize(antialias: bool) -> torch.Tensor:
        y = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=antialias)
        return y.permute(0, 2, 3, 1).reshape(n, 16)

    assert torch.equal(out[0], pos[0])  # the class token's position is kept
    torch.testing.assert_close(out[1:], resize(antialias=True))
    assert not torch.allclose(out[1:], resize(antialias=False), atol=1e-3)
    assert resample_positions(pos, (4, 4), (4, 4), 1) is pos


@pytest.mark.parametrize("new_grid", [(3, 5), (6, 8)], ids=["down", "up"])
def test_resampled_positions_match_timm(new_grid: tuple[int, int]) -> None:
    import timm.layers.pos_embed as timm_pos

    torch.manual_seed(0)
    pos = torch.randn(1 + 4 * 4, 16)
    expected = timm_pos.resample_abs_pos_embed(
        pos[None], new_size=new_grid, old_size=(4, 4), num_prefix_tokens=1
    )[0]
    torch.testing.assert_close(resample_positions(pos, (4, 4), new_grid, 1), expected)


# ---------------------------------------------------------------------------------------------
# ViT importer: prefixes and errors


def test_vit_prefix_reads_the_encoder_of_a_vision_encoder_decoder() -> None:
    sd = _tiny_vit().state_dict()
    wrapped = {f"encoder.{k}": v for k, v in sd.items()} | {"decoder.lm_head.weight": torch.ones(1)}
    plain, prefixed = hf_vit_to_mmseq(sd), hf_vit_to_mmseq(wrapped, prefix="encoder.")
    assert plain.keys() == prefixed.keys()
    assert all(torch.equal(plain[k], prefixed[k]) for k in plain)
    assert plain["positions"].shape == (17, 64) and plain["class_token"].shape == (1, 1, 64)
    assert plain["stack.blocks.1.attn.qkv.weight"].shape == (192, 64)


def test_vit_unexpected_tensor_is_named() -> None:
    sd = _tiny_vit().state_dict() | {"layers.0.attention.rotary.weight": torch.ones(1)}
    with pytest.raises(CheckpointError, match=r"unexpected Hugging Face ViT tensor 'layers\.0"):
        hf_vit_to_mmseq(sd)


def test_vit_config_rejects_unknown_activation() -> None:
    config = _tiny_vit().config.to_dict() | {"hidden_act": "quick_gelu"}
    with pytest.raises(ValueError, match=r"hidden_act: expected one of .*got 'quick_gelu'"):
        image_encoder_config_from_hf(config)


def test_vit_dir_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        load_hf_vit_dir(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_hf_vit_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(CheckpointError, match=r"config\.json: expected a ViT model.*'whisper'"):
        load_hf_vit_dir(tmp_path)
    _tiny_vit().config.to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file not found"):
        load_hf_vit_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_hf_vit_dir(tmp_path)
    _tiny_vit(num_hidden_layers=1).save_pretrained(tmp_path)  # weights of one layer
    _tiny_vit().config.to_json_file(tmp_path / "config.json")  # a config of two
    with pytest.raises(CheckpointError, match=r"model\.safetensors: does not match .*config"):
        load_hf_vit_dir(tmp_path)

"""Pretrained vision imports: tiny random timm ViTs saved as .safetensors and .pth give the same
encoder states as timm's `forward_features`, at the trained size and at another one (positions
resampled as timm's `dynamic_img_size` does); the preprocessing read from the checkpoint's config
gives the pixels timm and Hugging Face give; a Hugging Face VisionEncoderDecoderModel directory
(ViT + GPT-2) gives its logits. Everything is built from configs: nothing is downloaded.
(The position resampling alone is compared with `resample_abs_pos_embed` in test_parity_hf.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmseq.errors import CheckpointError
from mmseq.vision import (
    Preprocessing,
    TimmVitOptions,
    load_hf_captioner,
    load_hf_vit_dir,
    load_timm_vit,
    preprocessing_from_hf,
    read_preprocessing,
)

timm = pytest.importorskip("timm")

TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2, "patch_size": 8, "img_size": 32}


def _timm_vit(seed: int = 0, **overrides: object) -> torch.nn.Module:
    """vit_tiny_patch16_224 shrunk to d 64, 2 layers, 2 heads, 8 px patches, 32 px images. Random
    non-zero class token, positions and LayerScale (timm initialises some of them to zero or
    constants, which would hide mistakes)."""
    torch.manual_seed(seed)
    args = TINY | {"num_classes": 0} | overrides
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **args).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cls_token", "pos_embed", "gamma")) or "norm" in name:
                param.copy_(torch.randn_like(param) * 0.5 + (1.0 if "norm.weight" in name else 0))
    return model


def _save(model: torch.nn.Module, folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, folder / "model.safetensors")
        return folder / "model.safetensors"
    torch.save({"model": state, "epoch": 3}, folder / "checkpoint.pth")  # a training checkpoint
    return folder / "checkpoint.pth"


def _write_timm_config(folder: Path, model: torch.nn.Module, model_args: dict) -> None:
    """The config.json timm's push_to_hub writes: architecture, model_args, pretrained_cfg."""
    cfg = {k: v for k, v in model.pretrained_cfg.items() if k in ("mean", "std", "crop_pct")}
    size = model.patch_embed.img_size
    cfg |= {"input_size": [3, *size], "interpolation": "bicubic", "crop_mode": "squash"}
    config = {"architecture": "vit_tiny_patch16_224", "model_args": model_args}
    (folder / "config.json").write_text(json.dumps(config | {"pretrained_cfg": cfg}))


VARIANTS = {
    "default": {},
    "no_class_token": {"class_token": False, "global_pool": "map"},
    "no_qkv_bias_layerscale": {"qkv_bias": False, "init_values": 0.1},
    "no_embed_class": {"no_embed_class": True},
    "gelu_tanh": {"act_layer": "gelu_tanh"},
}


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@torch.no_grad()
def test_timm_vit_matches_forward_features(tmp_path: Path, fmt: str, variant: str) -> None:
    overrides = VARIANTS[variant]
    model = _timm_vit(**overrides)
    weights = _save(model, tmp_path, fmt)
    act = {"act_layer": overrides["act_layer"]} if "act_layer" in overrides else {}
    if fmt == "safetensors":  # the architecture's missing details from timm's config.json
        _write_timm_config(tmp_path, model, {"num_heads": 2, **act})
        encoder = load_timm_vit(weights)
    else:  # ... or from the caller
        args = {"num_heads": 2, **act} | ({"no_embed_class": True} if "embed" in variant else {})
        encoder = load_timm_vit(weights, model_args=args)
    pixels = torch.randn(2, 3, 32, 32)
    expected = model.forward_features(pixels)
    torch.testing.assert_close(encoder(pixels).states, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", ["default", "no_embed_class"])
@torch.no_grad()
def test_timm_vit_at_another_size_matches_dynamic_img_size(tmp_path: Path, variant: str) -> None:
    """48x64 inputs to a 32x32 model: timm with dynamic_img_size resamples its positions with
    resample_abs_pos_embed; mmseq's encoder resamples its own."""
    model = _timm_vit(dynamic_img_size=True, **VARIANTS[variant])
    args = {"num_heads": 2, "img_size": 32}  # tells 1 + 4x4 positions from 16 + a class token
    encoder = load_timm_vit(_save(model, tmp_path, "safetensors"), model_args=args)
    pixels = torch.randn(2, 3, 48, 64)
    states = encoder(pixels).states
    assert states.shape == (2, 1 + 6 * 8, 64)
    torch.testing.assert_close(states, model.forward_features(pixels), atol=1e-4, rtol=0)


@torch.no_grad()
def test_non_square_model_reads_its_size_from_pretrained_cfg(tmp_path: Path) -> None:
    model = _timm_vit(img_size=(32, 48))
    weights = _save(model, tmp_path, "safetensors")
    _write_timm_config(tmp_path, model, {"num_heads": 2})
    encoder = load_timm_vit(tmp_path)  # the folder: model.safetensors is found in it
    assert encoder.config.image_size == (32, 48)
    assert encoder.config.image_mean == tuple(model.pretrained_cfg["mean"])
    pixels = torch.randn(1, 3, 32, 48)
    torch.testing.assert_close(
        encoder(pixels).states, model.forward_features(pixels), atol=1e-4, rtol=0
    )
    (tmp_path / "config.json").unlink()  # 1 + 4x6 = 25 positions: a 5x5 grid?
    with pytest.raises(CheckpointError, match="not a square grid: pass img_size or no_embed_c"):
        load_timm_vit(weights, model_args={"num_heads": 2})
    encoder = load_timm_vit(weights, model_args={"num_heads": 2, "img_size": [32, 48]})
    assert encoder.config.image_size == (32, 48)


def test_heads_come_from_the_model_name() -> None:
    assert TimmVitOptions.from_timm("vit_base_patch16_224.augreg_in21k").num_heads == 12
    assert TimmVitOptions.from_timm("vit_small_patch16_384", {"num_heads": 2}).num_heads == 2
    with pytest.raises(ValueError, match="'qk_norm': not supported"):
        TimmVitOptions.from_timm("vit_small_patch16_384", {"qk_norm": True})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"reg_tokens": 2}, "register tokens"),
        ({"qk_norm": True}, "q/k norms"),
        ({"pre_norm": True}, "norm_pre"),
        ({"global_pool": "avg"}, "fc_norm"),
    ],
    ids=["registers", "qk_norm", "pre_norm", "fc_norm"],
)
def test_unsupported_timm_features_are_refused(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    weights = _save(_timm_vit(**overrides), tmp_path, "safetensors")
    with pytest.raises(CheckpointError, match=message) as err:
        load_timm_vit(weights, model_args={"num_heads": 2})
    assert str(weights) in str(err.value)


def test_missing_heads_and_pickles_are_refused(tmp_path: Path) -> None:
    weights = _save(_timm_vit(), tmp_path, "pth")
    with pytest.raises(CheckpointError, match="num_heads"):
        load_timm_vit(weights)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": _timm_vit().state_dict(), "args": Path("x")}, pickled)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_timm_vit(pickled, model_args={"num_heads": 2})


# ---------------------------------------------------------------------------------------------
# Preprocessing from the checkpoint's config


def _photo(width: int = 61, height: int = 45) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "cfg",
    [
        {"input_size": (3, 32, 32), "crop_pct": 0.9, "interpolation": "bicubic"},
        {"input_size": (3, 24, 40), "crop_pct": 1.0, "crop_mode": "squash"},
        {"input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bilinear"},
    ],
    ids=["center", "squash", "bilinear"],
)
def test_timm_preprocessing_matches_timm_transforms(tmp_path: Path, cfg: dict) -> None:
    from timm.data import create_transform, resolve_data_config

    cfg |= {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)}
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "x", "pretrained_cfg": cfg}))
    ours = read_preprocessing(tmp_path / "model.safetensors")
    assert isinstance(ours, Preprocessing) and ours.size == tuple(cfg["input_size"][1:])
    theirs = create_transform(**resolve_data_config(pretrained_cfg=cfg))
    image = _photo()
    torch.testing.assert_close(ours.transforms()(image), theirs(image), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "config",
    [
        {"size": {"height": 32, "width": 40}, "resample": 2},
        {"size": {"shortest_edge": 36}, "do_center_crop": True, "crop_size": 32, "resample": 3},
        {
            "size": 36,
            "do_center_crop": True,
            "crop_size": {"height": 32, "width": 32},
            "resample": 3,
        },
    ],
    ids=["exact", "shortest_edge_crop", "int_size_crop"],
)
def test_hf_preprocessing_matches_the_pil_image_processor(config: dict) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    config = config | {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3]}
    cropping = config.get("do_center_crop", False)  # CLIP's resizes the shorter side, then crops
    processor = (CLIPImageProcessorPil if cropping else ViTImageProcessorPil)(**config)
    image = _photo()
    expected = torch.from_numpy(processor(image, return_tensors="np")["pixel_values"][0])
    ours = preprocessing_from_hf(config).transforms()(image)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_hf_vit_directory_takes_mean_and_std_from_preprocessor_config(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=16, patch_size=8,
    )  # fmt: skip
    ViTModel(config).save_pretrained(tmp_path)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    processor = {"size": {"height": 16, "width": 16}, "image_mean": mean, "image_std": std}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    encoder = load_hf_vit_dir(tmp_path)
    assert encoder.config.image_mean == tuple(mean) and encoder.config.image_std == tuple(std)


def test_bad_preprocessing_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"longest_edge": 9}}))
    with pytest.raises(CheckpointError, match="preprocessor_config.json: size"):
        read_preprocessing(tmp_path)
    assert read_preprocessing(tmp_path / "elsewhere" / "w.safetensors") is None


# ---------------------------------------------------------------------------------------------
# Hugging Face VisionEncoderDecoderModel (ViT + GPT-2 with cross-attention)


def _tiny_vit_gpt2(
    vocab_size: int, n_positions: int, width: int, start: int, pad: int, eos: int
) -> torch.nn.Module:
    """A seeded random VisionEncoderDecoderModel: a 2-layer ViT (64 wide, 32 px, patch 8) and a
    2-layer GPT-2 of `width` with cross-attention, decoding from `start` to `eos`."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    torch.manual_seed(0)
    vit = ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        image_size=32, patch_size=8,
    )  # fmt: skip
    gpt2 = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=width, n_layer=2, n_head=4,
        add_cross_attention=True, is_decoder=True, bos_token_id=start, eos_token_id=eos,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(vit, gpt2)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = start, pad, eos
    return VisionEncoderDecoderModel(config).eval()


@pytest.mark.parametrize("decoder_width", [64, 48], ids=["same_width", "enc_to_dec_proj"])
@torch.no_grad()
def test_vision_encoder_decoder_directory_matches_hf_logits(
    tmp_path: Path, decoder_width: int
) -> None:
    hf = _tiny_vit_gpt2(vocab_size=50, n_positions=24, width=decoder_width, start=1, pad=0, eos=2)
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}, "image_mean": [0.1, 0.2, 0.3]})
    )
    imported = load_hf_captioner(tmp_path)
    assert (imported.decoder_start_token_id, imported.eos_token_id) == (1, 2)
    assert imported.model.config.image.image_mean == (0.1, 0.2, 0.3)
    assert ("image" in imported.model.bridges) == (decoder_width != 64)
    pixels, tokens = torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 7))
    expected = hf(pixel_values=pixels, decoder_input_ids=tokens).logits
    logits = imported.model("image", pixels, tokens).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_vision_encoder_decoder_with_another_decoder_is_refused(tmp_path: Path) -> None:
    config = {"model_type": "vision-encoder-decoder", "encoder": {"model_type": "vit"}}
    (tmp_path / "config.json").write_text(json.dumps(config | {"decoder": {"model_type": "bert"}}))
    with pytest.raises(CheckpointError, match="a ViT encoder and a GPT-2 decoder"):
        load_hf_captioner(tmp_path)


def _tiny_hf_captioner(folder: Path, tokenizer_files: str) -> None:
    """A random ViT + GPT-2 VisionEncoderDecoderModel with a byte-level BPE tokenizer whose
    `<|endoftext|>` starts, ends and pads (as GPT-2 captioners do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["a red circle above a blue square"] * 20, trainer=trainer)
    eot = tokenizer.token_to_id("<|endoftext|>")
    vocab = tokenizer.get_vocab_size()
    model = _tiny_vit_gpt2(vocab, n_positions=32, width=64, start=eot, pad=eot, eos=eot)
    with torch.no_grad():  # tied embeddings make a random GPT-2 repeat its input: eot at once
        model.decoder.transformer.wte.weight[eot] = 0.0
    model.save_pretrained(folder)
    if tokenizer_files == "tokenizer.json":
        tokenizer.save(str(folder / "tokenizer.json"))
    else:  # GPT-2's slow-tokenizer files
        tokenizer.model.save(str(folder))


@pytest.mark.parametrize("tokenizer_files", ["tokenizer.json", "vocab.json+merges.txt"])
@torch.no_grad()
def test_caption_with_a_hugging_face_captioner_folder_matches_its_generate(
    tmp_path: Path, tokenizer_files: str, capsys: pytest.CaptureFixture
) -> None:
    from transformers import VisionEncoderDecoderModel

    from mmseq.cli import main
    from mmseq.inference import Captioner

    folder = tmp_path / "vit-gpt2"
    _tiny_hf_captioner(folder, tokenizer_files)
    images = []
    for i, size in enumerate([(40, 30), (32, 32), (20, 50)]):
        images.append(tmp_path / f"photo{i}.png")
        _photo(*size).save(images[-1])
    captioner = Captioner(folder, num_beams=1, max_new_tokens=12)
    ours = captioner.caption(images)

    hf = VisionEncoderDecoderModel.from_pretrained(folder).eval()
    tokenizer = captioner.trained.tokenizer
    pixels = torch.stack([captioner.transform(Image.open(p).convert("RGB")) for p in images])
    out = hf.generate(pixel_values=pixels, max_new_tokens=12, num_beams=1, do_sample=False)
    eot = tokenizer.eos_id
    expected_ids = [[i for i in row[1:].tolist() if i != eot] for row in out]
    assert [c.tokens for c in ours] == expected_ids
    assert all(expected_ids)  # a random model still says something: the comparison is not vacuous
    expected = [tokenizer.decode(ids) for ids in expected_ids]
    assert [c.caption for c in ours] == expected

    assert main(["caption", "--model", str(folder), "--beam-size", "1", "--max-new-tokens",
                 "12", "--output-format", "jsonl", *map(str, images)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["caption"] for r in rows] == expected


def test_hugging_face_captioner_folder_without_a_tokenizer_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from mmseq.cli import main

    folder = tmp_path / "vit-gpt2"
    _tiny_hf_captioner(folder, "tokenizer.json")
    (folder / "tokenizer.json").unlink()
    image = tmp_path / "photo.png"
    _photo().save(image)
    assert main(["caption", "--model", str(folder), str(image)]) != 0
    assert "no tokenizer.json (or vocab.json and merges.txt)" in capsys.readouterr().err

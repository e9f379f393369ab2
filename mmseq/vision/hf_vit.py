"""Import a Hugging Face `ViTModel` (config.json + model.safetensors) into mmseq's ImageEncoder.

Both Hugging Face namings are read: the one in model files (`encoder.layer.{i}.attention.
attention.query`, ...) and the one of transformers >= 5 in memory (`layers.{i}.attention.q_proj`,
...). The pooler (and a masked-image-modelling `mask_token`) has no counterpart and is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmseq.encoders import ImageEncoder, ImageEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.nn import BlockConfig
from mmseq.serialization import read_json
from mmseq.vision.preprocess import read_preprocessing

StateDict = dict[str, Tensor]

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}

# per-layer module names, file naming and transformers-5 naming -> mmseq (q/k/v handled apart)
_LAYER_NAMES = {
    "attention.output.dense": "attn.out",
    "attention.o_proj": "attn.out",
    "layernorm_before": "attn_norm",
    "layernorm_after": "mlp_norm",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc2": "mlp.fc2",
}
_QKV_NAMES = {
    "attention.attention.query": "q",
    "attention.attention.key": "k",
    "attention.attention.value": "v",
    "attention.q_proj": "q",
    "attention.k_proj": "k",
    "attention.v_proj": "v",
}
_LAYER = re.compile(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)")
_DROPPED = ("pooler.", "embeddings.mask_token")


def image_encoder_config_from_hf(config: dict[str, Any]) -> ImageEncoderConfig:
    """A ViTConfig as a dict (`to_dict()` or config.json) -> ImageEncoderConfig.

    `qkv_bias=False` needs no field: those biases are imported as zeros, which is equivalent.
    """
    act = config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"ViT hidden_act: expected one of {sorted(_ACTIVATIONS)}, got {act!r}")
    block = BlockConfig(
        d_model=config["hidden_size"],
        n_heads=config["num_attention_heads"],
        d_ff=config["intermediate_size"],
        activation=_ACTIVATIONS[act],
        norm_eps=config.get("layer_norm_eps", 1e-12),
    )
    return ImageEncoderConfig(
        image_size=config.get("image_size", 224),
        patch_size=config.get("patch_size", 16),
        in_channels=config.get("num_channels", 3),
        class_token=True,
        n_layers=config["num_hidden_layers"],
        block=block,
    )


def hf_vit_to_mmseq(state_dict: StateDict, prefix: str = "") -> StateDict:
    """Hugging Face ViTModel tensors (names under `prefix`, e.g. "encoder." for the encoder of a
    VisionEncoderDecoderModel) -> ImageEncoder state dict.

    cls_token [1, 1, D] -> class_token; position_embeddings [1, N+1, D] -> positions [N+1, D];
    query/key/value [D, D] -> one qkv [3D, D] (rows q, k, v); missing q/k/v biases -> zeros.
    """
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}  # (layer, weight|bias) -> {q, k, v}
    for full_name, tensor in state_dict.items():
        if not full_name.startswith(prefix):
            continue
        name = full_name.removeprefix(prefix)
        if name.startswith(_DROPPED):
            continue
        if name == "embeddings.cls_token":
            out["class_token"] = tensor
        elif name == "embeddings.position_embeddings":
            out["positions"] = tensor[0]
        elif name.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed." + name.rsplit(".", 1)[1]] = tensor
        elif name in ("layernorm.weight", "layernorm.bias"):
            out["stack.norm." + name.rsplit(".", 1)[1]] = tensor
        elif (m := _LAYER.fullmatch(name)) and m[2] in _QKV_NAMES:
            qkv.setdefault((m[1], m[3]), {})[_QKV_NAMES[m[2]]] = tensor
        elif m and m[2] in _LAYER_NAMES:
            out[f"stack.blocks.{m[1]}.{_LAYER_NAMES[m[2]]}.{m[3]}"] = tensor
        else:
            raise CheckpointError(f"unexpected Hugging Face ViT tensor {full_name!r}")
    for (layer, param), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"ViT layer {layer}: expected query, key and value {param}s")
        out[f"stack.blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[n] for n in "qkv"])
        if param == "weight" and (layer, "bias") not in qkv:  # qkv_bias=False: zeros are exact
            out[f"stack.blocks.{layer}.attn.qkv.bias"] = parts["q"].new_zeros(3 * len(parts["q"]))
    return out


def load_hf_vit_dir(path: str | os.PathLike) -> ImageEncoder:
    """A Hugging Face ViT directory (config.json + model.safetensors) -> ImageEncoder in eval
    mode, with the mean and std of its preprocessor_config.json where there is one (the full
    preprocessing: `mmseq.vision.read_preprocessing`). A VisionEncoderDecoderModel directory
    yields its vision encoder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    config = read_json(config_path)
    prefix = ""
    if config.get("model_type") == "vision-encoder-decoder":
        config, prefix = config.get("encoder", {}), "encoder."
    if config.get("model_type", "vit") != "vit":
        raise CheckpointError(
            f"{config_path}: expected a ViT model (model_type 'vit'), got {config['model_type']!r}"
        )
    try:
        encoder_config = image_encoder_config_from_hf(config)
    except KeyError as err:
        raise CheckpointError(f"{config_path}: missing ViT field {err}") from None
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    preprocessing = read_preprocessing(path)
    if preprocessing is not None:  # mean and std the encoder was trained with
        encoder_config.image_mean, encoder_config.image_std = preprocessing.mean, preprocessing.std
    encoder = ImageEncoder(encoder_config)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: file not found")
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from None
    if prefix == "" and not any(k.startswith("embeddings.") for k in tensors):
        prefix = "vit."  # ViTForImageClassification and friends
    try:
        encoder.load_state_dict({k: t.float() for k, t in hf_vit_to_mmseq(tensors, prefix).items()})
    except CheckpointError as err:
        raise CheckpointError(f"{weights_path}: {err}") from None
    except RuntimeError as err:  # missing tensors or wrong shapes
        raise CheckpointError(f"{weights_path}: does not match {config_path}: {err}") from None
    return encoder.eval()

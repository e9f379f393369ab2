"""Import a timm `VisionTransformer` state dict (`.safetensors`, or `.pth`/`.bin` read with
`torch.load(weights_only=True)`, never unpickling objects) into mmseq's ImageEncoder.

The architecture is read from the tensors' shapes: width, depth, MLP width, patch size, input
channels, class token, position grid, qkv bias. What shapes cannot tell comes from
`TimmVitOptions`, filled from (lowest first) the timm model name (`vit_base_...` has 12 heads),
the `model_args` and `pretrained_cfg` of a timm `config.json` beside the weights, and the
caller's arguments.

Mapped exactly: LayerScale (`ls1.gamma`, `ls2.gamma`) is folded into the projection before it;
positions without a class-token entry (`no_embed_class`, DeiT III) get a zero row, which is what
adding no position to the class token means. Refused with a CheckpointError, as they have no
mmseq counterpart: register tokens, a norm before the blocks (`norm_pre`, CLIP), q/k norms,
extra norms inside attention or MLP, a norm on the patch embedding, and models whose final norm
is `fc_norm` (global average pooling: their `forward_features` is not normalised). The
classifier (`head`, `fc_norm`, `attn_pool`) is dropped.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmseq.encoders import ImageEncoder, ImageEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.nn import BlockConfig
from mmseq.serialization import load_plain, read_json
from mmseq.vision.preprocess import read_preprocessing

StateDict = dict[str, Tensor]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
# heads by the size word of timm's ViT names (vit_<size>_patch<p>_<res>...)
_HEADS_BY_SIZE = {
    "tiny": 3,
    "small": 6,
    "medium": 8,
    "mediumd": 8,
    "betwixt": 10,
    "base": 12,
    "large": 16,
    "huge": 16,
    "giant": 16,
    "gigantic": 16,
}
_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_tanh", "relu": "relu", "silu": "silu"}
# timm model_args that the weights show (or that do not change the features); others that
# change the network but cannot be checked are refused rather than ignored
_ARGS_FROM_WEIGHTS = {
    "embed_dim", "depth", "patch_size", "in_chans", "class_token", "qkv_bias",
    "mlp_ratio", "init_values", "global_pool", "fc_norm", "num_classes", "dynamic_img_size",
    "dynamic_img_pad", "drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate",
    "drop_path_rate", "patch_drop_rate", "weight_init",
}  # fmt: skip
_LAYER_NAMES = {
    "norm1": "attn_norm",
    "attn.qkv": "attn.qkv",
    "attn.proj": "attn.out",
    "norm2": "mlp_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_LAYER = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)")
_DROPPED = ("head.", "head_drop.", "fc_norm.", "attn_pool.")
_UNSUPPORTED = {
    "reg_token": "register tokens",
    "norm_pre.": "a norm before the blocks (norm_pre, as in CLIP)",
    "patch_embed.norm.": "a norm on the patch embedding",
    "q_norm.": "q/k norms (qk_norm)",
    "k_norm.": "q/k norms (qk_norm)",
    "attn.norm.": "a norm inside attention (scale_attn_norm)",
    "mlp.norm.": "a norm inside the MLP (scale_mlp_norm)",
}


@dataclass
class TimmVitOptions:
    """What a timm ViT's weights do not show, under timm's `model_args` names.

    num_heads: None reads it from the model name. img_size: the (height, width) the positions
    were trained at; None assumes a square grid. no_embed_class: whether the class token has no
    entry in pos_embed (DeiT III); None tells it from the count where a square grid allows only
    one reading. norm_eps: timm's ViTs use LayerNorm(eps=1e-6).
    """

    num_heads: int | None = None
    img_size: int | tuple[int, int] | None = None
    no_embed_class: bool | None = None
    act_layer: str = "gelu"
    norm_eps: float = 1e-6

    @classmethod
    def from_timm(
        cls, architecture: str | None = None, model_args: dict[str, Any] | None = None
    ) -> TimmVitOptions:
        """Options from a timm model name and its `model_args` (which win)."""
        options = cls()
        if architecture:
            options.num_heads = heads_from_name(architecture)
        for key, value in (model_args or {}).items():
            if key in ("num_heads", "img_size", "act_layer", "no_embed_class"):
                setattr(options, key, value if key != "img_size" else _pair(value))
            elif key not in _ARGS_FROM_WEIGHTS:
                raise ValueError(f"model_args {key!r}: not supported by mmseq's ViT import")
        return options


def heads_from_name(architecture: str) -> int | None:
    """Attention heads of a timm ViT by its name (`vit_base_patch16_224.augreg_in21k` -> 12)."""
    match = re.match(r"(?:vit|deit3?)_([a-z]+)_", architecture)
    return _HEADS_BY_SIZE.get(match[1]) if match else None


def timm_vit_to_mmseq(
    state_dict: StateDict, options: TimmVitOptions, prefix: str = ""
) -> tuple[ImageEncoderConfig, StateDict]:
    """timm VisionTransformer tensors (names under `prefix`) -> ImageEncoderConfig and
    ImageEncoder state dict. Image mean/std are left at their defaults (see `load_timm_vit`).

    Raises:
        CheckpointError: a tensor has no mmseq counterpart, or an architecture detail is
            missing (no num_heads) or inconsistent with the shapes.
    """
    tensors = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(_DROPPED)}
    _refuse_unsupported(tensors)
    if "norm.weight" not in tensors and "blocks.0.norm1.weight" in tensors:
        raise CheckpointError(
            "no final 'norm': the model normalises in fc_norm after pooling (global_pool='avg'), "
            "so its token states are not normalised, which mmseq's encoder cannot express"
        )
    config = _config_from_shapes(tensors, options)
    out: StateDict = {}
    scales: dict[str, Tensor] = {}  # LayerScale gammas by the mmseq layer they fold into
    for name, tensor in tensors.items():
        if name == "cls_token":
            out["class_token"] = tensor
        elif name == "pos_embed":
            out["positions"] = _positions(tensor[0], config)
        elif name.startswith("patch_embed.proj."):
            out["patch_embed." + name.rsplit(".", 1)[1]] = tensor
        elif name in ("norm.weight", "norm.bias"):
            out["stack.norm." + name.rsplit(".", 1)[1]] = tensor
        elif (m := _LAYER.fullmatch(name)) and m[2] in _LAYER_NAMES and m[3] != "gamma":
            out[f"stack.blocks.{m[1]}.{_LAYER_NAMES[m[2]]}.{m[3]}"] = tensor
        elif m and m[2] in ("ls1", "ls2") and m[3] == "gamma":
            scales[f"stack.blocks.{m[1]}.{'attn.out' if m[2] == 'ls1' else 'mlp.fc2'}"] = tensor
        else:
            raise CheckpointError(f"unexpected timm ViT tensor {prefix + name!r}")
    _add_missing_biases(out)
    for layer, gamma in scales.items():  # gamma * (W x + b) = (gamma W) x + gamma b
        out[f"{layer}.weight"] = gamma[:, None] * out[f"{layer}.weight"]
        out[f"{layer}.bias"] = gamma * out[f"{layer}.bias"]
    return config, out


def _add_missing_biases(out: StateDict) -> None:
    """Zero biases where timm has none (qkv_bias=False, proj_bias=False, patch_bias=False):
    mmseq's layers always have them, and zeros are exact."""
    weights = [k for k in out if k.endswith(".weight") and "norm" not in k]
    for name in weights:
        bias = name.removesuffix(".weight") + ".bias"
        if bias not in out:
            out[bias] = out[name].new_zeros(out[name].shape[0])


def _refuse_unsupported(tensors: StateDict) -> None:
    for name in tensors:
        for pattern, what in _UNSUPPORTED.items():
            if name.startswith(pattern) or f".{pattern}" in name:
                raise CheckpointError(f"{name!r}: the model has {what}, which mmseq's ViT lacks")


def _config_from_shapes(tensors: StateDict, options: TimmVitOptions) -> ImageEncoderConfig:
    for name in ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"):
        if name not in tensors:
            raise CheckpointError(f"not a timm VisionTransformer state dict: no {name!r}")
    d, channels, patch, patch_w = tensors["patch_embed.proj.weight"].shape
    if patch != patch_w:
        raise CheckpointError(
            f"patch size {patch}x{patch_w}: the timm importer reads square patches only"
        )
    n_layers = 1 + max(int(m[1]) for k in tensors if (m := _LAYER.fullmatch(k)))
    if options.num_heads is None:
        raise CheckpointError(
            "the number of attention heads cannot be read from the weights: pass num_heads, "
            "a timm model name (vit_base_... has 12), or a config.json with model_args"
        )
    if options.act_layer not in _ACTIVATIONS:
        raise CheckpointError(
            f"act_layer {options.act_layer!r}: expected one of {sorted(_ACTIVATIONS)}"
        )
    class_token = "cls_token" in tensors
    grid = _grid(len(tensors["pos_embed"][0]), class_token, patch, options)
    try:
        block = BlockConfig(
            d_model=d,
            n_heads=options.num_heads,
            d_ff=tensors["blocks.0.mlp.fc1.weight"].shape[0],
            activation=_ACTIVATIONS[options.act_layer],
            norm_eps=options.norm_eps,
        )
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    return ImageEncoderConfig(
        image_size=(grid[0] * patch, grid[1] * patch),
        patch_size=patch,
        in_channels=channels,
        class_token=class_token,
        n_layers=n_layers,
        block=block,
    )


def _grid(
    n_positions: int, class_token: bool, patch: int, options: TimmVitOptions
) -> tuple[int, int]:
    """The position grid: from img_size, else a square whose count (with or without a
    class-token entry) fits; a count that fits only without one is ambiguous (a square grid
    without a class-token entry, or a non-square one with it) and needs img_size or
    no_embed_class."""
    if not class_token or options.no_embed_class:
        n_prefix = (0,)
    else:
        n_prefix = (1,) if options.no_embed_class is False else (1, 0)
    if options.img_size is not None:
        height, width = _pair(options.img_size)
        grid = (height // patch, width // patch)
        if n_positions - grid[0] * grid[1] not in n_prefix:
            raise CheckpointError(
                f"img_size {height}x{width} with patch {patch} gives a {grid[0]}x{grid[1]} grid, "
                f"which does not fit the {n_positions} positions in pos_embed"
            )
        return grid
    side = math.isqrt(n_positions - n_prefix[0])
    if side * side == n_positions - n_prefix[0]:
        return side, side
    hint = "pass img_size"
    if len(n_prefix) == 2 and math.isqrt(n_positions) ** 2 == n_positions:
        hint += " or no_embed_class"
    raise CheckpointError(f"pos_embed holds {n_positions} positions, not a square grid: {hint}")


def _positions(pos: Tensor, config: ImageEncoderConfig) -> Tensor:
    """pos [N(+1), D] -> [n_prefix + N, D]: a zero class-token row where timm adds none."""
    if config.class_token and len(pos) == config.grid[0] * config.grid[1]:
        return torch.cat([pos.new_zeros(1, pos.shape[1]), pos])
    return pos


def load_timm_vit(
    path: str | os.PathLike,
    *,
    model_name: str | None = None,
    model_args: dict[str, Any] | None = None,
    norm_eps: float | None = None,
    prefix: str = "",
) -> ImageEncoder:
    """A timm ViT's weights -> ImageEncoder in eval mode, with the image size, mean and std of
    its `pretrained_cfg` (or a Hugging Face `preprocessor_config.json`) where one is beside it.

    path: a weights file (`.safetensors`, `.pth`, `.pt`, `.bin`) or a folder holding one (as
    timm's Hugging Face Hub folders: config.json + model.safetensors). model_name, model_args:
    as `timm.create_model` takes them; they override the folder's config.json. prefix: the
    tensors' name prefix, e.g. "visual.trunk." in an OpenCLIP checkpoint.
    """
    weights = _weights_file(Path(path))
    config_file = weights.parent / "config.json"
    stored = read_json(config_file) if config_file.is_file() else {}
    if "architecture" not in stored and "pretrained_cfg" not in stored:
        stored = {}  # not timm's config.json (a Hugging Face one, say)
    try:
        options = TimmVitOptions.from_timm(
            model_name or stored.get("architecture"),
            stored.get("model_args", {}) | (model_args or {}),
        )
    except ValueError as err:
        raise CheckpointError(f"{config_file if stored else weights}: {err}") from None
    if options.img_size is None and "input_size" in stored.get("pretrained_cfg", {}):
        options.img_size = tuple(stored["pretrained_cfg"]["input_size"][1:])
    if norm_eps is not None:
        options.norm_eps = norm_eps
    try:
        config, state = timm_vit_to_mmseq(read_state_dict(weights), options, prefix)
    except CheckpointError as err:
        raise CheckpointError(f"{weights}: {err}") from None
    preprocessing = read_preprocessing(weights)
    if preprocessing is not None:
        config = replace(config, image_mean=preprocessing.mean, image_std=preprocessing.std)
    encoder = ImageEncoder(config)
    encoder.load_state_dict({k: v.float() for k, v in state.items()})
    return encoder.eval()


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no weights file ({', '.join(WEIGHT_FILES)})")
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    return path


def read_state_dict(path: Path) -> StateDict:
    """Tensors of a `.safetensors` file, or of a torch file loaded with weights_only=True
    (unwrapping a `model` or `state_dict` entry, as training checkpoints hold them)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    data = load_plain(path, "torch file")
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return data


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))

"""The image preprocessing a pretrained encoder was trained with, read from its checkpoint's config:
Hugging Face `preprocessor_config.json` or timm's `pretrained_cfg` (in the `config.json` that
timm writes beside the weights), as `torchvision.transforms.v2`.

Both libraries resize and crop PIL images with Pillow's filters, so the transforms here do the
same steps on the PIL image (any of Pillow's filters works there) and only then convert to a
tensor: the pixels match theirs, not merely approximate them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

from mmseq.errors import CheckpointError
from mmseq.serialization import read_json

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HF_STANDARD_MEAN = HF_STANDARD_STD = (0.5, 0.5, 0.5)
TIMM_DEFAULT_CROP_PCT = 0.875

# Pillow's filter numbers (Image.Resampling), as Hugging Face stores them in `resample`
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_MODES = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "lanczos": v2.InterpolationMode.LANCZOS,
    "box": v2.InterpolationMode.BOX,
    "hamming": v2.InterpolationMode.HAMMING,
}


@dataclass(frozen=True)
class Preprocessing:
    """Resize, optional centre crop, scale to [0, 1], normalise.

    resize: an int resizes the shorter side to it (aspect ratio kept); (height, width) resizes
        to exactly that. crop: centre-crop to this (height, width) afterwards, or None.
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.interpolation not in _MODES:
            raise ValueError(
                f"interpolation: expected one of {sorted(_MODES)}, got {self.interpolation!r}"
            )
        if isinstance(self.resize, int) and self.crop is None:
            raise ValueError("resizing the shorter side needs a crop to give a fixed size")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need 3 values, std positive; got {self.mean}, {self.std}"
            )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the transformed images."""
        return self.crop if self.crop is not None else self.resize  # type: ignore[return-value]

    def transforms(self) -> Callable[[Any], Tensor]:
        """PIL RGB image -> float32 [3, H, W] tensor, as the checkpoint's library prepares it."""
        size = [self.resize] if isinstance(self.resize, int) else list(self.resize)
        steps: list[Callable] = [v2.Resize(size, _MODES[self.interpolation], antialias=True)]
        if self.crop is not None:
            steps.append(v2.CenterCrop(list(self.crop)))
        steps += [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(self.mean), list(self.std)),
            v2.ToPureTensor(),
        ]
        return v2.Compose(steps)


def preprocessing_from_hf(config: dict[str, Any]) -> Preprocessing:
    """A Hugging Face image processor config (`preprocessor_config.json`) -> Preprocessing.

    `size` is {"height", "width"} (resize exactly), {"shortest_edge"} (CLIP, ConvNeXt style)
    or a bare int (older files: the shorter side when a centre crop follows, else a square).
    """
    crop = None
    if config.get("do_center_crop", False):
        crop = _hf_size(config.get("crop_size", 224), "crop_size", square=True)
    resize: int | tuple[int, int]
    if config.get("do_resize", True):
        resize = _hf_size(config.get("size", 224), "size", square=crop is None)
    elif crop is not None:  # no resize: only the crop gives the size
        resize = crop
    else:
        raise ValueError("do_resize is false and there is no crop: the input size is unknown")
    if config.get("do_rescale", True) and not math.isclose(
        config.get("rescale_factor", 1 / 255), 1 / 255
    ):
        raise ValueError(f"rescale_factor {config['rescale_factor']}: only 1/255 is supported")
    if config.get("do_normalize", True):
        mean = config.get("image_mean", HF_STANDARD_MEAN)
        std = config.get("image_std", HF_STANDARD_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = config.get("resample", 2)
    if resample not in _PIL_FILTERS:
        raise ValueError(f"resample: expected one of Pillow's filters 0-5, got {resample!r}")
    return Preprocessing(resize, crop, _PIL_FILTERS[resample], _three(mean), _three(std))


def _hf_size(size: Any, name: str, square: bool) -> int | tuple[int, int]:
    if isinstance(size, int):
        return (size, size) if square else size
    if isinstance(size, dict) and {"height", "width"} <= size.keys():
        return int(size["height"]), int(size["width"])
    if isinstance(size, dict) and set(size) == {"shortest_edge"}:
        return int(size["shortest_edge"])
    raise ValueError(
        f"{name}: expected an int, {{height, width}} or {{shortest_edge}}, got {size!r}"
    )


def preprocessing_from_timm(pretrained_cfg: dict[str, Any]) -> Preprocessing:
    """timm's `pretrained_cfg` -> Preprocessing, as `timm.data.transforms_imagenet_eval` builds
    it: resize to input_size / crop_pct (the shorter side for crop_mode "center", both sides for
    "squash"), centre crop to input_size."""
    _, height, width = pretrained_cfg.get("input_size", (3, 224, 224))
    crop_pct = pretrained_cfg.get("crop_pct") or TIMM_DEFAULT_CROP_PCT
    crop_mode = pretrained_cfg.get("crop_mode") or "center"
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    resize: int | tuple[int, int]
    if crop_mode == "squash":
        resize = scaled
    elif crop_mode == "center" and scaled[0] == scaled[1]:
        resize = scaled[0]
    else:  # "border" pads; "center" for non-square sizes keeps the ratio another way
        raise ValueError(
            f"crop_mode {crop_mode!r} with input_size {height}x{width}: only 'squash', and "
            "'center' for square inputs, are supported"
        )
    interpolation = pretrained_cfg.get("interpolation") or "bicubic"  # resolve_data_config's
    mean = pretrained_cfg.get("mean", IMAGENET_MEAN)
    std = pretrained_cfg.get("std", IMAGENET_STD)
    return Preprocessing(resize, (height, width), interpolation, _three(mean), _three(std))


def read_preprocessing(path: str | Path) -> Preprocessing | None:
    """The preprocessing stored with the weights at `path` (a checkpoint folder, or a weights
    file whose folder is read): `preprocessor_config.json` (Hugging Face), else the
    `pretrained_cfg` of a timm `config.json`. None when neither is there.

    Raises:
        CheckpointError: such a file exists but cannot be read or is not understood.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    hf_file, timm_file = folder / "preprocessor_config.json", folder / "config.json"
    if hf_file.is_file():
        config, parse, where = read_json(hf_file), preprocessing_from_hf, hf_file
    elif timm_file.is_file() and "pretrained_cfg" in (config := read_json(timm_file)):
        config, parse, where = config["pretrained_cfg"], preprocessing_from_timm, timm_file
    else:
        return None
    try:
        return parse(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: {err}") from None


def _three(values: Sequence[float] | float) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = (values,) * 3
    if len(values) != 3:
        raise ValueError(f"expected 3 per-channel values (RGB), got {list(values)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]

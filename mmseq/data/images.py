"""Reading image files as RGB and the transforms that turn them into encoder inputs.

`load_image` accepts what photo collections hold (palette, grayscale, 16-bit, CMYK, alpha,
EXIF-rotated, animated) and refuses what would silently mislead or exhaust a worker (empty,
truncated and non-image files, decompression bombs) with an `ImageLoadError` naming the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import v2

from mmseq.encoders.image import ImageEncoderConfig

log = logging.getLogger(__name__)

# Pillow's own default (Image.MAX_IMAGE_PIXELS): a quarter GiB of 24-bit pixels.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# Transparent pixels are composited on white: the background such images (logos, icons,
# product shots) are drawn on where people see and caption them. Dropping the alpha channel
# instead shows whatever colour the transparent pixels happen to hold, often black.
BACKGROUND = (255, 255, 255)
# Train-time crops keep 85-100 % of the image at about its aspect ratio: enough to vary
# framing, too little to cut away an object a caption mentions. No flips ("left of" would
# become wrong) and no colour jitter (captions name colours).
TRAIN_CROP_SCALE = (0.85, 1.0)
TRAIN_CROP_ASPECT = 0.9  # aspect ratio varies within [target * 0.9, target / 0.9]
Augment = Literal["crop", "none"]


class ImageLoadError(ValueError):
    """An image file could not be turned into an RGB image; the message names file and cause."""


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read `path` as an RGB image, upright (EXIF orientation applied).

    Conversions: palette, grayscale and CMYK become RGB; 16-bit grayscale is scaled to 8 bits
    (``I`` images are taken as 16-bit, ``F`` images as [0, 1]); transparency is composited on
    white; animations give their first frame.

    Args:
        max_pixels: refuse images with more pixels (width x height) before decoding them, as
            decompression bombs. None lifts the limit. A limit above Pillow's process-wide
            `Image.MAX_IMAGE_PIXELS` raises that setting to match (it is never lowered).

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated or corrupt, larger
            than `max_pixels`, or in a mode that has no RGB conversion.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.load()  # the first frame of an animation
        except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, struct.error...
            raise ImageLoadError(f"{path}: truncated or corrupt image data ({exc})") from exc
        image = _upright(image, path)
    return to_rgb(image, path)


def check_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """A cheap check that `path` holds an image: its header is read and `Image.verify` run,
    without decoding the pixels (so a truncated JPEG may still pass).

    Raises:
        ImageLoadError: as `load_image`, for what the header shows.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
        try:
            image.verify()
        except Exception as exc:  # see load_image
            raise ImageLoadError(f"{path}: corrupt image ({exc})") from exc


def to_rgb(image: Image.Image, name: str | os.PathLike = "image") -> Image.Image:
    """`image` in mode RGB (see `load_image` for the conversions)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageLoadError(f"{name}: cannot convert image mode {mode} to RGB ({exc})") from exc


def image_transforms(
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    augment: Augment = "crop",
) -> Callable[[Image.Image], Tensor]:
    """PIL RGB image -> float32 [3, H, W] tensor, normalised with `mean` and `std`.

    The image is resized to exactly `image_size` (height, width) without keeping its aspect
    ratio, as ViT and BLIP preprocessing do: a centre crop could cut away what a caption
    describes, and a very wide or 1x1 image still gives a valid input. With `train` and
    `augment="crop"`, a random crop of 85-100 % of the area follows (see `TRAIN_CROP_SCALE`);
    `augment="none"` trains on the images as they are.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values, std positive; got {mean}, {std}")
    size = [int(height), int(width)]
    check_augment(augment)
    steps: list[Callable] = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if train and augment == "crop":
        aspect = width / height
        ratio = (aspect * TRAIN_CROP_ASPECT, aspect / TRAIN_CROP_ASPECT)
        steps.append(v2.RandomResizedCrop(size, TRAIN_CROP_SCALE, ratio, antialias=True))
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def check_augment(augment: str) -> None:
    if augment not in get_args(Augment):
        raise ValueError(f"augment: expected one of {list(get_args(Augment))}, got {augment!r}")


def encoder_transforms(config: ImageEncoderConfig, train: bool) -> Callable[[Image.Image], Tensor]:
    """`image_transforms` with the size and normalisation the image encoder was trained with."""
    return image_transforms(config.image_size, config.image_mean, config.image_std, train)


def _open(path: Path, max_pixels: int | None) -> Image.Image:
    """The lazily opened image (header read, pixels not decoded), within `max_pixels`."""
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise ImageLoadError(f"{path}: image file {problem}")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: image file is empty (0 bytes)")
    _raise_pillow_limit(max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; `max_pixels` is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image, or a format Pillow cannot read") from None
    except Exception as exc:  # a broken header: OSError, SyntaxError, struct.error...
        raise ImageLoadError(f"{path}: corrupt image header ({exc})") from exc
    pixels = image.width * image.height
    if max_pixels is not None and pixels > max_pixels:
        image.close()
        raise ImageLoadError(
            f"{path}: {image.width}x{image.height} = {pixels} pixels exceeds max_pixels="
            f"{max_pixels}; refused before decoding as a possible decompression bomb (pass a "
            "larger max_pixels to load it)"
        )
    return image


def _raise_pillow_limit(max_pixels: int | None) -> None:
    # Pillow refuses images above twice its process-wide limit inside Image.open; a caller who
    # allows more through `max_pixels` must not be overruled by it.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and (max_pixels is None or max_pixels > limit):
        Image.MAX_IMAGE_PIXELS = max_pixels


def _upright(image: Image.Image, path: Path) -> Image.Image:
    """A loaded copy of `image` with its EXIF orientation applied."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # malformed EXIF: the pixels are still good
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
        return image.copy()


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float32)
    # 16-bit range (Pillow has no way to tell "I" images' depth; 16-bit PNG/TIFF is the
    # common case), float images in [0, 1].
    scale = 255.0 if image.mode == "F" else 255.0 / 65535.0
    gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")

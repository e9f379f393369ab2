"""ViT image encoder: Conv2d patch embedding, optional class token, learned positions
(resampled bicubically for other input sizes), Transformer blocks, final norm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.encoders.base import EncoderOutput, EncoderStack, check_shape
from mmseq.nn import BlockConfig


def _vit_base_block() -> BlockConfig:
    return BlockConfig(d_model=768, n_heads=12, d_ff=3072, norm_eps=1e-6)


@dataclass
class ImageEncoderConfig:
    """Defaults are ViT-B/16 at 224 px."""

    image_size: Sequence[int] | int = (224, 224)  # (height, width) the positions were trained at
    # (height, width) of a patch, or one int for square patches. Full-height strips such as
    # (32, 4) on a 32 px text line turn the image into a left-to-right sequence of columns,
    # which a decoder learns to read far sooner than a 2-D grid (as line-level OCR models do).
    patch_size: Sequence[int] | int = (16, 16)
    in_channels: int = 3
    class_token: bool = True
    # "patch": one strided Conv2d (ViT); "conv": stride-2 3x3 convolutions down to the patch
    # grid (Xiao et al. 2021, "Early convolutions help transformers see better"), which
    # trains faster from scratch on small data. Pretrained ViTs use "patch".
    stem: Literal["patch", "conv"] = "patch"
    # Initial patch positions (always trained): "random" (timm, N(0, 0.02)) or "sincos", the
    # fixed 2-D sine-cosine table of MAE, whose structure (nearby patches alike, x and y
    # apart) a model trained from scratch otherwise has to learn before it can tell "left of"
    # from "above". Pretrained weights overwrite either.
    position_init: Literal["random", "sincos"] = "random"
    n_layers: int = 12
    block: BlockConfig = field(default_factory=_vit_base_block)
    # Preprocessing the encoder was trained with (used by image transforms).
    image_mean: Sequence[float] = (0.5, 0.5, 0.5)
    image_std: Sequence[float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        self.image_size = _pair("image_size", self.image_size)
        self.patch_size = _pair("patch_size", self.patch_size)
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"stem: expected 'patch' or 'conv', got {self.stem!r}")
        if self.position_init not in ("random", "sincos"):
            raise ValueError(
                f"position_init: expected 'random' or 'sincos', got {self.position_init!r}"
            )
        if self.position_init == "sincos" and self.block.d_model % 4:
            raise ValueError(
                f"position_init 'sincos' needs block.d_model divisible by 4, "
                f"got {self.block.d_model}"
            )
        ph, pw = self.patch_size
        if self.stem == "conv" and (ph != pw or ph & (ph - 1)):
            raise ValueError(
                f"stem 'conv' needs a square power-of-two patch_size, got {list(self.patch_size)}"
            )
        if any(side % patch for side, patch in zip(self.image_size, self.patch_size, strict=True)):
            raise ValueError(
                f"image_size {list(self.image_size)} is not a multiple of patch_size "
                f"{list(self.patch_size)} (height, width)"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of patches at the trained image size."""
        (h, w), (ph, pw) = self.image_size, self.patch_size
        return h // ph, w // pw


def _pair(name: str, value: Sequence[int] | int) -> tuple[int, int]:
    """An int or a (height, width) pair as a tuple of two positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name}: expected a positive int or [height, width], got {value!r}")
    return pair


def resample_positions(
    pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], n_prefix: int
) -> Tensor:
    """pos [n_prefix + H*W, D] -> [n_prefix + H'*W', D]; bicubic with antialiasing (as timm's
    `resample_abs_pos_embed`), prefix (class token) positions kept as they are."""
    if old_grid == new_grid:
        return pos
    prefix, grid = pos[:n_prefix], pos[n_prefix:]
    d = pos.shape[-1]
    grid = grid.float().reshape(1, *old_grid, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(-1, d).to(pos.dtype)
    return torch.cat([prefix, grid])


def sincos_positions(grid: tuple[int, int], dim: int) -> Tensor:
    """[rows * columns, dim] 2-D sine-cosine positions (MAE): the first half of each vector
    encodes the row, the second the column, each as sin and cos at dim/4 frequencies."""

    def axis(n: int) -> Tensor:  # [n, dim / 2]
        frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
        angles = torch.arange(n, dtype=torch.float64)[:, None] * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, columns = grid
    row, column = axis(rows), axis(columns)
    table = torch.cat(
        [row[:, None].expand(-1, columns, -1), column[None].expand(rows, -1, -1)], dim=-1
    )
    return table.reshape(rows * columns, dim).float()


class ConvStem(nn.Sequential):
    """[B, C, H, W] -> [B, D, H/p, W/p]: log2(p) stride-2 3x3 convolutions, each followed by
    BatchNorm and ReLU, channels doubling up to D, then a 1x1 projection to D (Xiao et al.
    2021; timm's `ConvStem`). The normalisation is what makes it train fast: without it the
    stem learned no sooner than a single patch projection."""

    def __init__(self, in_channels: int, d_model: int, patch_size: int) -> None:
        n = patch_size.bit_length() - 1
        widths = [in_channels] + [max(16, d_model // 2 ** (n - 1 - i)) for i in range(n)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], d_model, 1))
        super().__init__(*layers)


class ImageEncoder(nn.Module):
    def __init__(self, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.block.d_model
        if cfg.stem == "conv":
            self.patch_embed: nn.Module = ConvStem(cfg.in_channels, d, cfg.patch_size[0])
        else:
            self.patch_embed = nn.Conv2d(cfg.in_channels, d, cfg.patch_size, stride=cfg.patch_size)
        self.n_prefix = 1 if cfg.class_token else 0
        self.class_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        n_patches = cfg.grid[0] * cfg.grid[1]
        self.positions = nn.Parameter(torch.randn(self.n_prefix + n_patches, d) * 0.02)
        if cfg.position_init == "sincos":
            with torch.no_grad():
                self.positions[self.n_prefix :] = sincos_positions(cfg.grid, d)
        self.stack = EncoderStack(cfg.block, cfg.n_layers)

    @property
    def d_model(self) -> int:
        return self.config.block.d_model

    def forward(self, images: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """images [B, C, H, W], normalised -> states [B, n_prefix + (H/p)*(W/p), D].

        H and W may differ from the trained size (positions are resampled) but must be
        multiples of the patch height and width. `lengths` is accepted for a uniform encoder
        signature and must be None: images are never padded.
        """
        cfg = self.config
        ph, pw = cfg.patch_size
        check_shape(
            "image input",
            images,
            f"[B, {cfg.in_channels}, H, W] with H a multiple of {ph} and W of {pw}",
            images.dim() == 4
            and images.shape[1] == cfg.in_channels
            and images.shape[2] % ph == 0
            and images.shape[3] % pw == 0,
        )
        if lengths is not None:
            raise ValueError("image input: lengths must be None (images are not padded)")
        dtype = self.positions.dtype
        x = self.patch_embed(images.to(dtype))  # [B, D, H/p, W/p]
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # [B, N, D]
        if self.class_token is not None:
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + resample_positions(self.positions, cfg.grid, grid, self.n_prefix)
        return EncoderOutput(self.stack(x), None)

"""Absolute position embeddings: fixed sinusoids (Whisper's encoder) or learned (decoders, ViT)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

PositionKind = Literal["sinusoidal", "learned"]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's table [length, channels]: sines in the first half, cosines in the second."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled_time = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1)


class PositionEmbedding(nn.Module):
    """A [n_ctx, D] table, stored in the state dict either way.

    The sinusoid table is a persistent buffer so that checkpoints which store their own rounded
    copy (Whisper's fp16 files) load it bit for bit.
    """

    def __init__(self, kind: PositionKind, n_ctx: int, dim: int) -> None:
        super().__init__()
        if kind == "sinusoidal":
            self.register_buffer("weight", sinusoids(n_ctx, dim))
        elif kind == "learned":
            self.weight = nn.Parameter(torch.empty(n_ctx, dim).normal_(std=0.02))
        else:
            raise ValueError(f"positions: expected 'sinusoidal' or 'learned', got {kind!r}")

    @property
    def n_ctx(self) -> int:
        return self.weight.shape[0]

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Positions offset..offset+length -> [length, D]."""
        if offset + length > self.n_ctx:
            raise ValueError(
                f"sequence of {offset + length} positions is longer than the model's "
                f"{self.n_ctx} (n_ctx)"
            )
        return self.weight[offset : offset + length]

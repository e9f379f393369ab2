"""Normalisation layers that compute in fp32 under half precision, as Whisper does.

bf16/fp16 statistics over a 384..1280-wide row lose enough precision to change transcripts, so
the input and the affine parameters are upcast and the result is cast back.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

NormKind = Literal["layernorm", "rmsnorm"]


def _fp32(p: Tensor | None) -> Tensor | None:
    return None if p is None else p.float()


class LayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(
            x.float(), self.normalized_shape, _fp32(self.weight), _fp32(self.bias), self.eps
        )
        return y.type(x.dtype)


class RMSNorm(nn.RMSNorm):
    """Root-mean-square norm without centring or bias (T5, LLaMA)."""

    def forward(self, x: Tensor) -> Tensor:
        y = F.rms_norm(x.float(), self.normalized_shape, _fp32(self.weight), self.eps)
        return y.type(x.dtype)


def make_norm(kind: NormKind, dim: int, eps: float) -> nn.Module:
    """Build the norm named by a config field."""
    if kind == "layernorm":
        return LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"norm: expected 'layernorm' or 'rmsnorm', got {kind!r}")

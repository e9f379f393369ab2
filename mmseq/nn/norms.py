"""Normalisation layers that compute in fp32 under half precision, as Whisper does.

bf16/fp16 statistics over a 384..1280-wide row lose enough precision to change transcripts, so
the input and the affine parameters are upcast and the result is cast back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormKind = Literal["layernorm", "rmsnorm"]


def _fp32(p: Tensor | None) -> Tensor | None:
    return None if p is None else p.float()


class LayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            # the CPU kernel takes bf16 rows with fp32 parameters and computes in fp32: no
            # upcast copy and no downcast copy of the activations (9 norms were 15% of a bf16
            # tiny.en encoder pass); the result differs from the copying path in 1 value in
            # 36,000, by one bf16 step
            return F.layer_norm(
                x, self.normalized_shape, _fp32(self.weight), _fp32(self.bias), self.eps
            )
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

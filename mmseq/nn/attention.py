"""Multi-head attention on `F.scaled_dot_product_attention`, with a preallocated KV cache.

Self-attention fuses the query/key/value projections into one matmul (fewer kernel launches per
decoded token). A bias on the key projection never changes attention (it adds the same q.b to
every score of a row), so models without one, like Whisper, load with that slice set to zero.
Cross-attention projects the encoder states to keys and values once per input
(`project_context`); decoding steps reuse them.

Masks follow SDPA: a bool tensor broadcastable to [B, H, Tq, Tk], True where attention is
allowed, or a float tensor added to the scores (e.g. T5's relative position bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """Keys and values of one self-attention layer, preallocated and written in place.

    keys, values: [B, H, max_len, Dh]. Fixed shapes keep `torch.compile` and CUDA graphs happy;
    writing past `max_len` raises instead of silently wrapping or growing.
    """

    def __init__(
        self,
        batch: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (batch, n_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def write(self, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Store k, v [B, H, T, Dh] at positions start..start+T; return all keys/values so far."""
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: positions up to {end} requested, cache holds {self.max_len}; "
                "lower max_new_tokens or create the cache with a larger max_len"
            )
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    def reorder(self, index: Tensor, length: int) -> None:
        """Make row i hold what row index[i] held (beam search), for the first `length` slots."""
        self.keys[:, :, :length] = self.keys[index, :, :length]
        self.values[:, :, :length] = self.values[index, :, :length]


class _Attention(nn.Module):
    """What self- and cross-attention share: head split/merge, SDPA, output projection."""

    def __init__(self, d_model: int, n_heads: int, bias: bool, scale: float | None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scale = scale
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, H*Dh] -> [B, H, T, Dh]"""
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """q [B, H, Tq, Dh], k/v [B, H, Tk, Dh] -> [B, Tq, D] after the output projection."""
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale
        )
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class SelfAttention(_Attention):
    def __init__(
        self, d_model: int, n_heads: int, *, bias: bool = True, scale: float | None = None
    ) -> None:
        super().__init__(d_model, n_heads, bias, scale)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        position: int = 0,
    ) -> Tensor:
        """x [B, T, D] -> [B, T, D]. With a cache, x holds positions position..position+T."""
        q, k, v = (self.split_heads(p) for p in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            k, v = cache.write(k, v, position)
        return self.attend(q, k, v, mask, causal)


class CrossAttention(_Attention):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        d_context: int | None = None,
        bias: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__(d_model, n_heads, bias, scale)
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_context or d_model, 2 * d_model, bias=bias)

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """context [B, S, Dc] -> keys, values [B, H, S, Dh]; computed once per input."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def scores(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        """Scaled query-key scores [B, H, T, S] in fp32, before the softmax (SDPA never
        materialises them; alignment needs them)."""
        q = self.split_heads(self.q(x)).float()
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        return (q @ kv[0].float().transpose(-1, -2)) * scale

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None = None) -> Tensor:
        """x [B, T, D] attends to the projected context kv -> [B, T, D]."""
        return self.attend(self.split_heads(self.q(x)), *kv, mask, causal=False)


def padding_mask_for_sdpa(mask: Tensor | None) -> Tensor | None:
    """Key padding mask [B, S] (True = real token) -> SDPA bool mask [B, 1, 1, S]."""
    return None if mask is None else mask[:, None, None, :]


def causal_mask_with_offset(length: int, position: int, device: torch.device) -> Tensor:
    """Bool mask [T, position+T]: query i (at absolute position+i) sees keys 0..position+i."""
    return torch.ones(length, position + length, dtype=torch.bool, device=device).tril(position)

"""Multi-head attention on `F.scaled_dot_product_attention`, with a preallocated KV cache.

Self-attention fuses the query/key/value projections into one matmul (fewer kernel launches per
decoded token). A bias on the key projection never changes attention (it adds the same q.b to
every score of a row), so models without one, like Whisper, load with that slice set to zero.
Cross-attention projects the encoder states to keys and values once per input
(`project_context`); decoding steps reuse them.

The inner width (heads x head_dim) may differ from the model width (T5's d_kv). Masks follow
SDPA: a bool tensor broadcastable to [B, H, Tq, Tk], True where attention is allowed, or a float
tensor added to the scores (T5's relative position bias with -inf where attention is not
allowed; see `merge_masks`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """Keys and values of one self-attention layer, preallocated and written in place.

    keys, values: [B, H, max_len, Dh]. A step writes its new keys at their positions. Under
    `torch.compile` attention reads the whole fixed-size buffer under a mask that hides the
    slots not yet written (built from `DecoderCache.key_positions`), so every decoding step has
    the same shapes: it compiles once and CUDA graphs can replay it. Run eagerly, it reads only
    the slots written so far (`length`): the same result, without the work on empty slots.
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
        self._spare: tuple[Tensor, Tensor] | None = None  # beam search's reorder target

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def write(
        self, k: Tensor, v: Tensor, positions: Tensor, length: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Store k, v [B, H, T, Dh] at positions [T] (long); return the buffers' first `length`
        slots (default: all of them).

        The caller checks positions against max_len (`DecoderCache.claim`): a bounds check
        here would read the tensor back to Python at every step."""
        self.keys.index_copy_(2, positions, k.to(self.keys.dtype))
        self.values.index_copy_(2, positions, v.to(self.values.dtype))
        if length is None:
            return self.keys, self.values
        return self.keys[:, :, :length], self.values[:, :, :length]

    def reorder(self, index: Tensor, length: int) -> None:
        """Make row i hold what row index[i] held, for the first `length` slots (beam search);
        an index with fewer rows than the cache drops the others (finished inputs).

        The rows are gathered into a second pair of buffers, which then become the cache: one
        copy instead of a gather and a copy back (3x faster at batch 32 x 4 beams). Buffers
        are zeros, not empty: a compiled step reads the unwritten slots too (masked, but a NaN
        there would survive the mask: 0 x NaN is NaN)."""
        rows = index.shape[0]
        if rows != self.keys.shape[0]:  # fewer rows: new, smaller buffers
            shape = (rows, *self.keys.shape[1:])
            target = (self.keys.new_zeros(shape), self.values.new_zeros(shape))
            spare = None
        else:
            if self._spare is None:
                self._spare = (torch.zeros_like(self.keys), torch.zeros_like(self.values))
            target, spare = self._spare, (self.keys, self.values)
        for old, new in zip((self.keys, self.values), target, strict=True):
            torch.index_select(old[:, :, :length], 0, index, out=new[:, :, :length])
        (self.keys, self.values), self._spare = target, spare


class _Attention(nn.Module):
    """What self- and cross-attention share: head split/merge, SDPA, output projection."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int | None,
        bias: bool,
        scale: float | None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if d_model % n_heads:
                raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
            head_dim = d_model // n_heads
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.inner = n_heads * head_dim
        self.scale = scale
        self.dropout = dropout  # on the attention probabilities, in training only
        self.out = nn.Linear(self.inner, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, H*Dh] -> [B, H, T, Dh]"""
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """q [B, H, Tq, Dh], k/v [B, H, Tk, Dh] -> [B, Tq, D] after the output projection."""
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
        )
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class SelfAttention(_Attention):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        head_dim: int | None = None,
        bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim, bias, scale, dropout)
        self.qkv = nn.Linear(d_model, 3 * self.inner, bias=bias)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
        cache_length: int | None = None,
    ) -> Tensor:
        """x [B, T, D] -> [B, T, D]. With a cache, x holds the tokens at positions [T] and
        attention reads the cache's first `cache_length` slots (default: all); the mask must
        hide those that are not yet written."""
        q, k, v = (self.split_heads(p) for p in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            if positions is None:
                raise ValueError("self-attention with a cache needs the tokens' positions")
            k, v = cache.write(k, v, positions, cache_length)
        return self.attend(q, k, v, mask, causal)


class CrossAttention(_Attention):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        d_context: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, head_dim, bias, scale, dropout)
        self.q = nn.Linear(d_model, self.inner, bias=bias)
        self.kv = nn.Linear(d_context or d_model, 2 * self.inner, bias=bias)

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """context [B, S, Dc] -> keys, values [B, H, S, Dh]; computed once per input."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def scores(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        """Scaled query-key scores [R, H, T, S] in fp32, before the softmax (SDPA never
        materialises them; alignment needs them). R: as in `forward`."""
        q = self.split_heads(self.q(x)).float()
        keys = kv[0].repeat_interleave(q.shape[0] // kv[0].shape[0], 0)
        scale = self.scale if self.scale is not None else self.head_dim**-0.5
        return (q @ keys.float().transpose(-1, -2)) * scale

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None = None) -> Tensor:
        """x [R, T, D] attends to the projected context kv (keys, values [B, H, S, Dh]; mask
        [B, 1, 1, S] or None) -> [R, T, D].

        R is B, or a multiple G of it: then each run of G rows (the beams or samples of one
        input) shares its input's keys and values, which are stored and read once rather than
        G times (at beam 5 the cross-attention read 5 copies of 1500 keys per layer and step).
        The G rows' queries are folded into the query axis of their input: cross-attention has
        no mask between queries, so each still attends on its own."""
        q = self.split_heads(self.q(x))
        k, v = kv
        rows, inputs = q.shape[0], k.shape[0]
        if rows == inputs:
            return self.attend(q, k, v, mask, causal=False)
        _, h, t, d = q.shape
        group = rows // inputs
        q = q.view(inputs, group, h, t, d).transpose(1, 2).reshape(inputs, h, group * t, d)
        return self.attend(q, k, v, mask, causal=False).view(rows, t, -1)


def padding_mask_for_sdpa(mask: Tensor | None) -> Tensor | None:
    """Key padding mask [B, S] (True = real token) -> SDPA bool mask [B, 1, 1, S]."""
    return None if mask is None else mask[:, None, None, :]


def causal_mask_with_offset(length: int, position: int, device: torch.device) -> Tensor:
    """Bool mask [T, position+T]: query i (at absolute position+i) sees keys 0..position+i."""
    return torch.ones(length, position + length, dtype=torch.bool, device=device).tril(position)


def merge_masks(bias: Tensor | None, allowed: Tensor | None) -> Tensor | None:
    """One SDPA mask from an additive bias [.., Tq, Tk] and a bool mask (True = allowed), both
    broadcastable to [B, H, Tq, Tk]: the bias where allowed, -inf elsewhere."""
    if bias is None:
        return allowed
    if allowed is None:
        return bias
    return bias.masked_fill(~allowed, -float("inf"))

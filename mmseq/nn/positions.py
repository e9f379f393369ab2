"""Where a token sits: absolute tables added to the embeddings, or T5's relative attention bias.

Kinds (a config field of every encoder and of the decoder):
- "none": no positions (a stack that gets them elsewhere, e.g. a convolutional front-end).
- "learned": a trained [n_ctx + offset, D] table read at position + offset (BART's offset is 2,
  a relic of fairseq's padding index).
- "sinusoidal": Whisper's fixed table, frequencies 10000^(-i / (D/2 - 1)).
- "sinusoidal_marian": Marian's and Pegasus' fixed table, frequencies 10000^(-2i / D); sines in
  the first half, cosines in the second (halves, not interleaved) as Whisper's.
- "relative": T5's bucketed relative bias added to the attention scores (`RelativePositionBias`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

PositionKind = Literal["none", "learned", "sinusoidal", "sinusoidal_marian", "relative"]
POSITION_KINDS: tuple[str, ...] = PositionKind.__args__  # type: ignore[attr-defined]
ABSOLUTE_KINDS = ("learned", "sinusoidal", "sinusoidal_marian")


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's table [length, channels]: sines in the first half, cosines in the second."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    return _halves(length, torch.exp(-increment * torch.arange(channels // 2)))


def marian_sinusoids(length: int, channels: int) -> Tensor:
    """Marian's / Pegasus' table [length, channels]: sin(p / 10000^(2i/D)) | cos(...)."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {channels}")
    # float64 exponents, as the reference computes them in numpy before casting
    exponents = 2 * torch.arange(channels // 2, dtype=torch.float64) / channels
    return _halves(length, 1.0 / torch.pow(10000.0, exponents))


def _halves(length: int, inv_timescales: Tensor) -> Tensor:
    scaled = torch.arange(length, dtype=inv_timescales.dtype)[:, None] * inv_timescales[None, :]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1).float()


class PositionEmbedding(nn.Module):
    """An absolute [n_ctx + offset, D] table, stored in the state dict whatever its kind.

    The sinusoid tables are persistent buffers so that checkpoints which store their own rounded
    copy (Whisper's fp16 files) load it bit for bit.
    """

    def __init__(self, kind: PositionKind, n_ctx: int, dim: int, offset: int = 0) -> None:
        super().__init__()
        if offset < 0:
            raise ValueError(f"position_offset must be >= 0, got {offset}")
        self.offset = offset
        rows = n_ctx + offset
        if kind == "sinusoidal":
            self.register_buffer("weight", sinusoids(rows, dim))
        elif kind == "sinusoidal_marian":
            self.register_buffer("weight", marian_sinusoids(rows, dim))
        elif kind == "learned":
            self.weight = nn.Parameter(torch.empty(rows, dim).normal_(std=0.02))
        else:
            raise ValueError(f"absolute positions: expected one of {ABSOLUTE_KINDS}, got {kind!r}")

    @property
    def n_ctx(self) -> int:
        return self.weight.shape[0] - self.offset

    def forward(self, length: int, offset: int = 0) -> Tensor:
        """Positions offset..offset+length -> [length, D]."""
        self.check(offset + length)
        start = self.offset + offset
        return self.weight[start : start + length]

    def at(self, positions: Tensor) -> Tensor:
        """positions [T] (long, already checked against n_ctx) -> [T, D]; a gather, so a
        compiled decoding step does not specialise on the position."""
        return self.weight[positions + self.offset]

    def check(self, end: int) -> None:
        if end > self.n_ctx:
            raise ValueError(
                f"sequence of {end} positions is longer than the model's {self.n_ctx} (n_ctx)"
            )


def make_positions(kind: PositionKind, n_ctx: int, dim: int, offset: int = 0) -> nn.Module | None:
    """The absolute table for `kind`, or None for "none" and "relative"."""
    if kind not in POSITION_KINDS:
        raise ValueError(f"positions: expected one of {POSITION_KINDS}, got {kind!r}")
    if kind in ("none", "relative"):
        return None
    return PositionEmbedding(kind, n_ctx, dim, offset)


class RelativePositionBias(nn.Module):
    """T5's relative attention bias: a [num_buckets, H] table read at bucket(key - query).

    Bidirectional (encoder): half the buckets for keys after the query. Causal (decoder): only
    keys at or before the query count. Distances below num_buckets/2 (per direction) get a bucket
    each; longer ones share log-spaced buckets up to max_distance.
    """

    def __init__(
        self, n_heads: int, num_buckets: int, max_distance: int, bidirectional: bool
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, n_heads)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.bidirectional = bidirectional

    def buckets(self, relative: Tensor) -> Tensor:
        """relative (key - query) positions, long -> bucket ids of the same shape."""
        n = self.num_buckets
        bucket = torch.zeros_like(relative)
        if self.bidirectional:
            n //= 2
            bucket = bucket + (relative > 0).long() * n
            distance = relative.abs()
        else:
            distance = -torch.clamp(relative, max=0)
        exact = n // 2
        # the division by zero at distance 0 is masked by the torch.where below, as in T5
        log_scaled = torch.log(distance.float() / exact) / math.log(self.max_distance / exact)
        far = exact + (log_scaled * (n - exact)).long()
        far = torch.clamp(far, max=n - 1)
        return bucket + torch.where(distance < exact, distance, far)

    def forward(self, query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """query [Tq], key [Tk] positions (long) -> additive bias [1, H, Tq, Tk] in fp32."""
        relative = key_positions[None, :] - query_positions[:, None]
        bias = self.embedding(self.buckets(relative))  # [Tq, Tk, H]
        return bias.permute(2, 0, 1)[None].float()

"""What a text encoder and the decoder share: their config fields and the embedding of tokens.

The families differ only in these values (shared/reference/text-seq2seq-models.md):
- Whisper's decoder: learned positions, pre-LN, final norm.
- T5: relative positions, pre-LN RMSNorm, final norm.
- BART: learned positions at index + 2, sqrt(d) scale when `scale_embedding`, an embedding
  LayerNorm, post-LN, no final norm (mBART: pre-LN, embedding norm and final norm).
- Marian, Pegasus: sqrt(d) scale, Marian's sinusoids; Marian post-LN, Pegasus pre-LN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mmseq.nn.blocks import BlockConfig
from mmseq.nn.norms import make_norm
from mmseq.nn.positions import POSITION_KINDS, PositionKind, RelativePositionBias, make_positions


@dataclass
class TextStackConfig:
    """A stack of Transformer blocks over token ids (subclassed by the encoder and decoder)."""

    vocab_size: int = 32000
    n_ctx: int = 512  # longest token sequence
    n_layers: int = 4
    block: BlockConfig = field(default_factory=BlockConfig)
    positions: PositionKind = "learned"
    position_offset: int = 0  # learned table rows skipped before position 0 (BART: 2)
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (BART, Marian)
    embedding_norm: bool = False  # a norm after embeddings + positions (BART's layernorm_embedding)
    final_norm: bool | None = None  # a norm after the last block; None: when the blocks are pre-LN
    relative_buckets: int = 32  # T5's relative positions: buckets per stack ...
    relative_max_distance: int = 128  # ... and the distance at which the last bucket starts

    def __post_init__(self) -> None:
        if self.positions not in POSITION_KINDS:
            raise ValueError(f"positions: expected one of {POSITION_KINDS}, got {self.positions!r}")

    @property
    def has_final_norm(self) -> bool:
        return self.block.pre_norm if self.final_norm is None else self.final_norm


class TextStack(nn.Module):
    """Base of the text encoder and the decoder: the embedding of tokens they share.

    tokens [B, T] -> token_embedding x scale + absolute positions -> embedding_norm -> dropout.
    `token_embedding` may be a module shared with another stack (T5, BART and Marian share one
    table between encoder and decoder).
    """

    def __init__(self, cfg: TextStackConfig, token_embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        d = cfg.block.d_model
        if token_embedding is None:
            token_embedding = nn.Embedding(cfg.vocab_size, d)
            # N(0, 1) (PyTorch's default) makes tied logits huge at initialisation; GPT-2's 0.02
            nn.init.normal_(token_embedding.weight, std=0.02)
        self.token_embedding = token_embedding
        self.positions = make_positions(cfg.positions, cfg.n_ctx, d, cfg.position_offset)
        self.embed_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        norm = cfg.block.norm, d, cfg.block.norm_eps
        self.embedding_norm = make_norm(*norm) if cfg.embedding_norm else None
        self.embed_dropout = nn.Dropout(cfg.block.dropout)
        self.n_ctx = cfg.n_ctx

    @property
    def d_model(self) -> int:
        return self.token_embedding.weight.shape[1]

    def embed(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """tokens [B, T] at positions [T] (default 0..T-1; checked by the caller) -> [B, T, D]."""
        x = self.token_embedding(tokens)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        if self.positions is not None:
            if positions is None:
                table = self.positions(tokens.shape[1])
            else:
                table = self.positions.at(positions)
            x = x + table.to(x.dtype)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        return self.embed_dropout(x)

    def check_length(self, end: int, what: str) -> None:
        """Refuse positions past n_ctx, whatever the position kind (a relative stack has no
        table that would catch it, but the model was never trained past it)."""
        if end > self.n_ctx:
            raise ValueError(
                f"{what} of {end} positions is longer than the model's {self.n_ctx} (n_ctx)"
            )


def relative_bias(cfg: TextStackConfig, bidirectional: bool) -> RelativePositionBias | None:
    """T5's bias table for a stack with relative positions, else None."""
    if cfg.positions != "relative":
        return None
    return RelativePositionBias(
        cfg.block.n_heads, cfg.relative_buckets, cfg.relative_max_distance, bidirectional
    )


def positions_of(length: int, device: torch.device, offset: int = 0) -> Tensor:
    """Positions offset..offset+length as a long tensor [length]."""
    return torch.arange(offset, offset + length, device=device)

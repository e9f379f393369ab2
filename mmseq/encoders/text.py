"""Text encoder: token embedding, positions, Transformer blocks with a padding mask."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from mmseq.encoders.base import (
    EncoderOutput,
    EncoderStack,
    check_shape,
    lengths_to_mask,
)
from mmseq.nn import BlockConfig, PositionEmbedding
from mmseq.nn.positions import PositionKind


@dataclass
class TextEncoderConfig:
    vocab_size: int = 32000
    n_ctx: int = 512
    n_layers: int = 4
    block: BlockConfig = field(default_factory=BlockConfig)
    positions: PositionKind = "learned"
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (BART, Marian)


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.block.d_model
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positions = PositionEmbedding(cfg.positions, cfg.n_ctx, d)
        self.embed_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        self.stack = EncoderStack(cfg.block, cfg.n_layers)

    @property
    def d_model(self) -> int:
        return self.config.block.d_model

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """tokens [B, T] (right-padded), lengths [B] or None -> states [B, T, D]."""
        check_shape("text input", tokens, "token ids [B, T]", tokens.dim() == 2)
        x = self.token_embedding(tokens) * self.embed_scale
        x = x + self.positions(tokens.shape[1]).to(x.dtype)
        mask = None if lengths is None else lengths_to_mask(lengths.to(x.device), tokens.shape[1])
        return EncoderOutput(self.stack(x, mask), mask)

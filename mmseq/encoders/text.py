"""Text encoder: token embedding, positions, Transformer blocks with a padding mask."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from mmseq.encoders.base import EncoderOutput, EncoderStack, check_shape, lengths_to_mask
from mmseq.nn.text_stack import TextStack, TextStackConfig, relative_bias


@dataclass
class TextEncoderConfig(TextStackConfig):
    """Defaults: a small learned-position encoder; importers set each family's values."""


class TextEncoder(TextStack):
    def __init__(self, cfg: TextEncoderConfig, token_embedding: nn.Embedding | None = None) -> None:
        super().__init__(cfg, token_embedding)
        self.config = cfg
        self.stack = EncoderStack(
            cfg.block, cfg.n_layers, cfg.has_final_norm, relative_bias(cfg, bidirectional=True)
        )

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """tokens [B, T] (right-padded), lengths [B] or None -> states [B, T, D]."""
        check_shape("text input", tokens, "token ids [B, T]", tokens.dim() == 2)
        self.check_length(tokens.shape[1], "text input")
        x = self.embed(tokens)
        mask = None if lengths is None else lengths_to_mask(lengths.to(x.device), tokens.shape[1])
        return EncoderOutput(self.stack(x, mask), mask)

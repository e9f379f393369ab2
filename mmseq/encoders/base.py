"""What every encoder returns, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmseq.nn import BlockConfig, TransformerBlock, make_norm, padding_mask_for_sdpa


@dataclass
class EncoderOutput:
    """states [B, S, D]; mask [B, S] bool (True = real position) or None when nothing is padded.

    None rather than an all-True mask keeps SDPA on its fastest (flash / mask-free) kernels.
    """

    states: Tensor
    mask: Tensor | None = None


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """lengths [B] -> bool mask [B, max_len], True for positions < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class EncoderStack(nn.Module):
    """N self-attention blocks plus the final norm that pre-LN stacks need."""

    def __init__(self, block: BlockConfig, n_layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(n_layers))
        self.norm = make_norm(block.norm, block.d_model, block.norm_eps) if block.pre_norm else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, S, D], mask [B, S] or None -> [B, S, D]"""
        attn_mask = padding_mask_for_sdpa(mask)
        for block in self.blocks:
            x = block(x, mask=attn_mask)
        return x if self.norm is None else self.norm(x)


def check_shape(name: str, x: Tensor, expected: str, ok: bool) -> None:
    """Raise a ValueError that names the input and the expected shape."""
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got shape {tuple(x.shape)}")

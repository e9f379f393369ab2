"""What every encoder returns, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmseq.nn import BlockConfig, TransformerBlock, make_norm, padding_mask_for_sdpa
from mmseq.nn.attention import merge_masks
from mmseq.nn.positions import RelativePositionBias


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
    """N self-attention blocks, then a final norm (by default when the blocks are pre-LN).

    relative: T5's position bias, computed once and added to every layer's scores."""

    def __init__(
        self,
        block: BlockConfig,
        n_layers: int,
        final_norm: bool | None = None,
        relative: RelativePositionBias | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(n_layers))
        final_norm = block.pre_norm if final_norm is None else final_norm
        self.norm = make_norm(block.norm, block.d_model, block.norm_eps) if final_norm else None
        self.relative = relative

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, S, D], mask [B, S] or None -> [B, S, D]"""
        attn_mask = padding_mask_for_sdpa(mask)
        if self.relative is not None:
            positions = torch.arange(x.shape[1], device=x.device)
            attn_mask = merge_masks(self.relative(positions, positions), attn_mask)
        for block in self.blocks:
            x = block(x, mask=attn_mask)
        return x if self.norm is None else self.norm(x)


def check_shape(name: str, x: Tensor, expected: str, ok: bool) -> None:
    """Raise a ValueError that names the input and the expected shape."""
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got shape {tuple(x.shape)}")

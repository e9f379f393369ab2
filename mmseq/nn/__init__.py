"""Building blocks: attention with a KV cache, configurable Transformer blocks, positions, norms."""

from mmseq.nn.attention import (
    CrossAttention,
    KVCache,
    SelfAttention,
    causal_mask_with_offset,
    merge_masks,
    padding_mask_for_sdpa,
)
from mmseq.nn.blocks import MLP, BlockConfig, TransformerBlock
from mmseq.nn.norms import LayerNorm, RMSNorm, make_norm
from mmseq.nn.positions import (
    PositionEmbedding,
    RelativePositionBias,
    make_positions,
    marian_sinusoids,
    sinusoids,
)

__all__ = [
    "MLP",
    "BlockConfig",
    "CrossAttention",
    "KVCache",
    "LayerNorm",
    "PositionEmbedding",
    "RMSNorm",
    "RelativePositionBias",
    "SelfAttention",
    "TransformerBlock",
    "causal_mask_with_offset",
    "make_norm",
    "make_positions",
    "marian_sinusoids",
    "merge_masks",
    "padding_mask_for_sdpa",
    "sinusoids",
]

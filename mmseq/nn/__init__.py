"""Building blocks: attention with a KV cache, configurable Transformer blocks, positions, norms."""

from mmseq.nn.attention import (
    CrossAttention,
    KVCache,
    SelfAttention,
    causal_mask_with_offset,
    padding_mask_for_sdpa,
)
from mmseq.nn.blocks import MLP, BlockConfig, TransformerBlock
from mmseq.nn.norms import LayerNorm, RMSNorm, make_norm
from mmseq.nn.positions import PositionEmbedding, sinusoids

__all__ = [
    "MLP",
    "BlockConfig",
    "CrossAttention",
    "KVCache",
    "LayerNorm",
    "PositionEmbedding",
    "RMSNorm",
    "SelfAttention",
    "TransformerBlock",
    "causal_mask_with_offset",
    "make_norm",
    "padding_mask_for_sdpa",
    "sinusoids",
]

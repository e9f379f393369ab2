"""Transformer blocks whose variants (pre/post-LN, LayerNorm/RMSNorm, GELU/ReLU, gated MLP,
biases) are chosen by a config dataclass rather than by subclassing.

Whisper and ViT are pre-LN LayerNorm GELU blocks with biases; BART/Marian are the same blocks with
`pre_norm=False` (Marian with SiLU); T5 is `norm="rmsnorm", bias=False, activation="relu",
attention_scale=1.0, head_dim=d_kv` plus an additive relative-position bias passed in as the
attention mask; T5 v1.1 adds `gated_mlp=True, activation="gelu_tanh"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.nn.attention import CrossAttention, KVCache, SelfAttention
from mmseq.nn.norms import NormKind, make_norm

Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact erf form, as Whisper and ViT use
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass
class BlockConfig:
    """One Transformer layer. Defaults are Whisper tiny's."""

    d_model: int = 384
    n_heads: int = 6
    d_ff: int = 1536
    activation: Activation = "gelu"
    gated_mlp: bool = False  # T5 v1.1 / LLaMA style: act(fc1 x) * gate x
    bias: bool = True
    norm: NormKind = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = True
    dropout: float = 0.0  # on each sub-layer's output (the residual branch)
    activation_dropout: float | None = None  # on the MLP's hidden units; None: `dropout`
    attention_dropout: float = 0.0  # on the attention probabilities
    attention_scale: float | None = None  # None: 1/sqrt(head_dim)
    head_dim: int | None = None  # None: d_model / n_heads (T5's d_kv may differ)
    # Compute the MLP's output projection in fp32 under fp16/bf16, its weight kept fp32: T5's
    # `wo` overflows fp16 otherwise (transformers#9295).
    fp32_mlp_output: bool = False

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )


class MLP(nn.Module):
    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.gated_mlp else None
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.act = _ACTIVATIONS[cfg.activation]
        hidden_dropout = cfg.dropout if cfg.activation_dropout is None else cfg.activation_dropout
        self.dropout = nn.Dropout(hidden_dropout)
        self.fp32_output = cfg.fp32_mlp_output

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc1(x))
        if self.gate is not None:
            h = h * self.gate(x)
        h = self.dropout(h)
        if not self.fp32_output or x.dtype == torch.float32:
            return self.fc2(h)
        y = self.fc2(h.float())  # fc2 stays fp32 (mmseq.precision keeps it)
        if x.dtype == torch.float16:  # as T5 does: clamp rather than overflow to inf
            limit = torch.finfo(torch.float16).max - 1000
            y = y.clamp(-limit, limit)
        return y.to(x.dtype)


class TransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, MLP; each a residual sub-layer with a norm."""

    def __init__(self, cfg: BlockConfig, cross_attention: bool = False) -> None:
        super().__init__()
        self.pre_norm = cfg.pre_norm
        attn_args = {
            "bias": cfg.bias,
            "scale": cfg.attention_scale,
            "head_dim": cfg.head_dim,
            "dropout": cfg.attention_dropout,
        }
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, **attn_args)
        self.attn_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.cross_attn = None
        self.cross_attn_norm = None
        if cross_attention:
            self.cross_attn = CrossAttention(cfg.d_model, cfg.n_heads, **attn_args)
            self.cross_attn_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.mlp_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def _residual(self, x: Tensor, norm: nn.Module, fn: Callable[[Tensor], Tensor]) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(fn(norm(x)))
        return norm(x + self.dropout(fn(x)))

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        positions: Tensor | None = None,
        cache_length: int | None = None,
        context_kv: tuple[Tensor, Tensor] | None = None,
        context_mask: Tensor | None = None,
        cross_scores: list[Tensor] | None = None,
    ) -> Tensor:
        """x [B, T, D] -> [B, T, D].

        mask/causal/cache/positions/cache_length go to self-attention; context_kv (from
        `cross_attn.project_context`) and context_mask [B, 1, 1, S] to cross-attention. A list
        passed as cross_scores receives this layer's cross-attention scores [B, H, T, S]
        (before the softmax), e.g. for word-level alignment.
        """
        x = self._residual(
            x,
            self.attn_norm,
            lambda h: self.attn(
                h,
                mask=mask,
                causal=causal,
                cache=cache,
                positions=positions,
                cache_length=cache_length,
            ),
        )
        if self.cross_attn is not None:
            if context_kv is None:
                raise ValueError("this block has cross-attention: pass context_kv")
            if cross_scores is not None:
                h = self.cross_attn_norm(x) if self.pre_norm else x
                cross_scores.append(self.cross_attn.scores(h, context_kv))
            x = self._residual(
                x, self.cross_attn_norm, lambda h: self.cross_attn(h, context_kv, context_mask)
            )
        return self._residual(x, self.mlp_norm, self.mlp)

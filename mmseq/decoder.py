"""The shared text decoder: token + learned positions, causal self-attention, cross-attention to
any encoder's states, MLP, final norm, output projection tied to the token embedding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.nn import (
    BlockConfig,
    KVCache,
    PositionEmbedding,
    TransformerBlock,
    causal_mask_with_offset,
    make_norm,
    padding_mask_for_sdpa,
)


@dataclass
class DecoderConfig:
    """Defaults are Whisper tiny.en's decoder."""

    vocab_size: int = 51864
    n_ctx: int = 448  # longest token sequence, prompt included
    n_layers: int = 4
    block: BlockConfig = field(default_factory=BlockConfig)
    tie_embeddings: bool = True
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(d_model) (BART, Marian)


@dataclass
class DecoderCache:
    """Everything incremental decoding keeps between steps, passed explicitly (no hooks).

    self_attn: one preallocated KVCache per layer; context_kv: per layer the cross-attention
    keys/values [B, H, S, Dh], projected once per input; context_mask: SDPA mask [B, 1, 1, S]
    or None; position: how many tokens have been decoded so far.
    """

    self_attn: list[KVCache]
    context_kv: list[tuple[Tensor, Tensor]]
    context_mask: Tensor | None
    position: int = 0

    @property
    def max_len(self) -> int:
        return self.self_attn[0].max_len

    def reorder(self, index: Tensor) -> None:
        """Row i continues the hypothesis of row index[i] (beam search). The context rows stay:
        beams of one input only ever swap among themselves."""
        for cache in self.self_attn:
            cache.reorder(index, self.position)


class TextDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.block.d_model
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        # N(0, 1) (PyTorch's default) makes tied logits huge at initialisation; GPT-2's 0.02
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.positions = PositionEmbedding("learned", cfg.n_ctx, d)
        self.embed_scale = math.sqrt(d) if cfg.scale_embeddings else 1.0
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.block, cross_attention=True) for _ in range(cfg.n_layers)
        )
        pre_norm = cfg.block.pre_norm
        self.norm = make_norm(cfg.block.norm, d, cfg.block.norm_eps) if pre_norm else None
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)
        self._output_t: Tensor | None = None  # see _output_matrix
        self._output_key: tuple | None = None

    @property
    def d_model(self) -> int:
        return self.config.block.d_model

    def project_context(self, context: Tensor) -> list[tuple[Tensor, Tensor]]:
        """context [B, S, D] -> per layer cross-attention keys/values [B, H, S, Dh]."""
        if context.dim() != 3 or context.shape[-1] != self.d_model:
            raise ValueError(
                f"decoder context: expected encoder states [B, S, {self.d_model}], "
                f"got shape {tuple(context.shape)}"
            )
        context = context.to(self.token_embedding.weight.dtype)
        return [block.cross_attn.project_context(context) for block in self.blocks]

    def new_cache(
        self,
        context: Tensor,
        context_mask: Tensor | None = None,
        max_len: int | None = None,
        repeat: int = 1,
    ) -> DecoderCache:
        """A cache for decoding up to max_len tokens (default n_ctx) against context [B, S, D],
        each input repeated `repeat` times (beams) after the projection, so it is done once."""
        max_len = max_len or self.config.n_ctx
        if max_len > self.config.n_ctx:
            raise ValueError(f"max_len {max_len} exceeds the decoder's n_ctx {self.config.n_ctx}")
        kv = self.project_context(context)
        if repeat > 1:
            kv = [(k.repeat_interleave(repeat, 0), v.repeat_interleave(repeat, 0)) for k, v in kv]
            if context_mask is not None:
                context_mask = context_mask.repeat_interleave(repeat, 0)
        weight = self.token_embedding.weight
        blk = self.config.block
        caches = [
            KVCache(
                context.shape[0] * repeat,
                blk.n_heads,
                max_len,
                blk.d_model // blk.n_heads,
                dtype=weight.dtype,
                device=weight.device,
            )
            for _ in self.blocks
        ]
        return DecoderCache(caches, kv, padding_mask_for_sdpa(context_mask))

    def forward(
        self,
        tokens: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        last_only: bool = False,
        cross_scores: list[Tensor] | None = None,
    ) -> Tensor:
        """tokens [B, T] -> logits [B, T, V] in fp32 ([B, 1, V] with last_only).

        Without a cache, context [B, S, D] and context_mask [B, S] are attended to and the whole
        sequence is processed causally (teacher forcing; right padding needs no mask). With a
        cache, tokens continue at cache.position and the cache advances by T. A list passed as
        cross_scores receives each layer's cross-attention scores [B, H, T, S].
        """
        if tokens.dim() != 2:
            raise ValueError(f"decoder tokens: expected [B, T], got shape {tuple(tokens.shape)}")
        position = 0 if cache is None else cache.position
        x = self.token_embedding(tokens) * self.embed_scale
        x = x + self.positions(tokens.shape[1], position).to(x.dtype)

        if cache is None:
            if context is None:
                raise ValueError("decoder: pass the encoder states as context, or a cache")
            context_kv = self.project_context(context)
            cross_mask = padding_mask_for_sdpa(context_mask)
            self_mask, causal = None, True
        else:
            context_kv, cross_mask = cache.context_kv, cache.context_mask
            t = tokens.shape[1]
            # one new token sees every cached one; a chunk after a prefix needs an offset mask
            self_mask = (
                causal_mask_with_offset(t, position, x.device) if t > 1 and position else None
            )
            causal = t > 1 and position == 0

        for i, block in enumerate(self.blocks):
            x = block(
                x,
                mask=self_mask,
                causal=causal,
                cache=None if cache is None else cache.self_attn[i],
                position=position,
                context_kv=context_kv[i],
                context_mask=cross_mask,
                cross_scores=cross_scores,
            )
        if cache is not None:
            cache.position += tokens.shape[1]
        if last_only:
            x = x[:, -1:]
        if self.norm is not None:
            x = self.norm(x)
        if self.lm_head is not None:
            return self.lm_head(x).float()
        if torch.is_grad_enabled():
            return F.linear(x, self.token_embedding.weight.to(x.dtype)).float()
        return (x @ self._output_matrix(x.dtype)).float()

    def _output_matrix(self, dtype: torch.dtype) -> Tensor:
        """The tied output projection as a contiguous [D, V] copy, for inference only.

        x @ E.T reads the [V, D] embedding column-wise; with E.T stored contiguously the same
        product runs about 3x faster on the CPU for a few rows, and at one row per decoding
        step it is the largest cost of each step. Rebuilt whenever the embedding changes.
        """
        weight = self.token_embedding.weight
        key = (weight.data_ptr(), weight._version, dtype)
        if self._output_key != key:
            self._output_t = weight.detach().to(dtype).t().contiguous()
            self._output_key = key
        return self._output_t

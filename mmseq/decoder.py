"""The shared text decoder: token embedding and positions, causal self-attention, cross-attention
to any encoder's states, MLP, optional final norm, output projection (tied or not).

Every family is a set of config values (`mmseq.nn.text_stack` lists them); the output side adds
T5 v1.0's rescale of the final states and the fixed `final_logits_bias` of BART, Marian and
Pegasus; and, for text sources in the target's vocabulary, an optional pointer-generator copy
head (`copy`, mmseq.nn.copy), whose output is log-probabilities in place of logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.nn import KVCache, TransformerBlock, make_norm, padding_mask_for_sdpa
from mmseq.nn.attention import merge_masks
from mmseq.nn.copy import CopyHead, CopyMemory, source_ids_of
from mmseq.nn.text_stack import TextStack, TextStackConfig, relative_bias


@dataclass
class DecoderConfig(TextStackConfig):
    """Defaults are Whisper tiny.en's decoder."""

    vocab_size: int = 51864
    n_ctx: int = 448  # longest token sequence, prompt included
    tie_embeddings: bool = True  # the output projection is the token embedding
    rescale_output: bool = False  # final states x d_model**-0.5 before the head (tied T5 v1.0)
    final_logits_bias: bool = False  # a fixed [V] bias added to the logits (BART, Marian, Pegasus)
    # A pointer-generator copy head (See et al. 2017): the output mixes generating and copying
    # source tokens, as log-probabilities. Needs a text source sharing the target's embeddings
    # (share_embeddings); no Hugging Face architecture has it.
    copy: bool = False


@dataclass
class DecoderCache:
    """Everything incremental decoding keeps between steps, passed explicitly (no hooks).

    self_attn: one preallocated KVCache per layer, a row per hypothesis [R, ...]; context_kv:
    per layer the cross-attention keys/values [B, H, S, Dh], projected once per input and
    shared by its R / B consecutive rows (beams, samples; see CrossAttention.forward);
    context_mask: SDPA mask [B, 1, 1, S] or None; position: how many tokens have been decoded
    so far; key_positions: [max_len], the position of each cache slot, against which each
    step's mask is built; copy: the copy head's keys and source ids per input (`copy` models).
    """

    self_attn: list[KVCache]
    context_kv: list[tuple[Tensor, Tensor]]
    context_mask: Tensor | None
    key_positions: Tensor
    position: int = 0
    copy: CopyMemory | None = None

    @property
    def max_len(self) -> int:
        return self.self_attn[0].max_len

    def claim(self, length: int) -> Tensor:
        """Positions [length] for the next tokens; the cache advances past them."""
        end = self.position + length
        if end > self.max_len:
            raise ValueError(
                f"KV cache overflow: positions up to {end} requested, cache holds {self.max_len}; "
                "lower max_new_tokens or create the cache with a larger max_len"
            )
        positions = self.key_positions[self.position : end]
        self.position = end
        return positions

    @property
    def rows(self) -> int:
        return self.self_attn[0].keys.shape[0]

    def reorder(self, index: Tensor) -> None:
        """Row i continues the hypothesis of row index[i] (beam search). With as many rows as
        before the context stays (beams of one input only swap among themselves); fewer rows
        drop the others, finished inputs, context included, so that later steps do not compute
        them (CTranslate2 does the same; at batch 32 most rows finish early). Rows that share
        an input's context stay together: `index` keeps whole runs of them."""
        shrink = index.shape[0] != self.rows
        group = self.rows // self.context_kv[0][0].shape[0]
        for cache in self.self_attn:
            cache.reorder(index, self.position)
        if shrink:
            inputs = index[::group] // group
            whole = index.shape[0] % group == 0 and (
                group == 1 or bool((index.view(-1, group) // group == inputs[:, None]).all())
            )
            if not whole:
                raise ValueError("reorder: the rows of one input must stay together")
            self.context_kv = [(k[inputs], v[inputs]) for k, v in self.context_kv]
            if self.context_mask is not None:
                self.context_mask = self.context_mask[inputs]
            if self.copy is not None:
                self.copy = self.copy.select(inputs)


class TextDecoder(TextStack):
    def __init__(self, cfg: DecoderConfig, token_embedding: nn.Embedding | None = None) -> None:
        super().__init__(cfg, token_embedding)
        self.config = cfg
        d = cfg.block.d_model
        self.relative = relative_bias(cfg, bidirectional=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.block, cross_attention=True) for _ in range(cfg.n_layers)
        )
        self.norm = make_norm(cfg.block.norm, d, cfg.block.norm_eps) if cfg.has_final_norm else None
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.final_logits_bias:
            # [1, V], the shape BART, Marian and Pegasus store it in
            self.register_buffer("final_logits_bias", torch.zeros(1, cfg.vocab_size))
        else:
            self.final_logits_bias = None
        self.output_scale = d**-0.5 if cfg.rescale_output else 1.0
        self.copy_head = None
        if cfg.copy:
            self.copy_head = CopyHead(d, cfg.block.head_dim or d // cfg.block.n_heads)
        self._output_t: Tensor | None = None  # see _output_matrix
        self._output_key: tuple | None = None

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
        `repeat` rows per input (beams, samples), which share its projected context."""
        max_len = max_len or self.config.n_ctx
        if max_len > self.config.n_ctx:
            raise ValueError(f"max_len {max_len} exceeds the decoder's n_ctx {self.config.n_ctx}")
        kv = self.project_context(context)
        weight = self.token_embedding.weight
        attn = self.blocks[0].attn
        caches = [
            KVCache(
                context.shape[0] * repeat,
                attn.n_heads,
                max_len,
                attn.head_dim,
                dtype=weight.dtype,
                device=weight.device,
            )
            for _ in self.blocks
        ]
        slots = torch.arange(max_len, device=weight.device)
        copy = self.copy_memory(context, context_mask)
        return DecoderCache(caches, kv, padding_mask_for_sdpa(context_mask), slots, copy=copy)

    def copy_memory(self, context: Tensor, context_mask: Tensor | None) -> CopyMemory | None:
        """What the copy head reads of context [B, S, D] (None without a copy head): its source
        token ids come with the states (`SourceStates`, from EncoderDecoder.encode)."""
        if self.copy_head is None:
            return None
        ids = source_ids_of(context)
        if ids is None:
            raise ValueError(
                "decoder.copy: the copy head needs the source token ids with the encoder states; "
                "pass the states EncoderDecoder.encode returns for a text input "
                "(mmseq.nn.copy.SourceStates)"
            )
        states = context.to(self.copy_head.k.weight.dtype)
        return self.copy_head.memory(states, ids.to(states.device), context_mask)

    def forward(
        self,
        tokens: Tensor,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        last_only: bool = False,
        cross_scores: list[Tensor] | None = None,
    ) -> Tensor:
        """tokens [B, T] -> logits [B, T, V] in fp32 ([B, 1, V] with last_only); with the copy
        head, log-probabilities (normalised: every consumer of logits takes them as they are).

        Without a cache, context [B, S, D] and context_mask [B, S] are attended to and the whole
        sequence is processed causally (teacher forcing; right padding needs no mask). With a
        cache, tokens continue at cache.position and the cache advances by T. A list passed as
        cross_scores receives each layer's cross-attention scores [B, H, T, S].
        """
        if tokens.dim() != 2:
            raise ValueError(f"decoder tokens: expected [B, T], got shape {tuple(tokens.shape)}")
        t = tokens.shape[1]
        if cache is None:
            if context is None:
                raise ValueError("decoder: pass the encoder states as context, or a cache")
            self.check_length(t, "decoder input")
            copy = self.copy_memory(context, context_mask)
            x = self.teacher_forced(tokens, context, context_mask, cross_scores)
        else:
            self.check_length(cache.position + t, "decoder input")
            copy = cache.copy
            x = self.cached_step(tokens, cache.claim(t), cache, cross_scores)
        if last_only:
            x = x[:, -1:]
        logits = self.logits(x)
        if self.copy_head is None:
            return logits
        return self.copy_head(x, logits, copy)

    def teacher_forced(
        self,
        tokens: Tensor,
        context: Tensor,
        context_mask: Tensor | None,
        cross_scores: list[Tensor] | None = None,
    ) -> Tensor:
        """tokens [B, T] from position 0, causal -> final states [B, T, D]."""
        x = self.embed(tokens)
        self_mask, causal = None, True
        if self.relative is not None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            allowed = positions[None, :] <= positions[:, None]
            self_mask, causal = merge_masks(self.relative(positions, positions), allowed), False
        context_kv = self.project_context(context)
        cross_mask = padding_mask_for_sdpa(context_mask)
        for block, kv in zip(self.blocks, context_kv, strict=True):
            x = block(
                x,
                mask=self_mask,
                causal=causal,
                context_kv=kv,
                context_mask=cross_mask,
                cross_scores=cross_scores,
            )
        return x if self.norm is None else self.norm(x)

    def cached_step(
        self,
        tokens: Tensor,
        positions: Tensor,
        cache: DecoderCache,
        cross_scores: list[Tensor] | None = None,
    ) -> Tensor:
        """tokens [B, T] at positions [T] (claimed from the cache) -> final states [B, T, D].

        Compiled, it reads the whole fixed-size cache under a mask, so its shapes do not depend
        on the position: the step is compiled once per T. Eagerly it reads only the slots
        written so far (at 20 of 64 slots, a third of the self-attention work)."""
        x = self.embed(tokens, positions)
        length = None if torch.compiler.is_compiling() else cache.position
        key_positions = cache.key_positions[:length]
        allowed = key_positions[None, :] <= positions[:, None]  # [T, length or max_len]
        bias = None
        if self.relative is not None:
            bias = self.relative(positions, key_positions)
        self_mask = merge_masks(bias, allowed)
        for block, kv_cache, kv in zip(self.blocks, cache.self_attn, cache.context_kv, strict=True):
            x = block(
                x,
                mask=self_mask,
                cache=kv_cache,
                positions=positions,
                cache_length=length,
                context_kv=kv,
                context_mask=cache.context_mask,
                cross_scores=cross_scores,
            )
        return x if self.norm is None else self.norm(x)

    def compile_decoding(self) -> None:
        """Run each cached decoding step and the output projection through `torch.compile`,
        for inference with fixed weights.

        The fixed-size cache gives one graph per step shape (the source length and the batch
        become dynamic after the first change, so that is one recompile, not one per batch).
        Inductor's freezing folds the weights into the graph as constants and lays them out
        for oneDNN, which is what makes bf16 fast on the CPU: the weights must not change
        afterwards (load again to train). Measured on a 2-core Xeon, t5-small shape, batch 1
        greedy: fp32 1.3-1.5x, bf16 1.8x the eager tokens/s (benchmarks/text_generate_vs_peers.py).
        """
        options = {"freezing": True}
        self.cached_step = torch.compile(self.cached_step, dynamic=None, options=options)
        self.logits = torch.compile(self.logits, dynamic=None, options=options)

    def logits(self, x: Tensor) -> Tensor:
        """Final states [B, T, D] -> logits [B, T, V] in fp32."""
        if self.output_scale != 1.0:
            x = x * self.output_scale
        # At inference the logits are computed in fp32 whatever the model's precision: rounded
        # to bf16 (8 bits of mantissa: steps of 0.125 at 20), close tokens swap ranks, and
        # Whisper base in bf16 lost 0.5 WER points on 120 clips that fp32 logits gave back
        # (8.96% -> 8.57%; fp32: 8.46%). apply_compute_type keeps an untied head in fp32.
        if self.lm_head is not None:
            if x.dtype != self.lm_head.weight.dtype:
                x = x.to(self.lm_head.weight.dtype)
            logits = self.lm_head(x).float()
        elif torch.is_grad_enabled():
            logits = F.linear(x, self.token_embedding.weight.to(x.dtype)).float()
        else:
            if x.dtype != torch.float32:
                x = x.float()
            logits = (x @ self._output_matrix(x.dtype)).float()
        if self.final_logits_bias is not None:
            # in place: logits is a fresh tensor, and at [128, 58k] a new one costs a step 3 ms
            logits.add_(self.final_logits_bias)
        return logits

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

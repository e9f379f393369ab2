"""Logit filters applied before a token is chosen. Each takes and returns logits [N, V]."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mmseq.generation.config import GenerationConfig

# A decoding rule beyond suppression (e.g. Whisper's timestamp rules):
# (logits [N, V], tokens so far [N, L]) -> logits [N, V]; it may modify logits in place.
LogitFilter = Callable[[Tensor, Tensor], Tensor]


def suppress(logits: Tensor, token_ids: tuple[int, ...]) -> Tensor:
    if token_ids:
        logits[:, list(token_ids)] = -float("inf")
    return logits


def apply_suppression(logits: Tensor, config: GenerationConfig, step: int) -> Tensor:
    """Suppressed tokens at every step; begin-suppressed ones at the first new token (step 0)."""
    logits = suppress(logits, config.suppress_tokens)
    if step == 0:
        logits = suppress(logits, config.begin_suppress_tokens)
    return logits


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept too)."""
    if 0 < k < logits.shape[-1]:
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    return logits


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus: keep the smallest set of tokens whose probability mass reaches p (at least 1)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    # drop a token when the mass before it already reaches p; the top token always stays
    drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -float("inf"))


def sampling_distribution(logits: Tensor, config: GenerationConfig) -> Tensor:
    """Temperature, then top-k, then top-p (Hugging Face's order) -> probabilities [N, V]."""
    logits = logits / config.temperature
    logits = top_p_filter(top_k_filter(logits, config.top_k), config.top_p)
    return logits.softmax(-1)

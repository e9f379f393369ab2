"""Logit filters applied before a token is chosen. Each takes and returns logits [N, V].

The processors of GenerationConfig follow Hugging Face's LogitsProcessors of the same names
(transformers/generation/logits_process.py) and are tested against them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mmseq.generation.config import GenerationConfig

# A decoding rule beyond the config's processors (e.g. Whisper's timestamp rules):
# (logits [N, V], tokens so far [N, L]) -> logits [N, V]; it may modify logits in place.
LogitFilter = Callable[[Tensor, Tensor], Tensor]


def suppress(logits: Tensor, token_ids: tuple[int, ...]) -> Tensor:
    """Ban token_ids (in place)."""
    if token_ids:
        logits[:, list(token_ids)] = -float("inf")
    return logits


def force(logits: Tensor, token_id: int) -> Tensor:
    """Only token_id is possible, with log-probability 0 (Hugging Face's forced BOS / EOS)."""
    forced = torch.full_like(logits, -float("inf"))
    forced[:, token_id] = 0.0
    return forced


def _seen_mask(token_ids: Tensor, vocab: int) -> Tensor:
    """[N, K] ids -> [N, vocab] bool, True where a row holds the id (ids >= vocab dropped)."""
    seen = torch.zeros(token_ids.shape[0], vocab + 1, dtype=torch.bool, device=token_ids.device)
    return seen.scatter_(1, token_ids.clamp(max=vocab), True)[:, :vocab]


def penalise_repetition(logits: Tensor, tokens: Tensor, penalty: float) -> Tensor:
    """Every token of `tokens` [N, L] (the prefix too): its logit divided by `penalty` when
    positive, multiplied when negative (Hugging Face's RepetitionPenaltyLogitsProcessor)."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(_seen_mask(tokens, logits.shape[-1]), penalised, logits)


def ban_repeated_ngrams(logits: Tensor, tokens: Tensor, n: int) -> Tensor:
    """Ban each token that would complete an n-gram already in `tokens` [N, L], prefix included
    (Hugging Face's NoRepeatNGramLogitsProcessor): the last token of every window whose first
    n - 1 tokens equal the sequence's last n - 1."""
    length = tokens.shape[1]
    if n == 0 or length < n:
        return logits
    windows = tokens.unfold(1, n, 1)  # [N, L - n + 1, n]
    suffix = tokens[:, length - n + 1 :]  # [N, n - 1]
    matches = (windows[..., :-1] == suffix[:, None]).all(-1)  # [N, L - n + 1]
    vocab = logits.shape[-1]
    completions = torch.where(matches, windows[..., -1], vocab)  # vocab: no ban
    return logits.masked_fill(_seen_mask(completions, vocab), -float("inf"))


def ban_bad_words(logits: Tensor, tokens: Tensor, bad_words: tuple[tuple[int, ...], ...]) -> Tensor:
    """Ban the last token of each bad word whose other tokens end `tokens` [N, L] (a one-token
    word always; a word longer than L + 1 never), as Hugging Face's NoBadWordsLogitsProcessor."""
    if not bad_words:
        return logits
    vocab = logits.shape[-1]
    outside = sorted({t for word in bad_words for t in word if t >= vocab})
    if outside:
        raise ValueError(f"bad_words_ids: token ids {outside} are outside the vocabulary ({vocab})")
    # in place, column by column: a [N, V] mask and an out-of-place fill would copy the logits
    # (30 MB for Marian's 58k vocabulary at beam 4 x batch 32) at every step
    singles = [word[0] for word in bad_words if len(word) == 1]
    if singles:
        logits[:, singles] = -float("inf")
    length = tokens.shape[1]
    for *head, last in (word for word in bad_words if len(word) > 1):
        if len(head) > length:
            continue
        ends = (tokens[:, length - len(head) :] == tokens.new_tensor(head)).all(-1)
        logits[:, last] = logits[:, last].masked_fill(ends, -float("inf"))
    return logits


def apply_processors(
    logits: Tensor, tokens: Tensor, config: GenerationConfig, prefix_len: int
) -> Tensor:
    """The config's logit processors in Hugging Face's order (see GenerationConfig).

    logits [N, V] (log-probabilities in beam search); tokens [N, L]: each sequence so far, its
    prefix of prefix_len tokens included. May modify logits in place.
    """
    length = tokens.shape[1]
    step = length - prefix_len  # index of the token being chosen among the new ones
    eos = config.eos_token_id
    logits = penalise_repetition(logits, tokens, config.repetition_penalty)
    logits = ban_repeated_ngrams(logits, tokens, config.no_repeat_ngram_size)
    bad_words = tuple(w for w in config.bad_words_ids if eos is None or w != (eos,))
    logits = ban_bad_words(logits, tokens, bad_words)
    if eos is not None and (length < config.min_length or step < config.min_new_tokens):
        logits = suppress(logits, (eos,))
    if config.forced_bos_token_id is not None and step == 0:
        logits = force(logits, config.forced_bos_token_id)
    if config.forced_eos_token_id is not None and step == config.max_new_tokens - 1:
        logits = force(logits, config.forced_eos_token_id)
    logits = suppress(logits, config.suppress_tokens)
    if step == (0 if config.forced_bos_token_id is None else 1):
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

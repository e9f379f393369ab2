"""Greedy, sampling and beam search (Hugging Face's rules; openai-whisper's are in
`openai_beam.py`) over a TextDecoder with its KV cache.

Each strategy is a short loop around one `step`: feed the newest tokens, get next-token logits,
filter, choose. The prefix (forced tokens such as Whisper's <|startoftranscript|>) is fed in
one step; every later step feeds one token per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.decoder import TextDecoder
from mmseq.generation.config import GenerationConfig
from mmseq.generation.logits import LogitFilter, sampling_distribution
from mmseq.generation.openai_beam import openai_beam_search
from mmseq.generation.step import GenerationOutput, Step


def decode(
    decoder: TextDecoder,
    context: Tensor,
    context_mask: Tensor | None,
    prefix: Tensor,
    config: GenerationConfig,
    generator: torch.Generator | None = None,
    logit_filters: Sequence[LogitFilter] = (),
    probe_position: int | None = None,
) -> GenerationOutput:
    """Generate continuations of prefix [B, P] given encoder states context [B, S, D].

    logit_filters: extra `(logits [N, V], tokens [N, L]) -> logits` rules, after the config's.
    probe_position: a prefix position whose next-token probabilities to return (probe_probs).
    """
    if prefix.dim() != 2 or prefix.shape[0] != context.shape[0]:
        raise ValueError(
            f"prefix: expected token ids [B={context.shape[0]}, P], got shape {tuple(prefix.shape)}"
        )
    max_len = prefix.shape[1] + config.max_new_tokens
    # the last generated token is never fed back, so the cache needs one slot less
    cache_len = max_len - 1
    if cache_len > decoder.config.n_ctx:
        raise ValueError(
            f"prefix ({prefix.shape[1]} tokens) + max_new_tokens ({config.max_new_tokens}) "
            f"needs {cache_len} positions; the decoder has n_ctx={decoder.config.n_ctx}"
        )
    if probe_position is not None and not -prefix.shape[1] <= probe_position < prefix.shape[1]:
        raise ValueError(f"probe_position {probe_position} is outside the prefix")
    prefix = prefix.to(context.device)
    rows = config.num_beams if config.num_beams > 1 else config.num_return_sequences
    cache = decoder.new_cache(context, context_mask, cache_len, repeat=rows)
    step = Step(decoder, cache, config, logit_filters, probe_position, prefix.shape[1])
    tokens = prefix.repeat_interleave(rows, 0)
    if config.num_beams > 1 and config.beam_rules == "openai-whisper":
        out = openai_beam_search(step, tokens, config, prefix.shape[1])
    elif config.num_beams > 1:
        out = _beam_search(step, tokens, config, prefix.shape[1], max_len)
    else:
        sequences, sum_logprobs, lengths = _sample_or_greedy(step, tokens, config, generator)
        b, n = prefix.shape[0], rows
        out = GenerationOutput(
            sequences.view(b, n, -1),
            sum_logprobs.view(b, n),
            sum_logprobs.view(b, n),
            lengths.view(b, n),
        )
    if step.probe_probs is not None:
        out.probe_probs = step.probe_probs[::rows]
    return out


def _sample_or_greedy(
    step: Step,
    tokens: Tensor,
    config: GenerationConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy: a row whose sequence ended leaves the batch (its cache rows are dropped), so
    later steps compute only the rows still running. Sampling keeps every row to the end,
    padding the finished ones: dropping rows would change which random draw each row gets."""
    rows, device = tokens.shape[0], tokens.device
    eos, pad = config.eos_token_id, config.pad_id
    sum_logprobs = torch.zeros(rows, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    running = torch.arange(rows, device=device)  # the rows still in the cache, in its order
    new = tokens
    for _ in range(config.max_new_tokens):
        logits = step(new, tokens[running])
        if config.do_sample:
            probs = sampling_distribution(logits, config)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_tokens = logits.argmax(-1)
        logprobs = logits.log_softmax(-1).gather(1, next_tokens[:, None]).squeeze(1)
        ended = finished[running]
        sum_logprobs[running] += logprobs.masked_fill(ended, 0.0)
        lengths[running] += (~ended).long()
        next_tokens = next_tokens.masked_fill(ended, pad)
        column = torch.full_like(finished, pad, dtype=torch.long)  # rows gone: padding
        column[running] = next_tokens
        tokens = torch.cat([tokens, column[:, None]], dim=1)
        if eos is not None:
            finished[running] |= next_tokens == eos
            if bool(finished.all()):
                break
            if not config.do_sample:
                keep = (~finished[running]).nonzero().squeeze(1)
                if keep.shape[0] < running.shape[0]:
                    step.cache.reorder(keep)
                    running, next_tokens = running[keep], next_tokens[keep]
        new = next_tokens[:, None]
    return tokens, sum_logprobs, lengths


@dataclass
class _Hypothesis:
    score: float
    tokens: Tensor
    sum_logprob: float
    length: int


# Hugging Face's finished list starts as num_beams placeholders scored -1e9: a hypothesis
# counts only when it scores above that (so an impossible one, at -inf, never does)
_PLACEHOLDER_SCORE = -1e9


class _FinishedBeams:
    """The best `num_beams` finished hypotheses of one input, with HF's stopping rule."""

    def __init__(self, config: GenerationConfig, prefix: Tensor, max_len: int) -> None:
        self.config = config
        self.prefix = prefix
        self.prefix_len = prefix.shape[0]
        self.max_len = max_len
        self.hyps: list[_Hypothesis] = []
        self.done = False

    def _penalised(self, sum_logprob: float, length: int) -> float:
        return sum_logprob / (length**self.config.length_penalty)

    def add(self, tokens: Tensor, sum_logprob: float, length: int) -> None:
        """tokens: prefix + generated tokens, without a final EOS (length counts it)."""
        score = self._penalised(sum_logprob, length)
        if score <= _PLACEHOLDER_SCORE:
            return
        if len(self.hyps) < self.config.num_beams or score > self.worst:
            self.hyps.append(_Hypothesis(score, tokens, sum_logprob, length))
            self.hyps.sort(key=lambda h: h.score, reverse=True)
            del self.hyps[self.config.num_beams :]

    @property
    def worst(self) -> float:
        return self.hyps[-1].score if self.hyps else -float("inf")

    def is_done(self, best_running_sum: float, length: int) -> bool:
        if len(self.hyps) < self.config.num_beams:
            return False
        early = self.config.early_stopping
        if early is True:
            return True
        if early == "never" and self.config.length_penalty > 0:
            length = self.max_len - self.prefix_len
        return self.worst >= self._penalised(best_running_sum, length)


def _beam_search(
    step: Step, tokens: Tensor, config: GenerationConfig, prefix_len: int, max_len: int
) -> GenerationOutput:
    """tokens [B*K, P]: each prefix repeated num_beams (K) times.

    As Hugging Face's beam search (transformers 5.24 `GenerationMixin._beam_search`): each step
    ranks the 2K best continuations of all beams of an input; an EOS among the first K finishes
    a hypothesis, the best K others run on. At the last step (max_new_tokens) the first K all
    finish, EOS or not. An input whose search is done leaves the batch (its K cache rows are
    dropped), so later steps compute only the inputs still searching.
    """
    k = config.num_beams
    batch, device = tokens.shape[0] // k, tokens.device
    # only the first beam of each input is live at the start, so the first step does not pick
    # the same token K times
    beam_sums = torch.zeros(batch, k, device=device)
    beam_sums[:, 1:] = -1e9
    finished = [_FinishedBeams(config, tokens[b * k, :prefix_len], max_len) for b in range(batch)]
    searching = list(range(batch))  # the inputs in the cache, in its order (K rows each)
    eos = config.eos_token_id
    new = tokens
    for generated in range(1, config.max_new_tokens + 1):
        logprobs = step(new, tokens, log_softmax=True)
        n = len(searching)
        # the 2K best of all K x V continuations (enough to refill K beams) are among the 2K
        # best of each beam: rank those K x 2K, not K x V (a third of a step's time at 58k
        # tokens went to adding the beam sums to every log-probability and ranking them)
        width = min(2 * k, logprobs.shape[-1])
        beam_best, beam_tokens = logprobs.topk(width, dim=1)  # [n*K, 2K]
        candidates = (beam_sums.view(-1, 1) + beam_best).view(n, k * width)
        top_sums, top_ids = candidates.topk(min(2 * k, k * width), dim=1)  # [n, 2K]
        top_beams = top_ids // width
        top_tokens = beam_tokens.view(n, k * width).gather(1, top_ids)
        if generated == config.max_new_tokens:
            for i, b in enumerate(searching):
                _finish_top_k(finished[b], tokens, top_beams, top_tokens, top_sums, i, k)
            break

        # the choice is a short loop over 2K candidates per input: on Python lists, read once
        # per step (element reads from tensors cost microseconds each)
        beams_l, tokens_l, sums_l = top_beams.tolist(), top_tokens.tolist(), top_sums.tolist()
        next_rows, next_tokens, next_sums, still = [], [], [], []
        for i, b in enumerate(searching):
            rows, chosen, sums = [], [], []
            for rank in range(2 * k):
                row = i * k + beams_l[i][rank]
                token, total = tokens_l[i][rank], sums_l[i][rank]
                if eos is not None and token == eos:
                    if rank < k:  # an EOS outside the top K is not a real contender
                        finished[b].add(tokens[row], total, generated)
                    continue
                rows.append(row)
                chosen.append(token)
                sums.append(total)
                if len(rows) == k:
                    break
            while len(rows) < k:  # fewer than K other candidates: dead beams
                rows.append(i * k)
                chosen.append(config.pad_id)
                sums.append(-1e9)
            finished[b].done = finished[b].is_done(sums[0], generated)
            if not finished[b].done:
                still.append(b)
                next_rows += rows
                next_tokens += chosen
                next_sums.append(sums)
        if not still:
            break
        rows_t = torch.tensor(next_rows, device=device)
        step.cache.reorder(rows_t)  # drops the rows of inputs now done
        new = torch.tensor(next_tokens, device=device).view(-1, 1)
        tokens = torch.cat([tokens[rows_t], new], dim=1)
        beam_sums = torch.tensor(next_sums, device=device)
        searching = still
    return _collect(finished, config, device)


def _finish_top_k(
    finished: _FinishedBeams,
    tokens: Tensor,
    top_beams: Tensor,
    top_tokens: Tensor,
    top_sums: Tensor,
    b: int,
    k: int,
) -> None:
    """Out of tokens: the K best continuations of the input at position b of the batch all end,
    with their last token (an EOS is not stored: `_collect` appends it)."""
    length = tokens.shape[1] + 1 - finished.prefix_len
    for rank in range(k):
        row = b * k + int(top_beams[b, rank])
        ended = tokens[row]
        if int(top_tokens[b, rank]) != finished.config.eos_token_id:
            ended = torch.cat([ended, top_tokens[b, rank : rank + 1]])
        finished.add(ended, float(top_sums[b, rank]), length)


def _collect(
    finished: list[_FinishedBeams], config: GenerationConfig, device: torch.device
) -> GenerationOutput:
    """Best num_return_sequences hypotheses per input, EOS appended where it ended them. An input
    with fewer finished hypotheses (every continuation impossible) gets its prefix alone, at
    score -inf."""
    n, eos = config.num_return_sequences, config.eos_token_id
    best = [f.hyps[:n] for f in finished]
    ended = [
        [h.tokens.shape[0] - f.prefix_len < h.length for h in hyps]
        for f, hyps in zip(finished, best, strict=True)
    ]
    width = max(
        [f.prefix_len for f in finished]
        + [
            h.tokens.shape[0] + e
            for hyps, ends in zip(best, ended, strict=True)
            for h, e in zip(hyps, ends, strict=True)
        ]
    )
    sequences = torch.full((len(best), n, width), config.pad_id, dtype=torch.long, device=device)
    sums = torch.full((len(best), n), -float("inf"), device=device)
    scores = sums.clone()
    lengths = torch.zeros(len(best), n, dtype=torch.long, device=device)
    for b, (f, hyps, ends) in enumerate(zip(finished, best, ended, strict=True)):
        sequences[b, :, : f.prefix_len] = f.prefix
        for j, (h, e) in enumerate(zip(hyps, ends, strict=True)):
            t = h.tokens.shape[0]
            sequences[b, j, :t] = h.tokens
            if e:
                sequences[b, j, t] = eos
            sums[b, j], scores[b, j], lengths[b, j] = h.sum_logprob, h.score, h.length
    return GenerationOutput(sequences, sums, scores, lengths)

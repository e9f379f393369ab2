"""openai-whisper's beam search (whisper/decoding.py `BeamSearchDecoder`), token for token.

It differs from Hugging Face's (`search.py`) in four places, each of which changes tokens:
- the logit filters (timestamp rules, suppressions) act on the logits, then the log-softmax
  renormalises what they left; Hugging Face filters log-probabilities that stay unnormalised;
- each beam proposes its num_beams + 1 best tokens; the candidates of all beams are ranked by
  their sum of log-probabilities, a finished one (EOS) is put aside wherever it ranks, and the
  num_beams best unfinished ones run on;
- the search of an input ends once round(num_beams * patience) hypotheses have finished (the
  best first when several finish at once), with no length penalty while searching;
- out of tokens, the running beams are added as hypotheses (EOS appended), best first, until
  there are num_beams.
Every finished hypothesis is returned: openai-whisper ranks them afterwards (its
`MaximumLikelihoodRanker`, `mmseq.whisper.decoding.rank`), as it does best-of-N samples.
Each input is searched as if it were decoded alone (openai-whisper decodes one window at a
time), so a finished input leaves the batch and its K rows leave the cache.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmseq.generation.config import GenerationConfig
from mmseq.generation.step import GenerationOutput, Step

Hypotheses = dict[tuple[int, ...], float]  # full sequence (prefix included) -> sum of logprobs


def openai_beam_search(
    step: Step, tokens: Tensor, config: GenerationConfig, prefix_len: int
) -> GenerationOutput:
    """tokens [B*K, P]: each prefix repeated num_beams (K) times -> every finished hypothesis
    of each input, in the order openai-whisper keeps them (scores = sum_logprobs: unranked)."""
    k, eos = config.num_beams, config.eos_token_id
    enough = round(k * config.patience)  # openai-whisper's max_candidates
    batch, device = tokens.shape[0] // k, tokens.device
    sums = torch.zeros(batch * k, device=device)  # float32, as openai-whisper's sum_logprobs
    finished: list[Hypotheses] = [{} for _ in range(batch)]
    searching = list(range(batch))  # the inputs in the cache, in its order (K rows each)
    new = tokens
    for _ in range(config.max_new_tokens):
        logprobs = step(new, tokens).float().log_softmax(-1)
        best, best_tokens = logprobs.topk(k + 1, dim=-1)  # [n*K, K+1]
        totals, best_tokens_l = (sums[:, None] + best).tolist(), best_tokens.tolist()
        sequences = [tuple(row) for row in tokens.tolist()]
        rows, chosen, chosen_sums, still = [], [], [], []
        for i, b in enumerate(searching):
            candidates: Hypotheses = {}
            sources: dict[tuple[int, ...], int] = {}
            for row in range(i * k, (i + 1) * k):
                for total, token in zip(totals[row], best_tokens_l[row], strict=True):
                    sequence = (*sequences[row], token)
                    candidates[sequence] = total
                    sources[sequence] = row
            ended: Hypotheses = {}
            running: list[tuple[int, ...]] = []
            # a stable sort: equal sums keep the order the beams proposed them in
            for sequence in sorted(candidates, key=candidates.__getitem__, reverse=True):
                if sequence[-1] == eos:
                    ended[sequence] = candidates[sequence]
                    continue
                running.append(sequence)
                if len(running) == k:
                    break
            for sequence in ended:  # best first, as put aside
                if len(finished[b]) >= enough:
                    break
                finished[b][sequence] = ended[sequence]
            running_sums = [candidates[s] for s in running]
            if len(finished[b]) >= enough:
                _add_running(finished[b], running, running_sums, k, eos)
                continue
            still.append(b)
            rows += [sources[s] for s in running]
            chosen += [s[-1] for s in running]
            chosen_sums += running_sums
        if not still:
            break
        rows_t = torch.tensor(rows, device=device)
        step.cache.reorder(rows_t)  # drops the rows of inputs now done
        new = torch.tensor(chosen, device=device).view(-1, 1)
        tokens = torch.cat([tokens[rows_t], new], dim=1)
        sums = torch.tensor(chosen_sums, device=device)
        searching = still
    else:  # out of tokens: the inputs still searching end with their running beams
        sequences = [tuple(row) for row in tokens.tolist()]
        sums_l = sums.tolist()
        for i, b in enumerate(searching):
            beams = slice(i * k, (i + 1) * k)
            _add_running(finished[b], sequences[beams], sums_l[beams], k, eos)
    return _collect(finished, config, prefix_len, device)


def _add_running(
    finished: Hypotheses,
    running: list[tuple[int, ...]],
    sums: list[float],
    k: int,
    eos: int | None,
) -> None:
    """openai-whisper's `finalize`: with fewer than K finished hypotheses, the running beams
    join them, EOS appended, best first (ties: the later beam first, as numpy's argsort
    reversed)."""
    for j in sorted(range(len(running)), key=sums.__getitem__)[::-1]:
        if len(finished) >= k:
            break
        ending = () if eos is None else (eos,)
        finished[(*running[j], *ending)] = sums[j]


def _collect(
    finished: list[Hypotheses], config: GenerationConfig, prefix_len: int, device: torch.device
) -> GenerationOutput:
    """sequences [B, N, L] (N: the most hypotheses of any input; missing ones are padding at
    sum -inf, length 0), lengths: generated tokens, EOS included."""
    n = max(len(hyps) for hyps in finished)
    width = max(len(s) for hyps in finished for s in hyps)
    sequences = torch.full((len(finished), n, width), config.pad_id, dtype=torch.long)
    sums = torch.full((len(finished), n), -float("inf"))
    lengths = torch.zeros(len(finished), n, dtype=torch.long)
    for b, hyps in enumerate(finished):
        for j, (sequence, total) in enumerate(hyps.items()):
            sequences[b, j, : len(sequence)] = torch.tensor(sequence)
            sums[b, j], lengths[b, j] = total, len(sequence) - prefix_len
    sequences, sums, lengths = sequences.to(device), sums.to(device), lengths.to(device)
    return GenerationOutput(sequences, sums, sums.clone(), lengths)

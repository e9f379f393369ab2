"""Decoding 30 s windows the way openai-whisper does: prompt layout, timestamp rules, best-of-N
sampling and temperature fallback, no-speech probability.

One call decodes a batch of windows whose encoder states are already computed, so a fallback
re-decodes only the rows that need it and never re-runs the encoder.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mmseq.generation import decode
from mmseq.whisper.loading import Whisper
from mmseq.whisper.tokenizer import TIME_PRECISION, WhisperTokenizer

NEG_INF = -float("inf")
TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class DecodingOptions:
    """openai-whisper's transcribe() options that shape the decoding of one window."""

    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int = 1  # at temperature 0; 1 = greedy
    patience: float | None = None  # beam search ends after beam_size * patience finish (1.0)
    best_of: int = 1  # samples per window at temperature > 0 (openai's CLI uses 5)
    # ranks the finished beams or the samples: None divides the sum of log-probabilities by
    # the length, a value by GNMT's ((5 + length) / 6) ** length_penalty
    length_penalty: float | None = None
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    max_new_tokens: int | None = None  # None: n_text_ctx // 2
    language: str = "en"  # multilingual models only: English-only ones take no language token
    task: str = "transcribe"  # or "translate" (into English; multilingual models only)

    def __post_init__(self) -> None:
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures: expected values >= 0, got {self.temperatures}")
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {self.task!r}")
        for name in ("beam_size", "best_of", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: expected a number >= 1, got {value}")
        if self.patience is not None and not round(self.beam_size * self.patience) >= 1:
            raise ValueError(
                f"patience: expected a number > 0 that leaves at least one of the beam_size "
                f"({self.beam_size}) hypotheses to wait for, got {self.patience}"
            )
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise ValueError(
                "length_penalty: expected a number from 0 to 1 (or None), got "
                f"{self.length_penalty}"
            )


@dataclass
class WindowResult:
    tokens: list[int]  # generated tokens, without the final <|endoftext|>
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float

    def needs_fallback(self, options: DecodingOptions) -> bool:
        """Too repetitive or too improbable, unless it is silence (then no retry helps)."""
        looping = (
            options.compression_ratio_threshold is not None
            and self.compression_ratio > options.compression_ratio_threshold
        )
        improbable = (
            options.logprob_threshold is not None and self.avg_logprob < options.logprob_threshold
        )
        silent = (
            options.no_speech_threshold is not None
            and self.no_speech_prob > options.no_speech_threshold
            and improbable
        )
        return (looping or improbable) and not silent


def rank(candidates: Sequence[tuple[Sequence[int], float]], length_penalty: float | None) -> int:
    """The index of the best (tokens without EOT, sum of log-probabilities) candidate, as
    openai-whisper's MaximumLikelihoodRanker: the sum divided by the length (length_penalty
    None) or by GNMT's ((5 + length) / 6) ** length_penalty; the first of equals."""

    def score(candidate: tuple[Sequence[int], float]) -> float:
        length = len(candidate[0])
        if length_penalty is None:
            return candidate[1] / max(length, 1)  # openai divides by zero on an empty text
        return candidate[1] / ((5 + length) / 6) ** length_penalty

    scores = [score(c) for c in candidates]
    return scores.index(max(scores))


def compression_ratio(text: str) -> float:
    """gzip ratio of the text: Whisper's signal for repetitive (looping) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class TimestampRules:
    """Whisper's timestamp grammar as a logit filter (vectorised over the batch).

    Timestamps come in pairs (except right before <|endoftext|>), never decrease, a segment
    has non-zero length, the first token is a timestamp no later than max_initial_timestamp,
    and a timestamp is forced when all timestamps together outweigh the best text token.
    """

    def __init__(
        self, tokenizer: WhisperTokenizer, sample_begin: int, max_initial_index: int | None
    ) -> None:
        self.tb = tokenizer.timestamp_begin
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.sample_begin = sample_begin
        self.max_initial_index = max_initial_index

    def __call__(self, logits: Tensor, tokens: Tensor) -> Tensor:
        tb = self.tb
        logits[:, self.no_timestamps] = NEG_INF
        sampled = tokens[:, self.sample_begin :]
        if sampled.shape[1] == 0:
            logits[:, :tb] = NEG_INF
            if self.max_initial_index is not None:
                logits[:, tb + self.max_initial_index + 1 :] = NEG_INF
        else:
            self._pairs_and_order(logits, sampled)
        logprobs = logits.float().log_softmax(-1)
        timestamp_mass = logprobs[:, tb:].logsumexp(-1)
        best_text = logprobs[:, :tb].max(-1).values
        logits[timestamp_mass > best_text, :tb] = NEG_INF
        return logits

    def _pairs_and_order(self, logits: Tensor, sampled: Tensor) -> None:
        tb = self.tb
        is_ts = sampled >= tb
        last = is_ts[:, -1]
        penultimate = is_ts[:, -2] if sampled.shape[1] > 1 else torch.ones_like(last)
        logits[last & penultimate, tb:] = NEG_INF  # a pair just closed: text or EOT next
        logits[last & ~penultimate, : self.eot] = NEG_INF  # a pair is open: close it or end
        # timestamps never decrease; after a closed pair the next one must move forward
        has_ts = is_ts.any(-1)
        last_ts = torch.where(is_ts, sampled, -1).max(-1).values
        bound = last_ts + (~(last & ~penultimate)).long()  # first allowed timestamp id
        timestamps = torch.arange(tb, logits.shape[-1], device=logits.device)
        forbidden = (timestamps < bound[:, None]) & has_ts[:, None]  # [B, n_timestamps]
        logits[:, tb:].masked_fill_(forbidden, NEG_INF)


def initial_tokens(
    tokenizer: WhisperTokenizer,
    prompt: Sequence[int],
    without_timestamps: bool,
    n_ctx: int,
    language: str = "en",
    task: str = "transcribe",
) -> list[int]:
    """[<|startofprev|> prompt[-(n_ctx//2 - 1):]] <|startoftranscript|> [<|language|> <|task|>]
    [<|notimestamps|>] (language and task on multilingual models only)"""
    tokens = tokenizer.sot_sequence(without_timestamps, language, task)
    if prompt:
        tokens = [tokenizer.sot_prev, *list(prompt)[-(n_ctx // 2 - 1) :], *tokens]
    return tokens


@torch.inference_mode()
def detect_language(whisper: Whisper, states: Tensor) -> tuple[list[str], Tensor]:
    """The spoken language of each window, as openai-whisper detects it: the decoder's
    next-token distribution after <|startoftranscript|>, over the language tokens only.

    states [B, S, D] -> (the most probable code per window, probabilities [B, L] in the order
    of `tokenizer.language_codes`)."""
    tok = whisper.tokenizer
    if not tok.is_multilingual:
        raise ValueError("language detection needs a multilingual model; this one is English-only")
    sot = torch.full((states.shape[0], 1), tok.sot, dtype=torch.long, device=states.device)
    logits = whisper.model.decoder(sot, states)[:, 0, tok.language_tokens]
    probs = logits.softmax(-1).cpu()
    codes = tok.language_codes
    return [codes[i] for i in probs.argmax(-1).tolist()], probs


def decode_windows(
    whisper: Whisper,
    states: Tensor,
    prompt: Sequence[int],
    options: DecodingOptions,
    generator: torch.Generator | None = None,
) -> list[WindowResult]:
    """Decode encoder states [B, S, D] of B windows sharing one prompt, with fallback:
    rows whose result looks wrong are decoded again at the next temperature."""
    results: list[WindowResult | None] = [None] * states.shape[0]
    todo = list(range(states.shape[0]))
    for temperature in options.temperatures:
        decoded = _decode_at(whisper, states[todo], prompt, options, temperature, generator)
        retry = []
        for row, result in zip(todo, decoded, strict=True):
            results[row] = result
            if result.needs_fallback(options):
                retry.append(row)
        todo = retry
        if not todo:
            break
    return results  # type: ignore[return-value]


def _decode_at(
    whisper: Whisper,
    states: Tensor,
    prompt: Sequence[int],
    options: DecodingOptions,
    temperature: float,
    generator: torch.Generator | None,
) -> list[WindowResult]:
    tok = whisper.tokenizer
    n_ctx = whisper.model.config.decoder.n_ctx
    prefix = initial_tokens(
        tok, prompt, options.without_timestamps, n_ctx, options.language, options.task
    )
    sample_len = options.max_new_tokens or n_ctx // 2
    # openai-whisper stops once the sequence passes n_ctx
    max_new = min(sample_len, n_ctx + 1 - len(prefix))
    sampling = temperature > 0
    n = options.best_of if sampling else 1
    beams = 1 if sampling else options.beam_size
    config = whisper.generation_config(
        max_new_tokens=max_new,
        num_beams=beams,
        num_return_sequences=n,
        do_sample=sampling,
        temperature=temperature if sampling else 1.0,
        beam_rules="openai-whisper",
        patience=options.patience if beams > 1 and options.patience is not None else 1.0,
    )
    filters = []
    if not options.without_timestamps:
        max_initial = options.max_initial_timestamp
        index = None if max_initial is None else round(max_initial / TIME_PRECISION)
        filters.append(TimestampRules(tok, len(prefix), index))
    batch = states.shape[0]
    prefix_ids = torch.tensor([prefix] * batch, dtype=torch.long)
    out = decode(
        whisper.model.decoder,
        states,
        None,
        prefix_ids,
        config,
        generator,
        logit_filters=filters,
        probe_position=prefix.index(tok.sot),
    )
    no_speech = out.probe_probs[:, tok.no_speech].tolist()
    lengths, sums = out.lengths.tolist(), out.sum_logprobs.tolist()
    results = []
    for b in range(batch):
        candidates = []
        for j, length in enumerate(lengths[b]):
            if length == 0:  # padding: this window has fewer hypotheses than another
                continue
            generated = out.sequences[b, j, len(prefix) : len(prefix) + length].tolist()
            tokens = generated[:-1] if generated[-1] == tok.eot else generated
            candidates.append((tokens, sums[b][j]))
        tokens, sum_logprob = candidates[rank(candidates, options.length_penalty)]
        text = tok.decode(tokens).strip()
        results.append(
            WindowResult(
                tokens=tokens,
                text=text,
                avg_logprob=sum_logprob / (len(tokens) + 1),
                no_speech_prob=no_speech[b],
                temperature=temperature,
                compression_ratio=compression_ratio(text),
            )
        )
    return results

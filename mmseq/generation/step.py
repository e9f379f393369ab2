"""What every search strategy shares: one decoding step, and the output it returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from mmseq.decoder import DecoderCache, TextDecoder
from mmseq.generation.config import GenerationConfig
from mmseq.generation.logits import LogitFilter, apply_processors


@dataclass
class GenerationOutput:
    """sequences [B, N, L]: prefix + generated tokens, pad after EOS (N = num_return_sequences).
    sum_logprobs [B, N]: log-probability of the generated tokens (EOS included);
    scores [B, N]: what hypotheses were ranked by (beam search: length-penalised sum_logprobs);
    lengths [B, N]: generated tokens per sequence, EOS included;
    probe_probs [B, V]: next-token probabilities at prefix position `probe_position`, when asked
    (Whisper's no-speech probability is read at <|startoftranscript|>)."""

    sequences: Tensor
    sum_logprobs: Tensor
    scores: Tensor
    lengths: Tensor
    probe_probs: Tensor | None = None


class NonFiniteLogitsError(ValueError):
    """The decoder produced NaN or infinite logits: broken weights, an overflow in a low
    precision, or a broken input. Decoding stops rather than return a garbage sequence."""


class Step:
    """One decoding step: feed the newest tokens, return filtered next-token logits [N, V].

    Filters run in order: the config's processors (`apply_processors`: repetition penalty,
    n-gram and bad-word bans, minimum length, forced tokens, suppressions), then `logit_filters`
    (each gets the logits and all tokens so far, [N, L], and returns the logits). The first step
    can also keep the probabilities at one prefix position (the probe).
    """

    def __init__(
        self,
        decoder: TextDecoder,
        cache: DecoderCache,
        config: GenerationConfig,
        logit_filters: Sequence[LogitFilter],
        probe_position: int | None,
        prefix_len: int,
    ) -> None:
        self.decoder, self.cache, self.config = decoder, cache, config
        self.prefix_len = prefix_len
        self.filters = logit_filters
        self.probe_position = probe_position
        self.probe_probs: Tensor | None = None
        self.index = 0

    def __call__(self, new: Tensor, tokens: Tensor, log_softmax: bool = False) -> Tensor:
        """new [N, 1] (or the prefix [N, P] at the first step), tokens [N, L] so far ->
        logits [N, V], log-probabilities when log_softmax (filters applied after it)."""
        probe = self.probe_position if self.index == 0 else None
        logits = self.decoder(new, cache=self.cache, last_only=probe is None)
        # checked before the filters, which set banned tokens to -inf on purpose. The row maxima
        # carry any NaN or +inf (max propagates NaN) and cost a fifth of isfinite() over [N, V]
        if not bool(logits[:, -1].amax(-1).isfinite().all()):
            raise NonFiniteLogitsError(
                f"the decoder produced non-finite logits (NaN or inf) at generation step "
                f"{self.index + 1}: the weights or the input are broken, or the compute type "
                "overflowed (try float32)"
            )
        if probe is not None:
            self.probe_probs = logits[:, probe].softmax(-1)
        logits = logits[:, -1]
        if log_softmax:
            logits = logits.log_softmax(-1)
        logits = apply_processors(logits, tokens, self.config, self.prefix_len)
        for logit_filter in self.filters:
            logits = logit_filter(logits, tokens)
        self.index += 1
        return logits

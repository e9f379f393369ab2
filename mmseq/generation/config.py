"""One frozen options object for every decoding strategy."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Hugging Face decoding options that mmseq does not implement, with the value that turns each
# off: `from_hf` warns when a generation_config.json sets one to anything else.
_HF_UNSUPPORTED = {
    "typical_p": 1.0,
    "min_p": None,
    "top_h": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "exponential_decay_length_penalty": None,
    "sequence_bias": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "penalty_alpha": None,
    "guidance_scale": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
}
# Hugging Face's defaults where they differ from GenerationConfig's (configuration_utils.py,
# GenerationConfig._get_default_generation_params): 20 new tokens, and top_k 50 when sampling
_HF_MAX_NEW_TOKENS, _HF_TOP_K = 20, 50
BEAM_RULES = ("transformers", "openai-whisper")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Semantics follow Hugging Face's `generate()` where both have an option.

    num_beams > 1 selects beam search, else do_sample selects sampling, else greedy.
    early_stopping (beam search): True stops a batch row as soon as num_beams hypotheses are
    finished; False stops when no running beam can still beat the worst finished one under the
    length penalty at the current length; "never" assumes the longest possible length.
    Beam scores are sum(logprobs) / generated_length ** length_penalty. At the last allowed
    step every one of the top num_beams candidates ends, EOS or not (Hugging Face's max-length
    rule).

    beam_rules: "transformers" (the above) or "openai-whisper" (openai-whisper's
    BeamSearchDecoder: filters on logits before the log-softmax, num_beams + 1 candidates per
    beam, the search ends once round(num_beams * patience) hypotheses have finished, and every
    finished hypothesis is returned for the caller to rank; see `openai_beam.py`).
    early_stopping and length_penalty are Hugging Face's rules only; patience openai-whisper's.

    The logit processors, in Hugging Face's order (transformers 5.24,
    `GenerationMixin._get_logits_processor`), each before the token is chosen:
    repetition_penalty: a logit of a token already in the sequence (prefix included) is divided
        by it if positive, multiplied by it if negative (1.0: off);
    no_repeat_ngram_size: a token that would repeat an n-gram of the sequence (prefix included)
        is banned (0: off);
    bad_words_ids: token sequences never generated: the last token of each is banned when the
        sequence so far ends with the others (one-token sequences always; `(eos_token_id,)`
        is dropped from the list, as Hugging Face does);
    min_length: EOS is banned while the sequence, prefix included, is shorter than this;
    min_new_tokens: EOS is banned for the first min_new_tokens new tokens (give one of the two);
    forced_bos_token_id: the first new token (Hugging Face forces it only when the prefix is the
        single start token; here after any prefix);
    forced_eos_token_id: the last new token (prefix + max_new_tokens is the maximum length);
    suppress_tokens: never generated;
    begin_suppress_tokens: not generated as the first new token, or as the second when
        forced_bos_token_id took the first (as Hugging Face's begin_index);
    then the caller's logit filters; then, when sampling, temperature, top_k and top_p.
    Beam search applies them to log-probabilities, greedy and sampling to logits.
    """

    max_new_tokens: int = 128
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    beam_rules: Literal["transformers", "openai-whisper"] = "transformers"
    patience: float = 1.0  # openai-whisper's beam rules only
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    eos_token_id: int | None = None
    pad_token_id: int | None = None  # defaults to eos_token_id
    suppress_tokens: tuple[int, ...] = ()  # never generated
    begin_suppress_tokens: tuple[int, ...] = ()  # not generated as the first new token
    repetition_penalty: float = 1.0  # 1.0: off
    no_repeat_ngram_size: int = 0  # 0: off
    bad_words_ids: tuple[tuple[int, ...], ...] = ()
    min_length: int = 0  # prefix included; 0: off
    min_new_tokens: int = 0  # 0: off
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens))
        object.__setattr__(self, "begin_suppress_tokens", tuple(self.begin_suppress_tokens))
        try:
            bad_words = tuple(tuple(word) for word in self.bad_words_ids)
        except TypeError:
            raise ValueError(
                "GenerationConfig: bad_words_ids must be sequences of token ids, "
                "e.g. ((5,), (6, 7))"
            ) from None
        object.__setattr__(self, "bad_words_ids", bad_words)
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.num_beams >= 1, "num_beams must be >= 1"),
            (self.num_return_sequences >= 1, "num_return_sequences must be >= 1"),
            (
                self.num_return_sequences <= self.num_beams or self.do_sample,
                "num_return_sequences must be <= num_beams (or use do_sample)",
            ),
            (self.temperature > 0, "temperature must be > 0 (use do_sample=False for greedy)"),
            (self.top_k >= 0, "top_k must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.early_stopping in (True, False, "never"), "early_stopping: True, False, 'never'"),
            (
                self.beam_rules in BEAM_RULES,
                f"beam_rules: expected one of {BEAM_RULES}, got {self.beam_rules!r}",
            ),
            (
                self.patience == 1.0 or self.beam_rules == "openai-whisper",
                "patience is a rule of openai-whisper's beam search (beam_rules='openai-whisper')",
            ),
            (
                round(self.num_beams * self.patience) >= 1,
                f"patience ({self.patience}) x num_beams ({self.num_beams}) must round to >= 1",
            ),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0 (1.0: off)"),
            (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0"),
            (self.min_length >= 0, "min_length must be >= 0"),
            (self.min_new_tokens >= 0, "min_new_tokens must be >= 0"),
            (
                not (self.min_length and self.min_new_tokens),
                "give min_length (prefix included) or min_new_tokens, not both",
            ),
            (
                self.min_new_tokens <= self.max_new_tokens,
                "min_new_tokens must be <= max_new_tokens",
            ),
            (
                self.eos_token_id is not None or not (self.min_length or self.min_new_tokens),
                "min_length and min_new_tokens need eos_token_id",
            ),
            (
                all(w and min(w) >= 0 for w in self.bad_words_ids),
                "bad_words_ids must be non-empty sequences of token ids >= 0",
            ),
        ]
        for name in ("forced_bos_token_id", "forced_eos_token_id", "eos_token_id"):
            value = getattr(self, name)
            checks.append((value is None or value >= 0, f"{name} must be >= 0"))
            # as Hugging Face's GenerationConfig.validate: every logit would be -inf there
            checks.append(
                (
                    name == "eos_token_id" or value not in self.suppress_tokens,
                    f"{name} ({value}) is also in suppress_tokens: nothing could be generated",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GenerationConfig: {message}")

    @property
    def pad_id(self) -> int:
        if self.pad_token_id is not None:
            return self.pad_token_id
        if self.eos_token_id is not None:
            return self.eos_token_id
        return 0

    @classmethod
    def from_hf(
        cls, generation_config: Mapping[str, Any], prefix_len: int = 1, **overrides: Any
    ) -> GenerationConfig:
        """The options of a Hugging Face `generation_config.json` (as a dict), then `overrides`.

        prefix_len: the decoder prefix's length (Hugging Face's decoder_input_ids), which its
        `max_length` counts: max_new_tokens = max_length - prefix_len. Where a key is absent
        (or null), Hugging Face's default applies: 20 new tokens, top_k 50 when sampling.
        max_new_tokens wins over max_length and min_new_tokens over min_length, as in Hugging
        Face. eos_token_id may be a list: the first id is taken (mmseq stops on one EOS; Hugging
        Face stops on any of them). Sampling options are read only when do_sample is true.
        Other keys (decoder_start_token_id, bos_token_id, forced_decoder_ids, transformers_version,
        Whisper's timestamp ids, ...) are ignored; a decoding option that mmseq does not
        implement (typical_p, num_beam_groups, ...) set to an active value gives a warning.
        """
        hf = {key: value for key, value in generation_config.items() if value is not None}
        options: dict[str, Any] = {}
        if "max_new_tokens" in hf:
            options["max_new_tokens"] = hf["max_new_tokens"]
        elif "max_length" in hf:
            if hf["max_length"] <= prefix_len:
                raise ValueError(
                    f"GenerationConfig.from_hf: max_length ({hf['max_length']}) leaves no new "
                    f"token after a prefix of {prefix_len}"
                )
            options["max_new_tokens"] = hf["max_length"] - prefix_len
        else:
            options["max_new_tokens"] = _HF_MAX_NEW_TOKENS
        if "min_new_tokens" in hf:
            options["min_new_tokens"] = hf["min_new_tokens"]
        elif "min_length" in hf:
            options["min_length"] = hf["min_length"]
        copied = (
            "num_beams",
            "num_return_sequences",
            "length_penalty",
            "early_stopping",
            "do_sample",
            "pad_token_id",
            "repetition_penalty",
            "no_repeat_ngram_size",
            "forced_bos_token_id",
            "forced_eos_token_id",
        )
        options |= {key: hf[key] for key in copied if key in hf}
        if hf.get("do_sample"):
            options["top_k"] = hf.get("top_k", _HF_TOP_K)
            options |= {key: hf[key] for key in ("temperature", "top_p") if key in hf}
        eos = hf.get("eos_token_id")
        if isinstance(eos, Iterable):
            eos = next(iter(eos), None)
        options["eos_token_id"] = eos
        for key in ("suppress_tokens", "begin_suppress_tokens", "bad_words_ids"):
            if key in hf:
                options[key] = hf[key]
        ignored = [k for k, off in _HF_UNSUPPORTED.items() if k in hf and hf[k] != off]
        if ignored:
            warnings.warn(
                f"GenerationConfig.from_hf: mmseq does not implement {', '.join(ignored)}; "
                "decoding goes on without them",
                stacklevel=2,
            )
        return cls(**(options | overrides))

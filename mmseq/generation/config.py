"""One frozen options object for every decoding strategy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Semantics follow Hugging Face's `generate()` where both have an option.

    num_beams > 1 selects beam search, else do_sample selects sampling, else greedy.
    early_stopping (beam search): True stops a batch row as soon as num_beams hypotheses are
    finished; False stops when no running beam can still beat the worst finished one under the
    length penalty at the current length; "never" assumes the longest possible length.
    Beam scores are sum(logprobs) / generated_length ** length_penalty.
    """

    max_new_tokens: int = 128
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    eos_token_id: int | None = None
    pad_token_id: int | None = None  # defaults to eos_token_id
    suppress_tokens: tuple[int, ...] = ()  # never generated
    begin_suppress_tokens: tuple[int, ...] = ()  # not generated as the first new token

    def __post_init__(self) -> None:
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
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"GenerationConfig: {message}")
        object.__setattr__(self, "suppress_tokens", tuple(self.suppress_tokens))
        object.__setattr__(self, "begin_suppress_tokens", tuple(self.begin_suppress_tokens))

    @property
    def pad_id(self) -> int:
        if self.pad_token_id is not None:
            return self.pad_token_id
        if self.eos_token_id is not None:
            return self.eos_token_id
        return 0

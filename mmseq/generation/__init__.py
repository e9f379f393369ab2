"""Decoding: greedy, sampling and beam search on the KV cache, configured by GenerationConfig."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmseq.generation.config import GenerationConfig
from mmseq.generation.logits import LogitFilter
from mmseq.generation.search import GenerationOutput, decode
from mmseq.model import EncoderDecoder


@torch.inference_mode()
def generate(
    model: EncoderDecoder,
    modality: str,
    inputs: Tensor,
    prefix: Tensor | list[int],
    config: GenerationConfig,
    lengths: Tensor | None = None,
    generator: torch.Generator | None = None,
    logit_filters: Sequence[LogitFilter] = (),
    probe_position: int | None = None,
) -> GenerationOutput:
    """Encode `inputs` with the `modality` encoder and decode after `prefix`.

    prefix: forced first tokens, [B, P] or one list used for every input. logit_filters and
    probe_position: see `decode`.
    """
    encoded = model.encode(modality, inputs, lengths)
    batch = encoded.states.shape[0]
    if not isinstance(prefix, Tensor):
        if not prefix:
            raise ValueError("prefix: give at least one token (e.g. the start token)")
        prefix = torch.tensor([list(prefix)] * batch, dtype=torch.long)
    return decode(
        model.decoder,
        encoded.states,
        encoded.mask,
        prefix,
        config,
        generator,
        logit_filters,
        probe_position,
    )


__all__ = ["GenerationConfig", "GenerationOutput", "LogitFilter", "decode", "generate"]

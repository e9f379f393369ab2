"""Decoding: greedy, sampling and beam search on the KV cache, configured by GenerationConfig."""

from __future__ import annotations

import torch
from torch import Tensor

from mmseq.generation.config import GenerationConfig
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
) -> GenerationOutput:
    """Encode `inputs` with the `modality` encoder and decode after `prefix`.

    prefix: forced first tokens, [B, P] or one list used for every input.
    """
    encoded = model.encode(modality, inputs, lengths)
    batch = encoded.states.shape[0]
    if not isinstance(prefix, Tensor):
        if not prefix:
            raise ValueError("prefix: give at least one token (e.g. the start token)")
        prefix = torch.tensor([list(prefix)] * batch, dtype=torch.long)
    return decode(model.decoder, encoded.states, encoded.mask, prefix, config, generator)


__all__ = ["GenerationConfig", "GenerationOutput", "decode", "generate"]

"""MarianMT (opus-mt) from Hugging Face folders.

BART's layer layout, post-LN with no embedding norm and no final norm, Marian's sinusoids
(recomputed by the reference, so absent from the file), sqrt(d) embedding scale when
`scale_embedding`, SiLU (`swish`) in the converted models, a non-zero `final_logits_bias`.
Decoding starts from the pad token; the converter's generation config bans pad as a bad word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmseq.model import ModelConfig
from mmseq.text.bart import bart_style_config, bart_style_map
from mmseq.text.hf import Mapped

NAME = "marian"
MODEL_TYPES = ("marian",)


def model_config(config: dict[str, Any], source: Path, tensors: set[str]) -> ModelConfig:
    shared = config.get("share_encoder_decoder_embeddings", True)
    return bart_style_config(
        config,
        source,
        pre_norm=False,
        positions="sinusoidal_marian",
        decoder_vocab_size=None if shared else config.get("decoder_vocab_size"),
        share_embeddings=shared,
    )


def weight_map(config: ModelConfig, hf_config: dict[str, Any]) -> list[Mapped]:
    return bart_style_map(config, positions_optional=True, positions_export=False)


def ignored(config: ModelConfig, hf_config: dict[str, Any]) -> set[str]:
    return {"lm_head.weight"}  # tied to the decoder's embedding

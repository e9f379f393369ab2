"""Pegasus from Hugging Face folders.

BART's layer layout, pre-LN with a final norm in both stacks, Marian's sinusoids (saved in the
file by transformers; recomputed when absent), sqrt(d) embedding scale when `scale_embedding`,
`final_logits_bias`. Decoding starts from the pad token (0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmseq.model import ModelConfig
from mmseq.text.bart import bart_style_config, bart_style_map
from mmseq.text.hf import Mapped

NAME = "pegasus"
MODEL_TYPES = ("pegasus",)


def model_config(config: dict[str, Any], source: Path, tensors: set[str]) -> ModelConfig:
    return bart_style_config(config, source, pre_norm=True, positions="sinusoidal_marian")


def weight_map(config: ModelConfig, hf_config: dict[str, Any]) -> list[Mapped]:
    return bart_style_map(config, positions_optional=True)


def ignored(config: ModelConfig, hf_config: dict[str, Any]) -> set[str]:
    return {"lm_head.weight"}  # tied to the embedding

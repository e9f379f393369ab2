"""Run a model in lower precision: bf16/fp16 weights, or int8 dynamic quantisation of its
linear layers (weights int8 per output channel, activations quantised on the fly)."""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import torch
from torch import nn

ComputeType = Literal["float32", "bfloat16", "float16", "int8"]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)


def apply_compute_type(model: nn.Module, compute_type: str) -> nn.Module:
    """Return `model` converted for `compute_type` (int8 returns a quantised copy, CPU only).

    Norms keep computing in fp32 under half precision (see mmseq.nn.norms); the output
    projection tied to the token embedding stays in the embedding's precision.
    """
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"compute_type: expected one of {COMPUTE_TYPES}, got {compute_type!r}")
    if compute_type == "int8":
        device = next(model.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"compute_type int8 runs on the CPU only, the model is on {device}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice, once per layer
            quantized = torch.ao.quantization.quantize_dynamic(
                model.float(),
                {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                dtype=torch.qint8,
            )
        return quantized
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    return model.to(dtype[compute_type])

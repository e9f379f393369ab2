"""Run a model in lower precision: bf16/fp16 weights, or int8 dynamic quantisation.

int8 quantises the MLPs (weights int8 per output channel, activations quantised on the fly by
fbgemm, per tensor) and keeps attention projections and the output projection in fp32. Measured
on Whisper tiny.en's demo clips: quantising the encoder's attention projections too doubled the
word error rate and the output projection cost a word; this split keeps fp32's transcripts and
quantises 2/3 of the encoder's linear-layer work.
"""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import torch
from torch import nn

from mmseq.nn.blocks import MLP

ComputeType = Literal["float32", "bfloat16", "float16", "int8"]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)


def apply_compute_type(model: nn.Module, compute_type: str) -> nn.Module:
    """Convert `model` in place for `compute_type` and return it (int8: CPU only).

    Norms keep computing in fp32 under half precision (see mmseq.nn.norms); the output
    projection tied to the token embedding follows the embedding's precision.
    """
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"compute_type: expected one of {COMPUTE_TYPES}, got {compute_type!r}")
    if compute_type == "int8":
        return _quantize_int8(model)
    if compute_type == "float16" and next(model.parameters()).device.type == "cpu":
        warnings.warn(
            "float16 on the CPU is emulated and slow; bfloat16 is fast on CPUs with AVX-512 BF16",
            stacklevel=2,
        )
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    return model.to(dtype[compute_type])


def _quantize_int8(model: nn.Module) -> nn.Module:
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"compute_type int8 runs on the CPU only; the model is on {device}")
    model.float()
    targets = [m for m in model.modules() if isinstance(m, MLP)]
    qconfig = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice, once per layer
        for module in targets:
            for name, child in module.named_children():
                if isinstance(child, nn.Linear):
                    quantized = torch.ao.quantization.quantize_dynamic(
                        nn.Sequential(child), qconfig, dtype=torch.qint8
                    )[0]
                    setattr(module, name, quantized)
    return model

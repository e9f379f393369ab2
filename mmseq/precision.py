"""Run a model in lower precision: bf16/fp16 weights, or int8 quantisation on the CPU.

int8 treats the two halves of an encoder-decoder differently, because their work differs:
- Encoders multiply big matrices (1500 rows per Whisper window): their MLPs use fbgemm's dynamic
  quantisation (weights int8 per output channel, activations quantised on the fly, one scale per
  call). Attention projections stay fp32: measured on Whisper tiny.en's demo clips, quantising
  them too doubled the word error rate.
- The decoder multiplies a few rows (one token per hypothesis) by every weight at each step, so
  it is bound by reading the weights. Its linear layers keep int8 weights (per output channel)
  and multiply activations rounded to bf16 with `_weight_int8pack_mm` (4x fewer bytes read than
  fp32). Activations are not quantised, so each row's result is independent of the other rows
  of the batch: fbgemm's one activation scale per call made batch-8 transcripts differ from
  batch-1 ones (short clips, int8: 10.7% vs 7.4% WER). The cross-attention's key/value projection
  (encoder rows, once per window) stays fp32, and so does the output projection: int8 weights
  there (per-row scales, bf16 activations) cost accuracy: on 120 espeak-ng clips (the short set
  of benchmarks/transcribe_vs_peers.py) tiny.en's WER went from 10.08% (int8) to 10.64% (fp32:
  10.42%) and base's from 8.96% to 9.19% (fp32: 8.46%), past the 0.5-point bar; on the demo
  speech model trained from scratch from 65% to 78%.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from mmseq.config import COMPUTE_TYPES, ComputeType  # noqa: F401 - re-exported
from mmseq.decoder import TextDecoder
from mmseq.nn.attention import CrossAttention
from mmseq.nn.blocks import MLP


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
    model = model.to(dtype[compute_type])
    for module in model.modules():  # T5's feed-forward output stays fp32 (see BlockConfig)
        if isinstance(module, MLP) and module.fp32_output:
            module.fc2.float()
        if isinstance(module, TextDecoder) and module.lm_head is not None:
            module.lm_head.float()  # logits in fp32 (see TextDecoder.logits)
    return model


class Int8WeightLinear(nn.Module):
    """A linear layer with int8 weights [N, K] and one scale per output channel; inputs are
    rounded to bf16 and the products accumulate in fp32. Returns fp32."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(1).clamp_min(1e-12) / 127
        self.register_buffer("weight", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8WeightLinear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., K] -> [..., N] in fp32."""
        rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if hasattr(torch.ops.aten, "_weight_int8pack_mm"):  # torch >= 2.3
            scale = self.scale.to(torch.bfloat16)  # survives a later model.float()
            y = torch.ops.aten._weight_int8pack_mm(rows, self.weight, scale).float()
        else:
            y = rows.float() @ (self.weight.float() * self.scale.float()[:, None]).t()
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


def _quantize_int8(model: nn.Module) -> nn.Module:
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"compute_type int8 runs on the CPU only; the model is on {device}")
    model.float()
    decoder = getattr(model, "decoder", None)
    if isinstance(decoder, TextDecoder):
        _int8_weights(decoder)
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


def _int8_weights(decoder: TextDecoder) -> None:
    """Every linear layer of the decoder's blocks except the cross-attention's key/value
    projection -> Int8WeightLinear (see the module docstring)."""
    for block in decoder.blocks:
        for module in list(block.modules()):
            for name, child in module.named_children():
                if isinstance(child, nn.Linear) and not (
                    isinstance(module, CrossAttention) and name == "kv"
                ):
                    setattr(module, name, Int8WeightLinear.from_linear(child))


def check_device(device: str | torch.device, compute_type: str = "float32") -> str | torch.device:
    """The device to load on: "auto" becomes "cuda" when a CUDA GPU is present, else "cpu"
    (int8 always "cpu": its kernels are the CPU's), as faster-whisper's device="auto" does;
    any other device is returned as given. Refuses, before any model loads, a device this
    machine lacks and float16 on the CPU (emulated: many times slower than float32; bfloat16
    or int8 are the CPU's fast types)."""
    asked = device  # named in the errors: "auto" found no GPU, rather than "cpu"
    if str(device) == "auto":
        device = "cuda" if compute_type != "int8" and torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here; use cpu")
    if compute_type == "float16" and not str(device).startswith("cuda"):
        where = "--device auto found none here" if asked == "auto" else f"not --device {asked}"
        raise ValueError(
            f"--compute-type float16 needs a CUDA GPU ({where}); on the CPU use bfloat16 "
            "(fast with AVX-512 BF16 or AMX) or int8"
        )
    return device

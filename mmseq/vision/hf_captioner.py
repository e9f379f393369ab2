"""Import a Hugging Face `VisionEncoderDecoderModel` directory (a ViT encoder and a GPT-2 decoder
with cross-attention: how most users' captioners are stored) as an mmseq EncoderDecoder.

GPT-2's blocks are mmseq's pre-LN blocks in the same order (self-attention, cross-attention,
MLP); its `Conv1D` layers store weights as [in, out] and are transposed. The cross-attention's
fused key/value projection `c_attn` maps to `kv` as it is; `enc_to_dec_proj` (present when the
encoder is wider or narrower than the decoder) becomes the image bridge. The tokenizer is not
converted: the returned special ids say how to decode with the checkpoint's own tokenizer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mmseq.decoder import DecoderConfig
from mmseq.errors import CheckpointError
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.nn import BlockConfig
from mmseq.serialization import read_json
from mmseq.vision.hf_vit import hf_vit_to_mmseq, image_encoder_config_from_hf
from mmseq.vision.preprocess import read_preprocessing

StateDict = dict[str, Tensor]

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
# GPT-2 per-layer modules -> mmseq (True: a Conv1D whose weight is transposed)
_LAYER_NAMES = {
    "ln_1": ("attn_norm", False),
    "attn.c_attn": ("attn.qkv", True),
    "attn.c_proj": ("attn.out", True),
    "ln_cross_attn": ("cross_attn_norm", False),
    "crossattention.q_attn": ("cross_attn.q", True),
    "crossattention.c_attn": ("cross_attn.kv", True),
    "crossattention.c_proj": ("cross_attn.out", True),
    "ln_2": ("mlp_norm", False),
    "mlp.c_fc": ("mlp.fc1", True),
    "mlp.c_proj": ("mlp.fc2", True),
}
_LAYER = re.compile(r"transformer\.h\.(\d+)\.(.+)\.(weight|bias)")
_BUFFERS = re.compile(r"transformer\.h\.\d+\.(attn|crossattention)\.(bias|masked_bias)")


@dataclass
class ImportedCaptioner:
    """The model and the ids its generation config uses (decoding starts from
    `decoder_start_token_id`)."""

    model: EncoderDecoder
    decoder_start_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None


def gpt2_decoder_config(config: dict[str, Any]) -> DecoderConfig:
    """A GPT2Config (as a dict) with cross-attention -> DecoderConfig."""
    if not config.get("add_cross_attention", False):
        raise ValueError("the GPT-2 decoder has no cross-attention (add_cross_attention false)")
    if config.get("scale_attn_by_inverse_layer_idx", False):
        raise ValueError("scale_attn_by_inverse_layer_idx is not supported")
    if config.get("cross_attention_hidden_size") not in (None, config["n_embd"]):
        raise ValueError("cross_attention_hidden_size other than n_embd is not supported")
    act = config.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(
            f"activation_function: expected one of {sorted(_ACTIVATIONS)}, got {act!r}"
        )
    d = config["n_embd"]
    block = BlockConfig(
        d_model=d,
        n_heads=config["n_head"],
        d_ff=config.get("n_inner") or 4 * d,
        activation=_ACTIVATIONS[act],
        norm_eps=config.get("layer_norm_epsilon", 1e-5),
        attention_scale=None if config.get("scale_attn_weights", True) else 1.0,
    )
    return DecoderConfig(
        vocab_size=config["vocab_size"],
        n_ctx=config["n_positions"],
        n_layers=config["n_layer"],
        block=block,
        tie_embeddings=config.get("tie_word_embeddings", True),
    )


def gpt2_to_mmseq(state_dict: StateDict, prefix: str = "decoder.") -> StateDict:
    """GPT2LMHeadModel tensors (names under `prefix`) -> TextDecoder state dict."""
    out: StateDict = {}
    for full_name, tensor in state_dict.items():
        if not full_name.startswith(prefix):
            continue
        name = full_name.removeprefix(prefix)
        if name == "transformer.wte.weight":
            out["token_embedding.weight"] = tensor
        elif name == "transformer.wpe.weight":
            out["positions.weight"] = tensor
        elif name in ("transformer.ln_f.weight", "transformer.ln_f.bias"):
            out["norm." + name.rsplit(".", 1)[1]] = tensor
        elif name == "lm_head.weight":
            out["lm_head.weight"] = tensor
        elif (m := _LAYER.fullmatch(name)) and m[2] in _LAYER_NAMES:
            target, conv1d = _LAYER_NAMES[m[2]]
            value = tensor.t() if conv1d and m[3] == "weight" else tensor
            out[f"blocks.{m[1]}.{target}.{m[3]}"] = value.contiguous()
        elif not _BUFFERS.fullmatch(name):  # old files hold the causal mask as a buffer
            raise CheckpointError(f"unexpected GPT-2 tensor {full_name!r}")
    return out


def load_hf_captioner(path: str | os.PathLike) -> ImportedCaptioner:
    """A VisionEncoderDecoderModel directory (config.json + model.safetensors, a ViT encoder
    and a GPT-2 decoder) -> ImportedCaptioner with the model in eval mode; the image mean and
    std come from its preprocessor_config.json where there is one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / "config.json", path / "model.safetensors"
    config = read_json(config_path)
    if config.get("model_type") != "vision-encoder-decoder":
        raise CheckpointError(f"{config_path}: expected model_type 'vision-encoder-decoder'")
    encoder, decoder = config.get("encoder", {}), config.get("decoder", {})
    kinds = (encoder.get("model_type"), decoder.get("model_type"))
    if kinds != ("vit", "gpt2"):
        raise CheckpointError(
            f"{config_path}: expected a ViT encoder and a GPT-2 decoder, got {kinds}"
        )
    try:
        image = image_encoder_config_from_hf(encoder)
        model_config = ModelConfig(decoder=gpt2_decoder_config(decoder), image=image)
    except KeyError as err:
        raise CheckpointError(f"{config_path}: missing field {err}") from None
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from None
    preprocessing = read_preprocessing(path)
    if preprocessing is not None:
        image.image_mean, image.image_std = preprocessing.mean, preprocessing.std
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from None
    try:
        state = {f"encoders.image.{k}": v for k, v in hf_vit_to_mmseq(tensors, "encoder.").items()}
        state |= {f"decoder.{k}": v for k, v in gpt2_to_mmseq(tensors).items()}
    except CheckpointError as err:
        raise CheckpointError(f"{weights_path}: {err}") from None
    for param in ("weight", "bias"):
        if f"enc_to_dec_proj.{param}" in tensors:
            state[f"bridges.image.{param}"] = tensors[f"enc_to_dec_proj.{param}"]
    model = EncoderDecoder(model_config)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:
        raise CheckpointError(f"{weights_path}: does not match {config_path}: {err}") from None
    return ImportedCaptioner(
        model.eval(),
        config.get("decoder_start_token_id", decoder.get("bos_token_id")),
        config.get("eos_token_id", decoder.get("eos_token_id")),
        config.get("pad_token_id", decoder.get("pad_token_id")),
    )

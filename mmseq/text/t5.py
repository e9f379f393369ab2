"""T5 v1.0, T5 v1.1 / flan-t5 and mT5 from Hugging Face folders.

Pre-LN RMSNorm blocks without biases, unscaled attention with an inner width of heads x d_kv,
relative position bias (one table in the first layer of each stack, shared by the others), a
ReLU or gated-GELU (tanh) feed-forward whose output stays fp32 under half precision, one
embedding shared by encoder and decoder. The output rescale by d_model**-0.5 comes from
`scale_decoder_outputs` (transformers 5) or, in files written by transformers 4, from
`tie_word_embeddings` (mT5: never); a file holding its own `lm_head.weight` under
`tie_word_embeddings: false` has an untied head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmseq.decoder import DecoderConfig
from mmseq.encoders import TextEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.model import ModelConfig
from mmseq.nn import BlockConfig
from mmseq.text.hf import Mapped, linear, one, required

NAME = "t5"
MODEL_TYPES = ("t5", "mt5")

# feed_forward_proj -> (activation, gated); "gated-gelu" is gelu_new, the tanh approximation
_FEED_FORWARD = {
    "relu": ("relu", False),
    "gelu": ("gelu", False),
    "gated-gelu": ("gelu_tanh", True),
    "gated-relu": ("relu", True),
    "gated-silu": ("silu", True),
}


def model_config(config: dict[str, Any], source: Path, tensors: set[str]) -> ModelConfig:
    proj = config.get("feed_forward_proj", "relu")
    if proj not in _FEED_FORWARD:
        raise CheckpointError(
            f"{source}: feed_forward_proj {proj!r} is not supported; expected one of "
            f"{sorted(_FEED_FORWARD)}"
        )
    activation, gated = _FEED_FORWARD[proj]
    block = BlockConfig(
        d_model=required(config, "d_model", source),
        n_heads=required(config, "num_heads", source),
        head_dim=required(config, "d_kv", source),
        d_ff=required(config, "d_ff", source),
        activation=activation,
        gated_mlp=gated,
        bias=False,
        norm="rmsnorm",
        norm_eps=config.get("layer_norm_epsilon", 1e-6),
        dropout=config.get("dropout_rate", 0.1),  # T5 also drops attention probabilities
        attention_dropout=config.get("dropout_rate", 0.1),
        attention_scale=1.0,
        fp32_mlp_output=True,
    )
    n_layers = required(config, "num_layers", source)
    # T5 has no absolute positions, so no table sets a length: 512 is what it was trained on,
    # and the relative buckets work past it (inputs are truncated to n_ctx by the products)
    stack = {
        "vocab_size": required(config, "vocab_size", source),
        "n_ctx": config.get("n_positions", 512),
        "block": block,
        "positions": "relative",
        "relative_buckets": config.get("relative_attention_num_buckets", 32),
        "relative_max_distance": config.get("relative_attention_max_distance", 128),
    }
    scale = config.get("scale_decoder_outputs")
    if scale is None:  # transformers 4 files; mT5 is of the v1.1 family and never rescales
        scale = config.get("model_type") != "mt5" and config.get("tie_word_embeddings", True)
    return ModelConfig(
        text=TextEncoderConfig(n_layers=n_layers, **stack),
        decoder=DecoderConfig(
            n_layers=config.get("num_decoder_layers") or n_layers,
            # transformers 5 always ties T5; files of transformers 4 say false and hold the head
            tie_embeddings=not (
                "lm_head.weight" in tensors and config.get("tie_word_embeddings") is False
            ),
            rescale_output=bool(scale),
            **stack,
        ),
        share_embeddings=True,
    )


def _block(ours: str, theirs: str, gated: bool, cross: bool) -> list[Mapped]:
    out = linear(f"{ours}.attn.qkv", (f"{theirs}.layer.0.SelfAttention.{p}" for p in "qkv"), False)
    out += linear(f"{ours}.attn.out", [f"{theirs}.layer.0.SelfAttention.o"], False)
    out.append(one(f"{ours}.attn_norm.weight", f"{theirs}.layer.0.layer_norm.weight"))
    ff = 1
    if cross:
        ff = 2
        a = f"{theirs}.layer.1.EncDecAttention"
        out += linear(f"{ours}.cross_attn.q", [f"{a}.q"], False)
        out += linear(f"{ours}.cross_attn.kv", [f"{a}.k", f"{a}.v"], False)
        out += linear(f"{ours}.cross_attn.out", [f"{a}.o"], False)
        out.append(one(f"{ours}.cross_attn_norm.weight", f"{theirs}.layer.1.layer_norm.weight"))
    dense = f"{theirs}.layer.{ff}.DenseReluDense"
    if gated:
        out += linear(f"{ours}.mlp.fc1", [f"{dense}.wi_0"], False)
        out += linear(f"{ours}.mlp.gate", [f"{dense}.wi_1"], False)
    else:
        out += linear(f"{ours}.mlp.fc1", [f"{dense}.wi"], False)
    out += linear(f"{ours}.mlp.fc2", [f"{dense}.wo"], False)
    out.append(one(f"{ours}.mlp_norm.weight", f"{theirs}.layer.{ff}.layer_norm.weight"))
    return out


def weight_map(config: ModelConfig, hf_config: dict[str, Any]) -> list[Mapped]:
    embedding = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    enc, dec = config.text, config.decoder
    gated = dec.block.gated_mlp
    out = [
        one("encoders.text.token_embedding.weight", *embedding),
        one("decoder.token_embedding.weight", *embedding),
        one(
            "encoders.text.stack.relative.embedding.weight",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ),
        one(
            "decoder.relative.embedding.weight",
            "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ),
        one("encoders.text.stack.norm.weight", "encoder.final_layer_norm.weight"),
        one("decoder.norm.weight", "decoder.final_layer_norm.weight"),
    ]
    for i in range(enc.n_layers):
        out += _block(f"encoders.text.stack.blocks.{i}", f"encoder.block.{i}", gated, False)
    for i in range(dec.n_layers):
        out += _block(f"decoder.blocks.{i}", f"decoder.block.{i}", gated, True)
    if not dec.tie_embeddings:
        out.append(one("decoder.lm_head.weight", "lm_head.weight"))
    return out


def ignored(config: ModelConfig, hf_config: dict[str, Any]) -> set[str]:
    # a tied head is sometimes saved as well: it is the embedding again
    return {"lm_head.weight"} if config.decoder.tie_embeddings else set()

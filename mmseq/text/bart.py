"""BART and mBART from Hugging Face folders, and the layer names that Marian and Pegasus share.

BART: post-LN LayerNorm blocks with biases, learned positions read at index + 2, an embedding
LayerNorm, no final norm, sqrt(d) embedding scale when `scale_embedding`, `final_logits_bias`.
mBART: the same with pre-LN blocks and a final norm in both stacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmseq.decoder import DecoderConfig
from mmseq.encoders import TextEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.model import ModelConfig
from mmseq.nn import BlockConfig
from mmseq.nn.positions import PositionKind
from mmseq.text.hf import Mapped, linear, one, required

NAME = "bart"
MODEL_TYPES = ("bart", "mbart")

# transformers' ACT2FN names -> mmseq's
ACTIVATIONS = {
    "gelu": "gelu",
    "relu": "relu",
    "swish": "silu",
    "silu": "silu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
}
EMBEDDING = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def bart_style_config(
    config: dict[str, Any],
    source: Path,
    *,
    pre_norm: bool,
    positions: PositionKind,
    position_offset: int = 0,
    embedding_norm: bool = False,
    decoder_vocab_size: int | None = None,
    share_embeddings: bool = True,
) -> ModelConfig:
    """The ModelConfig of a BART-layout model (BART, mBART, Marian, Pegasus)."""
    name = config.get("activation_function", "gelu")
    if name not in ACTIVATIONS:
        raise CheckpointError(
            f"{source}: activation_function {name!r} is not supported; expected one of "
            f"{sorted(ACTIVATIONS)}"
        )

    def block(side: str) -> BlockConfig:
        return BlockConfig(
            d_model=required(config, "d_model", source),
            n_heads=required(config, f"{side}_attention_heads", source),
            d_ff=required(config, f"{side}_ffn_dim", source),
            activation=ACTIVATIONS[name],
            pre_norm=pre_norm,
            norm_eps=1e-5,
            dropout=config.get("dropout", 0.1),
            activation_dropout=config.get("activation_dropout", 0.0),
            attention_dropout=config.get("attention_dropout", 0.0),
        )

    vocab = required(config, "vocab_size", source)
    stack = {
        "n_ctx": required(config, "max_position_embeddings", source),
        "positions": positions,
        "position_offset": position_offset,
        "scale_embeddings": bool(config.get("scale_embedding", False)),
        "embedding_norm": embedding_norm,
        "final_norm": pre_norm,
    }
    return ModelConfig(
        text=TextEncoderConfig(
            vocab_size=vocab,
            n_layers=required(config, "encoder_layers", source),
            block=block("encoder"),
            **stack,
        ),
        decoder=DecoderConfig(
            vocab_size=decoder_vocab_size or vocab,
            n_layers=required(config, "decoder_layers", source),
            block=block("decoder"),
            final_logits_bias=True,
            **stack,
        ),
        share_embeddings=share_embeddings,
    )


def _layer(ours: str, theirs: str, cross: bool) -> list[Mapped]:
    def attention(ours_attn: str, theirs_attn: str) -> list[Mapped]:
        if ours_attn.endswith("cross_attn"):
            out = linear(f"{ours_attn}.q", [f"{theirs_attn}.q_proj"], True)
            out += linear(f"{ours_attn}.kv", [f"{theirs_attn}.{p}_proj" for p in "kv"], True)
        else:
            out = linear(f"{ours_attn}.qkv", [f"{theirs_attn}.{p}_proj" for p in "qkv"], True)
        return out + linear(f"{ours_attn}.out", [f"{theirs_attn}.out_proj"], True)

    out = attention(f"{ours}.attn", f"{theirs}.self_attn")
    out += linear(f"{ours}.attn_norm", [f"{theirs}.self_attn_layer_norm"], True)
    if cross:
        out += attention(f"{ours}.cross_attn", f"{theirs}.encoder_attn")
        out += linear(f"{ours}.cross_attn_norm", [f"{theirs}.encoder_attn_layer_norm"], True)
    out += linear(f"{ours}.mlp.fc1", [f"{theirs}.fc1"], True)
    out += linear(f"{ours}.mlp.fc2", [f"{theirs}.fc2"], True)
    out += linear(f"{ours}.mlp_norm", [f"{theirs}.final_layer_norm"], True)
    return out


def bart_style_map(
    config: ModelConfig, positions_optional: bool = False, positions_export: bool = True
) -> list[Mapped]:
    """Tensor names of a BART-layout model; which tensors exist follows the config."""
    enc, dec = config.text, config.decoder
    shared = config.share_embeddings
    out = [
        one("encoders.text.token_embedding.weight", *(EMBEDDING if shared else EMBEDDING[1:2])),
        one("decoder.token_embedding.weight", *(EMBEDDING if shared else EMBEDDING[2:])),
        one("decoder.final_logits_bias", "final_logits_bias"),
    ]
    for side, ours, cfg in (("encoder", "encoders.text", enc), ("decoder", "decoder", dec)):
        if cfg.positions != "none":
            out.append(
                one(
                    f"{ours}.positions.weight",
                    f"{side}.embed_positions.weight",
                    optional=positions_optional,
                    export=positions_export,
                )
            )
        if cfg.embedding_norm:
            out += linear(f"{ours}.embedding_norm", [f"{side}.layernorm_embedding"], True)
        if cfg.has_final_norm:
            norm = f"{ours}.stack.norm" if side == "encoder" else f"{ours}.norm"
            out += linear(norm, [f"{side}.layer_norm"], True)
    for i in range(enc.n_layers):
        out += _layer(f"encoders.text.stack.blocks.{i}", f"encoder.layers.{i}", False)
    for i in range(dec.n_layers):
        out += _layer(f"decoder.blocks.{i}", f"decoder.layers.{i}", True)
    return out


def model_config(config: dict[str, Any], source: Path, tensors: set[str]) -> ModelConfig:
    mbart = config.get("model_type") == "mbart"
    return bart_style_config(
        config,
        source,
        pre_norm=mbart,
        positions="learned",
        position_offset=2,
        embedding_norm=True,
    )


def weight_map(config: ModelConfig, hf_config: dict[str, Any]) -> list[Mapped]:
    return bart_style_map(config)


def ignored(config: ModelConfig, hf_config: dict[str, Any]) -> set[str]:
    return {"lm_head.weight"}  # tied to the embedding

"""Import Whisper checkpoints from the three formats users have.

- openai-whisper `.pt`: {"dims": {...}, "model_state_dict": {...}} (loaded with
  `weights_only=True`, so no pickled code runs);
- Hugging Face directory: config.json + model.safetensors;
- CTranslate2 directory (faster-whisper): model.bin + config.json.

Every format is first renamed to openai-whisper's layout (the smallest and the reference), then
one function maps that layout onto mmseq's EncoderDecoder. Tensor names and quirks are those in
shared/reference/whisper-checkpoint-formats.md. The same name tables map back
(`mmseq_to_openai`, `openai_to_hf`), for `mmseq export --format openai|hf`
(mmseq.whisper.export).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mmseq.decoder import DecoderConfig
from mmseq.encoders import AudioEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.nn import BlockConfig
from mmseq.nn.init import skip_init
from mmseq.serialization import atomic_open
from mmseq.whisper.ct2 import dequantize_ct2, read_ct2_model

StateDict = dict[str, Tensor]


@dataclass
class WhisperDims:
    """openai-whisper's ModelDimensions."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int


@dataclass
class WhisperCheckpoint:
    """Weights in openai-whisper's layout plus what decoding needs from the checkpoint."""

    dims: WhisperDims
    state_dict: StateDict  # openai-whisper names, float32
    source: Path
    alignment_heads: list[tuple[int, int]] = field(default_factory=list)  # (layer, head)

    def model_config(self) -> ModelConfig:
        dims, sd = self.dims, self.state_dict

        def block(d: int, heads: int, side: str) -> BlockConfig:
            # the MLP width is 4 * d in OpenAI's models, but read it off the weights anyway
            d_ff = sd[f"{side}.blocks.0.mlp.0.weight"].shape[0]
            return BlockConfig(d_model=d, n_heads=heads, d_ff=d_ff, norm_eps=1e-5)

        audio = AudioEncoderConfig(
            n_mels=dims.n_mels,
            n_ctx=dims.n_audio_ctx,
            n_layers=dims.n_audio_layer,
            block=block(dims.n_audio_state, dims.n_audio_head, "encoder"),
        )
        decoder = DecoderConfig(
            vocab_size=dims.n_vocab,
            n_ctx=dims.n_text_ctx,
            n_layers=dims.n_text_layer,
            block=block(dims.n_text_state, dims.n_text_head, "decoder"),
        )
        return ModelConfig(decoder=decoder, audio=audio)

    def hf_config(self) -> dict[str, int]:
        """The fields of a Hugging Face `WhisperConfig` for these weights (see openai_to_hf)."""
        d = self.dims
        return {
            "vocab_size": d.n_vocab,
            "num_mel_bins": d.n_mels,
            "d_model": d.n_audio_state,
            "encoder_layers": d.n_audio_layer,
            "encoder_attention_heads": d.n_audio_head,
            "encoder_ffn_dim": self.state_dict["encoder.blocks.0.mlp.0.weight"].shape[0],
            "decoder_layers": d.n_text_layer,
            "decoder_attention_heads": d.n_text_head,
            "decoder_ffn_dim": self.state_dict["decoder.blocks.0.mlp.0.weight"].shape[0],
            "max_source_positions": d.n_audio_ctx,
            "max_target_positions": d.n_text_ctx,
        }

    def build_model(self) -> EncoderDecoder:
        try:
            with skip_init():  # every weight is loaded next (strict)
                model = EncoderDecoder(self.model_config())
            model.load_state_dict(openai_to_mmseq(self.state_dict, self.dims))
        except KeyError as err:
            raise CheckpointError(f"{self.source}: Whisper weight {err} is missing") from None
        except (RuntimeError, ValueError) as err:  # shapes that contradict the dimensions
            raise CheckpointError(f"{self.source}: weights do not fit the model: {err}") from None
        return model.eval()


# ---------------------------------------------------------------------------------------------
# openai-whisper layout <-> mmseq


# mmseq name -> openai-whisper name, read both ways (openai_to_mmseq, mmseq_to_openai)
_TOP_NAMES = {
    "encoders.audio.conv1.weight": "encoder.conv1.weight",
    "encoders.audio.conv1.bias": "encoder.conv1.bias",
    "encoders.audio.conv2.weight": "encoder.conv2.weight",
    "encoders.audio.conv2.bias": "encoder.conv2.bias",
    "encoders.audio.positions.weight": "encoder.positional_embedding",
    "encoders.audio.stack.norm.weight": "encoder.ln_post.weight",
    "encoders.audio.stack.norm.bias": "encoder.ln_post.bias",
    "decoder.token_embedding.weight": "decoder.token_embedding.weight",
    "decoder.positions.weight": "decoder.positional_embedding",
    "decoder.norm.weight": "decoder.ln.weight",
    "decoder.norm.bias": "decoder.ln.bias",
}
# per block: modules with a weight and a bias each, named alike; then the fused projections
# (mmseq's one linear -> openai's linears, stacked by rows in this order)
_BLOCK_MODULES = {
    "attn.out": "attn.out",
    "attn_norm": "attn_ln",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.2",
    "mlp_norm": "mlp_ln",
}
_CROSS_MODULES = {
    "cross_attn.q": "cross_attn.query",
    "cross_attn.out": "cross_attn.out",
    "cross_attn_norm": "cross_attn_ln",
}
_BLOCK_FUSED = {"attn.qkv": ("attn", ("query", "key", "value"))}
_CROSS_FUSED = {"cross_attn.kv": ("cross_attn", ("key", "value"))}


def _blocks(dims: WhisperDims) -> list[tuple[str, str, bool]]:
    """(openai prefix, mmseq prefix, has cross-attention) of every block."""
    encoder = [
        (f"encoder.blocks.{i}", f"encoders.audio.stack.blocks.{i}", False)
        for i in range(dims.n_audio_layer)
    ]
    decoder = [
        (f"decoder.blocks.{i}", f"decoder.blocks.{i}", True) for i in range(dims.n_text_layer)
    ]
    return encoder + decoder


def _block_tables(cross: bool) -> tuple[dict[str, str], dict[str, tuple[str, tuple[str, ...]]]]:
    if cross:
        return _BLOCK_MODULES | _CROSS_MODULES, _BLOCK_FUSED | _CROSS_FUSED
    return _BLOCK_MODULES, _BLOCK_FUSED


def openai_to_mmseq(sd: StateDict, dims: WhisperDims) -> StateDict:
    """Rename/fuse an openai-whisper state dict into EncoderDecoder's names."""
    out: StateDict = {ours: sd[theirs] for ours, theirs in _TOP_NAMES.items()}
    for src, dst, cross in _blocks(dims):
        out |= _block(sd, src, dst, cross)
    return out


def _block(sd: StateDict, src: str, dst: str, cross: bool) -> StateDict:
    modules, fused = _block_tables(cross)
    out: StateDict = {}
    for ours, (module, parts) in fused.items():
        # Whisper's key projection has no bias; a zero bias is exactly equivalent
        zeros = torch.zeros_like(sd[f"{src}.{module}.value.bias"])
        out[f"{dst}.{ours}.weight"] = torch.cat([sd[f"{src}.{module}.{n}.weight"] for n in parts])
        out[f"{dst}.{ours}.bias"] = torch.cat(
            [sd.get(f"{src}.{module}.{n}.bias", zeros) for n in parts]
        )
    for ours, theirs in modules.items():
        for p in ("weight", "bias"):
            out[f"{dst}.{ours}.{p}"] = sd[f"{src}.{theirs}.{p}"]
    return out


def mmseq_to_openai(sd: StateDict, dims: WhisperDims) -> StateDict:
    """The inverse of `openai_to_mmseq`: EncoderDecoder's names split/renamed into an
    openai-whisper state dict. Tensors are copies (contiguous, sharing no storage), ready to
    save. The key projections' biases are dropped: a key bias adds the same q.b to every score
    of a query, which the softmax cancels, so Whisper's layers have none (`_split_fused`)."""
    out: StateDict = {theirs: sd[ours] for ours, theirs in _TOP_NAMES.items()}
    for src, dst, cross in _blocks(dims):
        modules, fused = _block_tables(cross)
        for ours, (module, parts) in fused.items():
            weight, bias = sd[f"{dst}.{ours}.weight"], sd[f"{dst}.{ours}.bias"]
            out |= _split_fused(weight, bias, f"{src}.{module}", parts)
        for ours, theirs in modules.items():
            for p in ("weight", "bias"):
                out[f"{src}.{theirs}.{p}"] = sd[f"{dst}.{ours}.{p}"]
    return {
        name: t.detach().float().clone(memory_format=torch.contiguous_format)
        for name, t in out.items()
    }


def _split_fused(weight: Tensor, bias: Tensor, dst: str, names: tuple[str, ...]) -> StateDict:
    """A fused projection (rows stacked in `names` order) -> one linear per name; the key's
    bias is dropped (zero in OpenAI's weights; cancelled by the softmax in any case)."""
    out: StateDict = {}
    for name, w, b in zip(names, weight.chunk(len(names)), bias.chunk(len(names)), strict=True):
        out[f"{dst}.{name}.weight"] = w
        if name != "key":
            out[f"{dst}.{name}.bias"] = b
    return out


# ---------------------------------------------------------------------------------------------
# The three file formats -> openai-whisper layout


def load_openai_pt(path: Path) -> WhisperCheckpoint:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not this format"
        if not zipfile.is_zipfile(path):
            reason = "this file is not a torch archive"
        elif "weights_only" in str(err):
            reason = "it holds Python objects other than tensors, which are never unpickled"
        else:
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise CheckpointError(
            f"{path}: not an openai-whisper .pt checkpoint (a torch archive of plain tensors "
            f"with 'dims' and 'model_state_dict' was expected; {reason})"
        ) from None
    if not isinstance(ckpt, dict) or not {"dims", "model_state_dict"} <= set(ckpt):
        raise CheckpointError(
            f"{path}: expected an openai-whisper checkpoint with 'dims' and 'model_state_dict'"
        )
    try:
        dims = WhisperDims(**ckpt["dims"])
    except TypeError:
        fields = ", ".join(WhisperDims.__dataclass_fields__)
        raise CheckpointError(f"{path}: 'dims' must be a mapping with exactly {fields}") from None
    sd = {k: v.float() for k, v in ckpt["model_state_dict"].items()}
    heads = ckpt.get("alignment_heads")
    if isinstance(heads, Tensor):  # openai's (layers, heads) bool mask
        heads = heads.nonzero().tolist()
    return WhisperCheckpoint(dims, sd, path, _alignment_heads(heads or [], path, dims))


_HF_BLOCK_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
_HF_TOP_NAMES = {
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "encoder.layer_norm.weight": "encoder.ln_post.weight",
    "encoder.layer_norm.bias": "encoder.ln_post.bias",
    "decoder.layer_norm.weight": "decoder.ln.weight",
    "decoder.layer_norm.bias": "decoder.ln.bias",
}
_HF_LAYER = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")


def hf_to_openai(sd: StateDict) -> StateDict:
    """Rename a Hugging Face WhisperForConditionalGeneration state dict to openai's layout."""
    out: StateDict = {}
    for name, tensor in sd.items():
        name = name.removeprefix("model.")
        if name == "proj_out.weight":  # tied to the token embedding
            continue
        if m := _HF_LAYER.fullmatch(name):
            side, i, module, param = m.groups()
            if module not in _HF_BLOCK_NAMES:
                raise CheckpointError(f"unexpected Hugging Face Whisper tensor {name!r}")
            out[f"{side}.blocks.{i}.{_HF_BLOCK_NAMES[module]}.{param}"] = tensor
        else:
            out[_HF_TOP_NAMES.get(name, name)] = tensor
    return out


def openai_to_hf(sd: StateDict) -> StateDict:
    """The inverse of `hf_to_openai` (the tied `proj_out.weight` included), e.g. to build a
    Hugging Face peer with the same weights."""
    block_names = {v: k for k, v in _HF_BLOCK_NAMES.items()}
    top_names = {v: k for k, v in _HF_TOP_NAMES.items()}
    layer = re.compile(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)")
    out: StateDict = {}
    for name, tensor in sd.items():
        if m := layer.fullmatch(name):
            side, i, module, param = m.groups()
            out[f"model.{side}.layers.{i}.{block_names[module]}.{param}"] = tensor
        else:
            out[f"model.{top_names.get(name, name)}"] = tensor
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def load_hf_dir(path: Path) -> WhisperCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = _read_json(path / "config.json")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{path}: Hugging Face Whisper directory lacks model.safetensors")
    try:
        dims = WhisperDims(
            n_mels=config["num_mel_bins"],
            n_audio_ctx=config["max_source_positions"],
            n_audio_state=config["d_model"],
            n_audio_head=config["encoder_attention_heads"],
            n_audio_layer=config["encoder_layers"],
            n_vocab=config["vocab_size"],
            n_text_ctx=config["max_target_positions"],
            n_text_state=config["d_model"],
            n_text_head=config["decoder_attention_heads"],
            n_text_layer=config["decoder_layers"],
        )
    except KeyError as err:
        raise CheckpointError(f"{path / 'config.json'}: missing Whisper field {err}") from None
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from None
    try:
        sd = {k: v.float() for k, v in hf_to_openai(tensors).items()}
    except CheckpointError as err:  # hf_to_openai's message does not know the file
        raise CheckpointError(f"{weights}: {err}") from None
    generation = path / "generation_config.json"
    heads = _read_json(generation).get("alignment_heads", []) if generation.is_file() else []
    return WhisperCheckpoint(dims, sd, path, _alignment_heads(heads, generation, dims))


def ct2_to_openai(v: StateDict) -> tuple[StateDict, WhisperDims]:
    """Rename/split CTranslate2 Whisper variables (float32) to openai's layout."""
    d = v["encoder/conv1/weight"].shape[0]
    n_enc = _count_layers(v, "encoder")
    n_dec = _count_layers(v, "decoder")
    dims = WhisperDims(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=d,
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=n_enc,
        n_vocab=v["decoder/embeddings/weight"].shape[0],
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=v["decoder/embeddings/weight"].shape[1],
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=n_dec,
    )
    sd: StateDict = {
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
    }
    for i in (1, 2):
        for p in ("weight", "bias"):
            sd[f"encoder.conv{i}.{p}"] = v[f"encoder/conv{i}/{p}"]
    sd |= _ct2_norm(v, "encoder/layer_norm", "encoder.ln_post")
    sd |= _ct2_norm(v, "decoder/layer_norm", "decoder.ln")
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            sd |= _ct2_split(
                v, f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value")
            )
            sd |= _ct2_linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
            sd |= _ct2_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            sd |= _ct2_linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
            sd |= _ct2_linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
            sd |= _ct2_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
            if side == "decoder":
                sd |= _ct2_linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
                sd |= _ct2_split(
                    v, f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value")
                )
                sd |= _ct2_linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
                sd |= _ct2_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
    return sd, dims


def _count_layers(v: StateDict, side: str) -> int:
    layer = re.compile(rf"{side}/layer_(\d+)/")
    return len({m.group(1) for name in v if (m := layer.match(name))})


def _ct2_linear(v: StateDict, src: str, dst: str) -> StateDict:
    return {f"{dst}.weight": v[f"{src}/weight"], f"{dst}.bias": v[f"{src}/bias"]}


def _ct2_norm(v: StateDict, src: str, dst: str) -> StateDict:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _ct2_split(v: StateDict, src: str, dst: str, names: tuple[str, ...]) -> StateDict:
    return _split_fused(v[f"{src}/weight"], v[f"{src}/bias"], dst, names)


def load_ct2_dir(path: Path) -> WhisperCheckpoint:
    variables = dequantize_ct2(read_ct2_model(path / "model.bin"))
    try:
        sd, dims = ct2_to_openai(variables)
    except KeyError as err:
        raise CheckpointError(
            f"{path / 'model.bin'}: not a CTranslate2 Whisper model (missing variable {err})"
        ) from None
    config = path / "config.json"
    heads = _read_json(config).get("alignment_heads", []) if config.is_file() else []
    heads = _alignment_heads(heads, config, dims)
    return WhisperCheckpoint(dims, {k: t.float() for k, t in sd.items()}, path, heads)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8; nested too deep
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _alignment_heads(value: object, source: Path, dims: WhisperDims) -> list[tuple[int, int]]:
    """`alignment_heads` as read -> (layer, head) pairs of the decoder; CheckpointError naming
    `source` otherwise."""
    layers, heads = range(dims.n_text_layer), range(dims.n_text_head)
    if isinstance(value, (list, tuple)) and all(
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
        and pair[0] in layers
        and pair[1] in heads
        for pair in value
    ):
        return [(pair[0], pair[1]) for pair in value]
    raise CheckpointError(
        f"{source}: alignment_heads: expected [layer, head] pairs of integers, layer below "
        f"{dims.n_text_layer} and head below {dims.n_text_head}"
    )


def load_whisper_checkpoint(path: str | os.PathLike) -> WhisperCheckpoint:
    """Detect the format of `path` and import it (see the module docstring for the formats)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory; {_LAYOUTS}")
    if path.is_file():
        return load_openai_pt(path)
    if (path / "model.bin").is_file():
        return load_ct2_dir(path)
    if (path / "model.safetensors").is_file() or (path / "config.json").is_file():
        return load_hf_dir(path)
    raise CheckpointError(f"{path}: unknown checkpoint layout; {_LAYOUTS}")


_LAYOUTS = (
    "expected an openai-whisper .pt file, a CTranslate2 directory (model.bin + config.json) "
    "or a Hugging Face directory (config.json + model.safetensors)"
)


def save_openai_pt(checkpoint: WhisperCheckpoint, path: str | os.PathLike) -> None:
    """Write `checkpoint` as an openai-whisper .pt (for use by openai-whisper itself)."""
    with atomic_open(path, "wb") as f:
        torch.save({"dims": vars(checkpoint.dims), "model_state_dict": checkpoint.state_dict}, f)

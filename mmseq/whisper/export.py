"""`mmseq export --format openai|hf` for a Whisper fine-tuned with `mmseq fit`: the weights
written back in the layouts Whisper is deployed in.

- openai: one `.pt` that `whisper.load_model(path)` loads: `{"dims", "model_state_dict"}`, only
  tensors and plain dicts, so `torch.load(weights_only=True)` reads it too. openai's files carry
  no tokenizer, so Whisper's `tokenizer.json` goes beside it as `NAME.tokenizer.json`, where
  mmseq looks for it. No alignment heads are stored: openai-whisper then uses every head of the
  upper half of the decoder layers, as mmseq does for a fine-tuned model.
- hf: a folder that transformers' `WhisperForConditionalGeneration` and `WhisperProcessor` load:
  config.json, generation_config.json, model.safetensors, tokenizer.json,
  tokenizer_config.json, preprocessor_config.json.

A checkpoint qualifies when it is a speech model with Whisper's tokenizer and Whisper's
architecture (`whisper_mismatch`); anything else is refused with what the checkpoint is.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mmseq.checkpoint import TrainedModel
from mmseq.data.tokenizer import WhisperTextTokenizer
from mmseq.encoders.audio_features import (
    CHUNK_LENGTH,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
)
from mmseq.errors import CheckpointError
from mmseq.serialization import atomic_path, staged_folder, write_text_atomic
from mmseq.whisper.checkpoints import WhisperCheckpoint, WhisperDims, mmseq_to_openai, openai_to_hf
from mmseq.whisper.loading import Whisper
from mmseq.whisper.tokenizer import WhisperTokenizer

log = logging.getLogger(__name__)

# what differs from Whisper's layers when set otherwise (dropout rates do not matter)
_WHISPER_BLOCK = {
    "activation": "gelu",
    "gated_mlp": False,
    "bias": True,
    "norm": "layernorm",
    "norm_eps": 1e-5,
    "pre_norm": True,
    "attention_scale": None,
}
_WHISPER_DECODER = {
    "positions": "learned",
    "position_offset": 0,
    "scale_embeddings": False,
    "embedding_norm": False,
    "tie_embeddings": True,
    "rescale_output": False,
    "final_logits_bias": False,
}


def describe(trained: TrainedModel) -> str:
    """What a trained model is, in a few words (for errors)."""
    modalities = trained.modalities
    if len(modalities) > 1:
        return f"a multi-task model ({', '.join(modalities)})"
    if modalities == ["image"]:
        return "an image captioning model"
    if modalities == ["text"]:
        return "a text-to-text model"
    if not isinstance(trained.tokenizer, WhisperTextTokenizer):
        return "a speech model trained from scratch with its own tokenizer"
    return "a speech model with Whisper's tokenizer"


def whisper_mismatch(trained: TrainedModel) -> str | None:
    """Why `trained` cannot be written as a Whisper checkpoint; None when it can."""
    config = trained.model.config
    if config.modalities != ["audio"] or not isinstance(trained.tokenizer, WhisperTextTokenizer):
        return f"{describe(trained)}, not a Whisper model"
    audio, decoder = config.audio, config.decoder
    problems = []
    if audio.n_ctx != N_FRAMES // 2:
        problems.append(f"audio.n_ctx is {audio.n_ctx}, not {N_FRAMES // 2} (30 s windows)")
    if audio.positions == "none":
        problems.append("the audio encoder has no positions")
    if audio.block.d_model != decoder.block.d_model:
        problems.append("the encoder and decoder widths differ")
    for side, block in (("audio", audio.block), ("decoder", decoder.block)):
        problems += _differences(f"{side}.block", block, _WHISPER_BLOCK)
        if block.head_dim not in (None, block.d_model // block.n_heads):
            problems.append(f"{side}.block.head_dim is {block.head_dim}")
    problems += _differences("decoder", decoder, _WHISPER_DECODER)
    if not decoder.has_final_norm:
        problems.append("the decoder has no final norm")
    if decoder.vocab_size != trained.tokenizer.vocab_size:
        problems.append(
            f"decoder.vocab_size is {decoder.vocab_size}, Whisper's tokenizer has "
            f"{trained.tokenizer.vocab_size} ids"
        )
    if problems:
        what = "a speech model with Whisper's tokenizer but not its architecture"
        return f"{what} ({'; '.join(problems)})"
    return None


def _differences(prefix: str, config: object, expected: dict[str, object]) -> list[str]:
    return [
        f"{prefix}.{name} is {getattr(config, name)!r}, Whisper's is {value!r}"
        for name, value in expected.items()
        if getattr(config, name) != value
    ]


def whisper_checkpoint(trained: TrainedModel, format_name: str) -> WhisperCheckpoint:
    """`trained`'s weights in openai-whisper's layout; CheckpointError naming the checkpoint
    and what it is when it is no Whisper."""
    if reason := whisper_mismatch(trained):
        raise CheckpointError(
            f"{trained.source}: {reason}; --format {format_name} writes fine-tuned Whisper "
            "models only (--format mmseq writes any model)"
        )
    if not trained.model.config.audio.pad_to_30s:
        log.warning(
            "mmseq: warning: %s was fine-tuned on clips not padded to 30 s "
            "(audio.pad_to_30s: false); openai-whisper and transformers always encode 30 s "
            "windows, so their outputs may differ from mmseq's on this model",
            trained.source,
        )
    audio, decoder = trained.model.config.audio, trained.model.config.decoder
    dims = WhisperDims(
        n_mels=audio.n_mels,
        n_audio_ctx=audio.n_ctx,
        n_audio_state=audio.block.d_model,
        n_audio_head=audio.block.n_heads,
        n_audio_layer=audio.n_layers,
        n_vocab=decoder.vocab_size,
        n_text_ctx=decoder.n_ctx,
        n_text_state=decoder.block.d_model,
        n_text_head=decoder.block.n_heads,
        n_text_layer=decoder.n_layers,
    )
    state = mmseq_to_openai(trained.model.state_dict(), dims)
    return WhisperCheckpoint(dims, state, Path(trained.source))


def export_openai(trained: TrainedModel, out: str | os.PathLike) -> Path:
    """Write `trained` as an openai-whisper `.pt`: `out`, or `out/model.pt` when `out` is a
    folder (one that exists, or a name ending in a slash); Whisper's tokenizer.json goes beside
    it as `NAME.tokenizer.json`. Neither file may exist already. Returns the `.pt`'s path."""
    from mmseq.whisper.checkpoints import save_openai_pt

    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        path = path / "model.pt"
    tokenizer = path.with_name(f"{path.stem}.tokenizer.json")
    for target in (path, tokenizer):
        if target.exists():
            raise CheckpointError(f"{target}: exists; choose a new name")
    checkpoint = whisper_checkpoint(trained, "openai")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(tokenizer, trained.tokenizer.to_json())
    try:
        save_openai_pt(checkpoint, path)  # last: the .pt vouches for its tokenizer
    except BaseException:
        tokenizer.unlink(missing_ok=True)
        raise
    return path


def export_hf_whisper(trained: TrainedModel, folder: str | os.PathLike) -> Path:
    """Write `trained` as a Hugging Face Whisper folder (see the module docstring), built
    beside `folder` and renamed into place; `folder` must not exist, or be empty."""
    from safetensors.torch import save_file

    checkpoint = whisper_checkpoint(trained, "hf")  # refused before anything is written
    tokenizer = trained.tokenizer.whisper
    # every head of the upper half of the decoder layers: openai-whisper's default, and mmseq's
    # for a fine-tuned model (mmseq.inference.whisper_from_trained)
    d = checkpoint.dims
    layers = range(d.n_text_layer // 2, d.n_text_layer)
    heads = [[layer, head] for layer in layers for head in range(d.n_text_head)]
    whisper = Whisper(trained.model, tokenizer, [tuple(h) for h in heads], trained.source)
    suppress = list(whisper.suppress_tokens())  # mmseq's and openai-whisper's default ("-1")
    generation = hf_generation_config(checkpoint, tokenizer, heads, suppress)
    if tokenizer.is_multilingual:  # the task trained for, by default (else no task token)
        task = trained.tasks.get("audio")
        generation["task"] = task if task in ("transcribe", "translate") else "transcribe"
    tensors = openai_to_hf(checkpoint.state_dict)
    del tensors["proj_out.weight"]  # tied to the token embedding (tie_word_embeddings)
    files = {
        "config.json": hf_whisper_config(checkpoint, tokenizer),
        "generation_config.json": generation,
        "preprocessor_config.json": _feature_extractor(checkpoint),
        "tokenizer_config.json": _tokenizer_config(),
    }
    with staged_folder(folder) as staging:
        for name, data in files.items():
            write_text_atomic(staging / name, json.dumps(data, indent=2) + "\n")
        write_text_atomic(staging / "tokenizer.json", trained.tokenizer.to_json())
        with atomic_path(staging / "model.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    return Path(folder)


def hf_whisper_config(checkpoint: WhisperCheckpoint, tokenizer: WhisperTokenizer) -> dict:
    """config.json of `WhisperForConditionalGeneration` for these weights; the special ids as
    in OpenAI's models on the Hugging Face Hub (bos = decoder start = <|startoftranscript|>)."""
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        **checkpoint.hf_config(),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "pad_token_id": tokenizer.eot,
        "bos_token_id": tokenizer.sot,
        "eos_token_id": tokenizer.eot,
        "decoder_start_token_id": tokenizer.sot,
        "begin_suppress_tokens": [tokenizer.encode(" ")[0], tokenizer.eot],
        "use_cache": True,
        "torch_dtype": "float32",
    }


def hf_generation_config(
    checkpoint: WhisperCheckpoint,
    tokenizer: WhisperTokenizer,
    alignment_heads: list[list[int]],
    suppress_tokens: list[int],
) -> dict:
    """generation_config.json: what transformers' Whisper `generate` reads."""
    config = {
        "alignment_heads": alignment_heads,
        "begin_suppress_tokens": [tokenizer.encode(" ")[0], tokenizer.eot],
        "bos_token_id": tokenizer.sot,
        "decoder_start_token_id": tokenizer.sot,
        "eos_token_id": tokenizer.eot,
        "pad_token_id": tokenizer.eot,
        "is_multilingual": tokenizer.is_multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": checkpoint.dims.n_text_ctx,
        "no_timestamps_token_id": tokenizer.no_timestamps,
        "prev_sot_token_id": tokenizer.sot_prev,
        "return_timestamps": False,
        "suppress_tokens": suppress_tokens,
    }
    if tokenizer.is_multilingual:
        codes = tokenizer.language_codes
        config["lang_to_id"] = {
            f"<|{c}|>": i for c, i in zip(codes, tokenizer.language_tokens, strict=True)
        }
        config["task_to_id"] = {
            "transcribe": tokenizer.transcribe,
            "translate": tokenizer.translate,
        }
    return config


def _feature_extractor(checkpoint: WhisperCheckpoint) -> dict:
    return {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "processor_class": "WhisperProcessor",
        "feature_size": checkpoint.dims.n_mels,
        "sampling_rate": SAMPLE_RATE,
        "hop_length": HOP_LENGTH,
        "n_fft": N_FFT,
        "chunk_length": CHUNK_LENGTH,
        "n_samples": N_SAMPLES,
        "nb_max_frames": N_FRAMES,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }


def _tokenizer_config() -> dict:
    special = "<|endoftext|>"
    return {
        "tokenizer_class": "WhisperTokenizer",
        "processor_class": "WhisperProcessor",
        "bos_token": special,
        "eos_token": special,
        "unk_token": special,
        "pad_token": special,
        "add_prefix_space": False,
        "model_max_length": 1024,
    }

"""Load a Whisper model by name or path: weights, tokenizer and decoding defaults together."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig
from mmseq.model import EncoderDecoder
from mmseq.precision import apply_compute_type
from mmseq.whisper.checkpoints import WhisperCheckpoint, load_whisper_checkpoint
from mmseq.whisper.embedded import DEFAULT_MODEL, EMBEDDED, embedded_model_dir
from mmseq.whisper.tokenizer import WhisperTokenizer

ENGLISH_VOCAB_SIZE = 51864  # every English-only Whisper shares this vocabulary


@dataclass
class Whisper:
    """An EncoderDecoder with Whisper's tokenizer and decoding conventions."""

    model: EncoderDecoder
    tokenizer: WhisperTokenizer
    alignment_heads: list[tuple[int, int]]
    source: Path

    @property
    def device(self) -> torch.device:
        return self.model.decoder.token_embedding.weight.device

    def suppress_tokens(self) -> tuple[int, ...]:
        """openai-whisper's default `suppress_tokens="-1"`: non-speech symbols and the control
        tokens that must never be generated inside a transcript."""
        t = self.tokenizer
        control = [t.transcribe, t.translate, t.sot, t.sot_prev, t.sot_lm, t.no_speech]
        return tuple(sorted(set(t.non_speech_tokens()) | set(control)))

    def generation_config(self, **overrides: object) -> GenerationConfig:
        """Decoding defaults as openai-whisper's: at most n_text_ctx // 2 new tokens, no blank
        or end-of-text as the first token."""
        t = self.tokenizer
        options: dict[str, object] = {
            "max_new_tokens": self.model.config.decoder.n_ctx // 2,
            "eos_token_id": t.eot,
            "pad_token_id": t.eot,
            "suppress_tokens": self.suppress_tokens(),
            "begin_suppress_tokens": (t.encode(" ")[0], t.eot),
        }
        return GenerationConfig(**(options | overrides))


def _find_tokenizer(checkpoint: WhisperCheckpoint) -> WhisperTokenizer:
    source = checkpoint.source
    folder = source if source.is_dir() else source.parent
    candidates = [folder / "tokenizer.json", folder / f"{source.stem}.tokenizer.json"]
    for path in candidates:
        if path.is_file():
            return WhisperTokenizer.from_file(path)
    if checkpoint.dims.n_vocab == ENGLISH_VOCAB_SIZE:
        try:
            return WhisperTokenizer.from_file(embedded_model_dir(DEFAULT_MODEL) / "tokenizer.json")
        except CheckpointError:
            pass
    raise CheckpointError(
        f"{source}: no tokenizer found; expected {candidates[0]} (an openai .pt file carries "
        "none: put Whisper's tokenizer.json beside it)"
    )


def load_whisper(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    compute_type: str = "float32",
) -> Whisper:
    """Load an embedded model by name (`tiny.en`, `base`: see mmseq.whisper.embedded) or a
    checkpoint path in any of the three Whisper formats; compute_type: float32, bfloat16,
    float16 or int8 (see mmseq.precision)."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in EMBEDDED:
        path = embedded_model_dir(str(name_or_path))
    elif not path.exists() and len(path.parts) == 1:  # a bare name: a model name?
        raise CheckpointError(
            f"model {str(name_or_path)!r}: no such file or directory, and the models embedded "
            f"are {', '.join(map(repr, EMBEDDED))}; for another size pass its checkpoint's path "
            "(nothing is downloaded)"
        )
    checkpoint = load_whisper_checkpoint(path)
    tokenizer = _find_tokenizer(checkpoint)
    if tokenizer.vocab_size != checkpoint.dims.n_vocab:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has "
            f"{checkpoint.dims.n_vocab}"
        )
    model = apply_compute_type(checkpoint.build_model().to(device), compute_type)
    heads = checkpoint.alignment_heads
    if not heads:  # as openai-whisper: every head of the upper half of the decoder layers
        dims = checkpoint.dims
        layers = range(dims.n_text_layer // 2, dims.n_text_layer)
        heads = [(layer, head) for layer in layers for head in range(dims.n_text_head)]
    return Whisper(model, tokenizer, heads, path)

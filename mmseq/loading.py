"""`mmseq.load`: from a model's path or name to the object that runs it.

One dispatch for every front end (the CLI's commands, `mmseq serve`, Python):
- a Whisper name or checkpoint (`tiny.en`, an openai-whisper `.pt`, a Hugging Face or
  CTranslate2 folder) -> `Transcriber`;
- a Hugging Face T5 / BART / Marian / Pegasus folder -> `TextGenerator`;
- a Hugging Face VisionEncoderDecoder folder -> `Captioner`;
- a `.ckpt` written by `mmseq fit`, or the folder `mmseq export` makes of it, by what it was
  trained on: speech with Whisper's tokenizer and 30 s windows -> `Transcriber`, speech from
  scratch -> `ChunkTranscriber`, images -> `Captioner`, text -> `TextGenerator`.
Options a model cannot follow are refused, not dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmseq.errors import CheckpointError

if TYPE_CHECKING:  # torch loads with the model, not with mmseq.loading
    pass


def load(
    model: str | os.PathLike,
    *,
    device: str = "auto",
    compute_type: str = "float32",
    compile: bool = False,
) -> Any:
    """The Transcriber, ChunkTranscriber, Captioner or TextGenerator for `model` (see above);
    device "auto" is CUDA when present, else the CPU (see `check_device`)."""
    from mmseq.checkpoint import is_trained
    from mmseq.precision import check_device

    device = str(check_device(device, compute_type))
    path = Path(model)
    if is_trained(path):
        return _load_trained(path, device, compute_type, compile)
    model_type = _hf_model_type(path) if path.is_dir() else None
    if model_type is not None:
        if model_type == "vision-encoder-decoder":
            _refuse(path, "a captioner", compute_type, compile)
            from mmseq.inference import Captioner

            return Captioner(path, device=device)
        if model_type != "whisper":
            from mmseq.text.generator import TextGenerator

            return TextGenerator(path, device=device, compute_type=compute_type, compile=compile)
    from mmseq.transcription import Transcriber

    return Transcriber(model, device=device, compute_type=compute_type, compile=compile)


def load_as(expected: type, model: str | os.PathLike, role: str, **options: Any) -> Any:
    """`load(model, **options)`, which must give an `expected` (for `role`, named in the
    error otherwise: a captioner passed where a speech model is needed, say)."""
    loaded = load(model, **options)
    if not isinstance(loaded, expected):
        raise ValueError(
            f"{role} {model}: this model loads as a {type(loaded).__name__}; {role} needs a "
            f"model that loads as a {expected.__name__}"
        )
    return loaded


def _load_trained(path: Path, device: str, compute_type: str, compile: bool) -> Any:
    from mmseq.checkpoint import load_trained

    trained = load_trained(path, device)
    modalities = trained.modalities
    if len(modalities) != 1:
        raise CheckpointError(
            f"{path}: a multi-task model ({', '.join(modalities)}): pick one task with "
            "mmseq.checkpoint.load_trained and the Captioner / TextGenerator of its part"
        )
    if modalities == ["audio"]:
        from mmseq.inference import ChunkTranscriber, whisper_from_trained
        from mmseq.transcription import Transcriber

        whisper = whisper_from_trained(trained)
        if whisper is not None:
            return Transcriber(whisper, device=device, compute_type=compute_type, compile=compile)
        _refuse(path, "a speech model trained from scratch", compute_type, compile)
        return ChunkTranscriber(trained)
    if modalities == ["image"]:
        from mmseq.inference import Captioner

        _refuse(path, "a captioner", compute_type, compile)
        return Captioner(trained, device=device)
    from mmseq.text.generator import TextGenerator

    return TextGenerator(trained, device=device, compute_type=compute_type, compile=compile)


def _refuse(path: Path, what: str, compute_type: str, compile: bool) -> None:
    unfollowed = [
        name
        for name, used in (("compute_type", compute_type != "float32"), ("compile", compile))
        if used
    ]
    if unfollowed:
        raise ValueError(
            f"{path} is {what}: it runs in float32 without compile; it cannot follow "
            f"{' or '.join(unfollowed)}"
        )


def _hf_model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None

"""Self-contained checkpoints: a `.ckpt` written by `mmseq fit` carries the model config, the
tokenizer and the weights, so inference (`mmseq caption`, `mmseq transcribe`) needs nothing else.

Lightning's checkpoint is a dict; the module adds an `mmseq` entry of plain values (strings,
numbers, lists, dicts) next to `state_dict`, and keeps every other entry plain too, so loading
uses `torch.load(weights_only=True)`: a checkpoint can never run code when it is opened.

`save_folder` writes the same model as an mmseq folder that needs neither Lightning nor torch's
pickle format: `config.json` (the entry's plain values, marked by `mmseq_format`),
`tokenizer.json` and `model.safetensors`. `load_trained` and every command read both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmseq.data.hf_tokenizer import HFTextTokenizer
from mmseq.data.tokenizer import PretrainedTextTokenizer, TextTokenizer, WhisperTextTokenizer
from mmseq.errors import CheckpointError
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.serialization import (
    atomic_open,
    load_plain,
    read_json,
    staged_folder,
    usual_permissions,
    write_text_atomic,
)

FORMAT_VERSION = 1
MODEL_PREFIX = "model."  # the LightningModule holds the EncoderDecoder as `.model`
FOLDER_FILES = ("config.json", "tokenizer.json", "model.safetensors")


@dataclass
class TrainedModel:
    """What inference needs: the network, its tokenizer and the task it was trained for."""

    model: EncoderDecoder
    tokenizer: TextTokenizer
    tasks: dict[str, str | None]  # modality -> task token used in training (None: no token)
    source: Path
    # for a model fine-tuned from a Hugging Face folder: its config.json (naming the
    # model_type) and generation_config.json, which `export_hf` writes back (None otherwise)
    hf: dict[str, Any] | None = None

    @property
    def modalities(self) -> list[str]:
        return self.model.config.modalities


def checkpoint_entry(
    config: ModelConfig,
    tokenizer: TextTokenizer,
    tasks: dict[str, str | None],
    hf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `mmseq` entry the LightningModule writes into each checkpoint (`hf`: see
    `TrainedModel.hf`)."""
    entry = {
        "format": FORMAT_VERSION,
        "model_config": config.to_dict(),
        "tokenizer": tokenizer.to_json(),
        "tokenizer_kind": _tokenizer_kind(tokenizer),
        "tasks": dict(tasks),
    }
    if hf is not None:
        entry["hf"] = hf
    return entry


def hf_origin(imported: Any) -> dict[str, Any]:
    """What a checkpoint keeps of the Hugging Face folder (`mmseq.text.hf.HFModel`) a model
    was fine-tuned from, to write it back as one (see `TrainedModel.hf`)."""
    return {
        "config": imported.config,
        "generation": imported.generation,
    }


def _tokenizer_kind(tokenizer: TextTokenizer) -> str:
    if isinstance(tokenizer, WhisperTextTokenizer):
        return "whisper"
    if isinstance(tokenizer, HFTextTokenizer):
        return "huggingface"
    return "bpe"  # any tokenizers JSON (BPE or unigram): the name is kept for old checkpoints


def tokenizer_from_entry(entry: dict[str, Any]) -> TextTokenizer:
    kind = entry.get("tokenizer_kind")
    if kind == "whisper":
        from tokenizers import Tokenizer

        from mmseq.whisper.tokenizer import WhisperTokenizer

        return WhisperTextTokenizer(WhisperTokenizer(Tokenizer.from_str(entry["tokenizer"])))
    if kind == "huggingface":
        return HFTextTokenizer.from_json(entry["tokenizer"])
    return TextTokenizer.from_json(entry["tokenizer"])


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """torch.load with weights_only=True and errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    return load_plain(path, "checkpoint")


def write_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """`torch.save(checkpoint, path)` through `atomic_open`: a temporary file beside `path`,
    fsync'ed and renamed into place, so that `path` (e.g. `last.ckpt`, which `--ckpt_path last`
    resumes from) is never half written, even by a process killed mid-save. Lightning's own
    save writes to the system's temporary folder and moves the file into place without fsync:
    a copy, which a crash can cut short, where that folder is on another filesystem."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save(checkpoint, f)


def is_mmseq_folder(path: str | os.PathLike) -> bool:
    """A folder written by `save_folder` (its config.json carries `mmseq_format`)."""
    config = Path(path) / "config.json"
    try:
        return "mmseq_format" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def is_trained(path: str | os.PathLike) -> bool:
    """A model trained with `mmseq fit`: a `.ckpt`, or a folder written by `save_folder`."""
    return str(path).endswith(".ckpt") or is_mmseq_folder(path)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Model + tokenizer from a `.ckpt` written by `mmseq fit`, an mmseq folder (`save_folder`),
    or a Hugging Face `VisionEncoderDecoderModel` folder (ViT + GPT-2, with its tokenizer
    files)."""
    path = Path(path)
    if is_mmseq_folder(path):
        return _load_folder(path, device)
    if path.is_dir():
        return _load_hf_captioner(path, device)
    ckpt = read_checkpoint(path)
    entry = ckpt.get("mmseq") if isinstance(ckpt, dict) else None
    if not isinstance(entry, dict) or "model_config" not in entry:
        raise CheckpointError(
            f"{path}: not an mmseq training checkpoint (no 'mmseq' entry with the model config)"
        )
    if entry.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {entry.get('format')!r}; this mmseq reads {FORMAT_VERSION}"
        )
    try:
        model = EncoderDecoder(ModelConfig.from_dict(entry["model_config"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad model_config: {err}") from None
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a 'state_dict' mapping names to tensors")
    weights = {
        k.removeprefix(MODEL_PREFIX): v
        for k, v in state.items()
        if isinstance(k, str) and k.startswith(MODEL_PREFIX)
    }
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: weights do not fit the model config: {err}") from None
    return _trained(model, entry, path, device)


def _trained(
    model: EncoderDecoder, entry: dict[str, Any], path: Path, device: str | torch.device
) -> TrainedModel:
    try:
        tokenizer = tokenizer_from_entry(entry)
        tasks = dict(entry.get("tasks", {}))
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception
        raise CheckpointError(f"{path}: unreadable tokenizer or tasks ({err})") from None
    return TrainedModel(model.to(device).eval(), tokenizer, tasks, path, entry.get("hf"))


def save_folder(trained: TrainedModel, out: str | os.PathLike) -> Path:
    """Write `trained` as an mmseq folder (config.json, tokenizer.json, model.safetensors):
    built in a temporary folder beside `out` and renamed into place, so `out` is complete or
    absent. `out` must not exist, or be an empty folder."""
    from safetensors.torch import save_model

    entry = checkpoint_entry(trained.model.config, trained.tokenizer, trained.tasks, trained.hf)
    config = {"mmseq_format": entry.pop("format")} | entry
    tokenizer = config.pop("tokenizer")
    with staged_folder(out) as staging:
        write_text_atomic(staging / "config.json", json.dumps(config, indent=2) + "\n")
        write_text_atomic(staging / "tokenizer.json", tokenizer)
        save_model(trained.model, str(staging / "model.safetensors"))  # tied weights: once
        with open(staging / "model.safetensors", "rb") as weights:
            os.fsync(weights.fileno())
        usual_permissions(staging / "model.safetensors")
    return Path(out)


def _load_folder(folder: Path, device: str | torch.device) -> TrainedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    config = read_json(folder / "config.json")
    if config.get("mmseq_format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / 'config.json'}: mmseq_format {config.get('mmseq_format')!r}; this mmseq "
            f"reads {FORMAT_VERSION}"
        )
    for name in FOLDER_FILES:
        if not (folder / name).is_file():
            raise CheckpointError(
                f"{folder}: {name} is missing (an mmseq folder holds {', '.join(FOLDER_FILES)})"
            )
    try:
        model = EncoderDecoder(ModelConfig.from_dict(config["model_config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{folder / 'config.json'}: bad model_config: {err}") from None
    try:
        load_model(model, str(folder / "model.safetensors"), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(
            f"{folder / 'model.safetensors'}: weights do not fit the model config: {err}"
        ) from None
    try:
        entry = config | {"tokenizer": (folder / "tokenizer.json").read_text(encoding="utf-8")}
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{folder / 'tokenizer.json'}: not UTF-8 text ({err})") from None
    return _trained(model, entry, folder, device)


def _load_hf_captioner(folder: Path, device: str | torch.device) -> TrainedModel:
    from mmseq.vision import load_hf_captioner

    imported = load_hf_captioner(folder)
    bos = imported.decoder_start_token_id
    if bos is None or imported.eos_token_id is None:
        raise CheckpointError(
            f"{folder / 'config.json'}: needs decoder_start_token_id (or the decoder's "
            "bos_token_id) and eos_token_id to caption"
        )
    eos = imported.eos_token_id
    pad = eos if imported.pad_token_id is None else imported.pad_token_id  # GPT-2 pads with eos
    try:
        tokenizer = PretrainedTextTokenizer.from_folder(folder, bos, eos, pad)
    except (OSError, ValueError) as err:
        raise CheckpointError(str(err)) from None
    return TrainedModel(imported.model.to(device).eval(), tokenizer, {"image": None}, folder)

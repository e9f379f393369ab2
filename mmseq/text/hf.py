"""Hugging Face text seq2seq folders <-> mmseq's EncoderDecoder: files, name maps, checks.

A family module (`t5`, `bart`, `marian`, `pegasus`) says how its `config.json` maps onto a
`ModelConfig` and which Hugging Face tensors make each mmseq tensor (`Mapped`); this module
reads the folder (`config.json`, `generation_config.json`, `model.safetensors` or
`pytorch_model.bin` through `torch.load(weights_only=True)`), applies the map, lists missing and
unexpected tensors, and writes the map backwards (`save_hf`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from mmseq.errors import CheckpointError
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.serialization import atomic_path, load_plain, read_json, write_text_atomic

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Mapped:
    """One mmseq tensor made of Hugging Face tensors concatenated on dim 0 (fused q/k/v).

    theirs: one tuple of alias names per part; the first alias present is read (T5's
    `shared.weight` is also saved as `encoder.embed_tokens.weight` by some writers), and the
    first alias is the name written back. optional: a fixed table mmseq computes the same way
    when the file lacks it (Marian's sinusoids). export: False for tensors the reference
    recomputes and never loads.
    """

    ours: str
    theirs: tuple[tuple[str, ...], ...]
    optional: bool = False
    export: bool = True


def one(ours: str, *aliases: str, optional: bool = False, export: bool = True) -> Mapped:
    return Mapped(ours, (aliases,), optional, export)


def fused(ours: str, *names: str) -> Mapped:
    """An mmseq tensor that is the Hugging Face tensors `names` stacked on dim 0."""
    return Mapped(ours, tuple((n,) for n in names))


def linear(ours: str, theirs: Iterable[str], bias: bool) -> list[Mapped]:
    """weight (and bias) of one mmseq linear layer from one or several (fused) HF layers."""
    theirs = list(theirs)
    params = ("weight", "bias") if bias else ("weight",)
    return [fused(f"{ours}.{p}", *(f"{t}.{p}" for t in theirs)) for p in params]


# ---------------------------------------------------------------------------------------------
# Reading a folder


def read_weights(folder: Path) -> dict[str, Tensor]:
    """The folder's tensors as float32, names without a leading `model.` (BART-style models
    saved from `...ForConditionalGeneration` carry it, those saved from `...Model` do not)."""
    path = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if path is None:
        raise CheckpointError(
            f"{folder}: no weights: expected {' or '.join(WEIGHT_FILES)} (sharded checkpoints "
            "are not supported: merge them with transformers' save_pretrained first)"
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(path)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    else:
        tensors = load_plain(path, "PyTorch weights file")
        if not isinstance(tensors, dict) or not all(
            isinstance(v, Tensor) for v in tensors.values()
        ):
            raise CheckpointError(f"{path}: expected a mapping of tensor names to tensors")
    return {k.removeprefix("model."): v.float() for k, v in tensors.items()}


def generation_defaults(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """generation_config.json, or the generation fields of config.json when it is missing
    (what transformers falls back to)."""
    path = folder / "generation_config.json"
    if path.is_file():
        return read_json(path)
    return dict(config)


# ---------------------------------------------------------------------------------------------
# Applying a map


def load_mapped(
    model: EncoderDecoder,
    mapping: list[Mapped],
    tensors: dict[str, Tensor],
    source: Path,
    ignored: Iterable[str] = (),
) -> None:
    """Fill `model` from `tensors` through `mapping`; CheckpointError listing every missing
    and every unexpected tensor (by its Hugging Face name) and every shape mismatch."""
    ours = model.state_dict()
    state: dict[str, Tensor] = {}
    missing, mismatched = [], []
    for m in mapping:
        parts = []
        for aliases in m.theirs:
            name = next((a for a in aliases if a in tensors), None)
            if name is None:
                if not m.optional:
                    missing.append(aliases[0])
                break
            parts.append(tensors[name])
        else:
            value = torch.cat(parts) if len(parts) > 1 else parts[0]
            expected = ours[m.ours].shape
            if value.numel() != expected.numel():
                mismatched.append(f"{'+'.join(a[0] for a in m.theirs)} {tuple(value.shape)}")
            else:
                state[m.ours] = value.reshape(expected)
    known = {a for m in mapping for aliases in m.theirs for a in aliases} | set(ignored)
    unexpected = sorted(set(tensors) - known)
    problems = []
    if missing:
        problems.append(f"missing tensors {sorted(set(missing))}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if mismatched:
        problems.append(f"tensors whose shape does not fit config.json: {mismatched}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    result = model.load_state_dict(state, strict=False)
    filled = set(state) | {m.ours for m in mapping if m.optional}
    left = [k for k in result.missing_keys if k not in filled]
    if left:  # a family map that forgot one of mmseq's tensors: a bug, not bad input
        raise RuntimeError(f"{source}: the importer's map leaves {left} unset")


def unmap(model: EncoderDecoder, mapping: list[Mapped]) -> dict[str, Tensor]:
    """The inverse of `load_mapped`: Hugging Face names -> contiguous tensors."""
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    for m in mapping:
        if not m.export:
            continue
        value = ours[m.ours].detach().float()
        parts = value.chunk(len(m.theirs)) if len(m.theirs) > 1 else (value,)
        for aliases, part in zip(m.theirs, parts, strict=True):
            out.setdefault(aliases[0], part.contiguous())
    return out


# ---------------------------------------------------------------------------------------------
# Families


@dataclass(frozen=True)
class Family:
    """What a family module provides (see mmseq.text.t5 for an example)."""

    name: str
    model_types: tuple[str, ...]
    # (config.json, its path, the names of the tensors in the file) -> architecture
    model_config: Callable[[dict[str, Any], Path, set[str]], ModelConfig]
    weight_map: Callable[[ModelConfig, dict[str, Any]], list[Mapped]]
    ignored: Callable[[ModelConfig, dict[str, Any]], set[str]]

    @classmethod
    def of(cls, module: ModuleType) -> Family:
        return cls(
            module.NAME, module.MODEL_TYPES, module.model_config, module.weight_map, module.ignored
        )


def families() -> dict[str, Family]:
    """model_type -> Family, for every supported model_type."""
    from mmseq.text import bart, marian, pegasus, t5

    out = {}
    for module in (t5, bart, marian, pegasus):
        family = Family.of(module)
        out.update({model_type: family for model_type in family.model_types})
    return out


def family_of(config: dict[str, Any], source: Path) -> Family:
    known = families()
    model_type = config.get("model_type")
    if model_type not in known:
        raise CheckpointError(
            f"{source}: model_type {model_type!r} is not supported; supported text models: "
            f"{', '.join(sorted(known))}"
        )
    return known[model_type]


def required(config: dict[str, Any], key: str, source: Path) -> Any:
    if key not in config:
        raise CheckpointError(f"{source}: config.json lacks {key!r}")
    return config[key]


@dataclass
class HFModel:
    """An imported model and what decoding and export need from its folder."""

    model: EncoderDecoder
    family: Family
    config: dict[str, Any]  # config.json as read
    generation: dict[str, Any]  # generation_config.json (or config.json's fields)
    source: Path

    @property
    def decoder_start_token_id(self) -> int:
        return decoder_start_token_id(self.generation, self.config, self.source)


def decoder_start_token_id(generation: dict[str, Any], config: dict[str, Any], source: Path) -> int:
    """The first decoder input: generation_config.json's, else config.json's
    decoder_start_token_id, else (as transformers falls back) their bos_token_id."""
    for key in ("decoder_start_token_id", "bos_token_id"):
        for d in (generation, config):
            if d.get(key) is not None:
                return int(d[key])
    raise CheckpointError(f"{source}: no decoder_start_token_id nor bos_token_id")


def load_hf(folder: str | os.PathLike) -> HFModel:
    """A Hugging Face T5 / mT5 / BART / mBART / Marian / Pegasus folder -> HFModel (eval mode)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder}: not a Hugging Face model folder: no config.json (expected config.json "
            f"with a model_type of {', '.join(sorted(families()))}; {' or '.join(WEIGHT_FILES)};"
            " and tokenizer.json, or Marian's source.spm, target.spm and vocab.json)"
        )
    config = read_json(folder / "config.json")
    family = family_of(config, folder / "config.json")
    tensors = read_weights(folder)
    try:
        model_config = family.model_config(config, folder / "config.json", set(tensors))
        model = EncoderDecoder(model_config)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:  # sizes that contradict each other, wrong types
        raise CheckpointError(f"{folder / 'config.json'}: unusable model config: {err}") from None
    load_mapped(
        model,
        family.weight_map(model_config, config),
        tensors,
        folder,
        family.ignored(model_config, config),
    )
    return HFModel(model.eval(), family, config, generation_defaults(folder, config), folder)


def save_hf(imported: HFModel, folder: str | os.PathLike) -> Path:
    """Write `imported` (its weights as they are now) as a folder transformers loads:
    config.json, generation_config.json, model.safetensors. Returns the folder."""
    from safetensors.torch import save_file

    if imported.model.config.decoder.copy:
        raise CheckpointError(
            f"{imported.source}: the decoder has a copy head (decoder.copy), which no Hugging "
            "Face architecture has: export it with --format mmseq"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mapping = imported.family.weight_map(imported.model.config, imported.config)
    tensors = unmap(imported.model, mapping)
    write_text_atomic(folder / "config.json", json.dumps(imported.config, indent=2) + "\n")
    generation = json.dumps(imported.generation, indent=2) + "\n"
    write_text_atomic(folder / "generation_config.json", generation)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return folder

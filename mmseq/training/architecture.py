"""`model.model` of `mmseq fit`: the architecture fields a run sets, typed for the CLI.

Seq2SeqModule's `model` holds overrides: a field left out keeps its default (from scratch; the
vocabulary sizes then follow the tokenizer) or the pretrained model's value. jsonargparse fills
in every default of a dataclass it parses, so ModelConfig itself cannot type the argument
without turning every left-out field into an override. `ModelOverrides` mirrors ModelConfig
field for field, nested configs included, with None ("not set") as every default. Typed with
it, `mmseq fit --help` lists each architecture field (`--model.model.image.n_layers`) with its
help text, and a mistyped key or value fails when the command line is parsed, under its full
dotted path, instead of in the middle of `fit`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from typing import Any

from mmseq.model import ModelConfig

# `    name: type = default  # help`, at the indentation of a class body
_FIELD = re.compile(r"^    (\w+)\s*:")


def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's help: the comment lines above it and the comment beside it in the
    class source (base classes first), so that the config classes keep one description."""
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        pending: list[str] = []
        for line in inspect.getsource(klass).splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("# "))
                continue
            match = _FIELD.match(line)
            if match:
                beside = line.split("  # ", 1)[1] if "  # " in line else ""
                helps[match.group(1)] = " ".join([*pending, beside]).strip()
            pending = []
    return helps


def _optional_dataclass(hint: Any) -> type | None:
    """The dataclass of a `Config` or `Config | None` annotation, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def overrides_of(cls: type, defaults: Any = None) -> type:
    """A dataclass with `cls`'s fields, each optional with default None; nested config fields
    become nested override groups. Its docstring gives jsonargparse each field's help and
    default (from `defaults`, an instance of `cls`: an image encoder's block is not a plain
    BlockConfig())."""
    defaults = cls() if defaults is None else defaults
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    fields: list[tuple[str, Any, Any]] = []
    docs: list[str] = []
    for f in dataclasses.fields(cls):
        nested = _optional_dataclass(hints[f.name])
        default = getattr(defaults, f.name)
        if nested is not None:
            sub = overrides_of(nested, default)
            fields.append((f.name, sub, dataclasses.field(default_factory=sub)))
            first_line = (nested.__doc__ or "").strip().splitlines()[0]
            docs.append(f"{f.name}: {helps.get(f.name) or first_line}")
        else:
            fields.append((f.name, hints[f.name] | None, dataclasses.field(default=None)))
            default = list(default) if isinstance(default, tuple) else default
            text = " ".join(filter(None, [helps.get(f.name), f"(if unset: {default})"]))
            docs.append(f"{f.name}: {text}")
    summary = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    args = "".join(f"    {line}\n" for line in docs)
    unset = "Unset (null) fields keep their default, or the pretrained model's."
    doc = f"{summary} {unset}\n\nArgs:\n{args}"
    made = dataclasses.make_dataclass(cls.__name__, fields, namespace={"__doc__": doc})
    made.__module__ = __name__
    return made


ModelOverrides = overrides_of(ModelConfig)
NO_OVERRIDES = ModelOverrides()


def set_fields(overrides: Any) -> dict[str, Any]:
    """The fields that a ModelOverrides sets, as a nested plain dict: unset (None) fields and
    empty groups are left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(overrides):
        name, value = f.name, getattr(overrides, f.name)
        if dataclasses.is_dataclass(value):
            value = set_fields(value)
            if not value:
                continue
        elif value is None:
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out

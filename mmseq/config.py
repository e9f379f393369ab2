"""Config dataclasses <-> plain dicts (YAML, JSON, checkpoints), one field to one key.

Unknown or mistyped keys fail with the dotted path of the field and the keys that exist, so a
typo in a YAML file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml

# Weight and activation precisions of inference (mmseq.precision applies them); here, free of
# torch, so that command-line parsers list them without importing it.
ComputeType = Literal["float32", "bfloat16", "float16", "int8"]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)
# The Whisper model loaded when none is named: embedded (mmseq.whisper.embedded), here so that
# the CLI's parsers name it without importing torch.
DEFAULT_WHISPER = "tiny.en"
# openai-whisper's temperature fallback: each retry of a window this much hotter, up to 1.0
TEMPERATURE_INCREMENT = 0.2


def fallback_temperatures(
    first: float = 0.0, increment: float | None = TEMPERATURE_INCREMENT
) -> tuple[float, ...]:
    """openai-whisper's schedule: `first`, then `increment` hotter up to 1.0 (None: `first`
    only). Rounded, so that the defaults give (0, 0.2, ..., 1.0) exactly, not numpy.arange's
    0.6000000000000001."""
    if increment is None or first >= 1.0:
        return (first,)
    if increment <= 0:
        raise ValueError(f"temperature increment on fallback: expected > 0 or none: {increment}")
    steps = math.floor((1.0 - first) / increment + 1e-6)
    return tuple(round(first + i * increment, 6) for i in range(steps + 1))


T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass (nested ones too) -> dict of plain Python values; tuples become lists."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "config") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, f"{path}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a missing field, or the config's own validation
        raise ValueError(f"{path}: {err}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return from_dict(arg, value, path)
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def load_yaml(cls: type[T], path: str | os.PathLike) -> T:
    """Build dataclass `cls` from a YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    try:
        return from_dict(cls, data or {}, path.stem)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None

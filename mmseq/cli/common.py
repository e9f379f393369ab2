"""What the commands share: their inputs (files and folders), --device and --compute-type,
flags made from the fields of option dataclasses (`add_field`), progress bars on stderr, and
small argument types."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any

from mmseq.config import COMPUTE_TYPES
from mmseq.terminal import escape_controls

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif", ".au"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def expand_inputs(paths: Sequence[str], suffixes: set[str] = AUDIO_SUFFIXES) -> list[str]:
    """Files as given; directories replaced by the files below them with `suffixes`, sorted.

    ValueError naming the first path that does not exist: checked here, before any model
    loads, so that a typo costs no loading time."""
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise ValueError(f"{name}: no such file or directory")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            if not found:
                wanted = ", ".join(sorted(suffixes))
                warning = f"mmseq: warning: {name}: no matching files ({wanted})"
                print(escape_controls(warning), file=sys.stderr)
            files.extend(str(p) for p in found)
        else:
            files.append(name)
    return files


def iter_inputs(paths: Sequence[str], suffixes: set[str], warn: bool = True) -> Iterator[str]:
    """`expand_inputs`, one name at a time: the same names in the same order, folders listed
    as they are reached. ValueError naming the first path that does not exist, at once."""
    for name in paths:
        if not Path(name).exists():
            raise ValueError(f"{name}: no such file or directory")
    return _walk_inputs(paths, suffixes, warn)


def _walk_inputs(paths: Sequence[str], suffixes: set[str], warn: bool) -> Iterator[str]:
    for name in paths:
        if not Path(name).is_dir():
            yield name
            continue
        found = 0
        for item in _below(Path(name), suffixes):
            found += 1
            yield item
        if not found and warn:
            wanted = ", ".join(sorted(suffixes))
            warning = f"mmseq: warning: {name}: no matching files ({wanted})"
            print(escape_controls(warning), file=sys.stderr)


def _below(folder: Path, suffixes: set[str]) -> Iterator[str]:
    """sorted(folder.rglob("*")) with `suffixes`, as str, one folder's listing at a time:
    entries by name, each folder's contents right after it (links to folders not followed)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except PermissionError:
        return
    for entry in entries:
        path = folder / entry.name
        if path.suffix.lower() in suffixes:
            yield str(path)
        if entry.is_dir() and not entry.is_symlink():
            yield from _below(path, suffixes)


def _peek(items: Iterator[str], n: int) -> tuple[list[str], Iterator[str]]:
    """The first `n` items, and an iterator over all of them (those first included)."""
    first = list(islice(items, n))
    return first, chain(first, items)


def _check_explain_dir(name: str) -> None:
    if Path(name).exists() and not Path(name).is_dir():
        raise ValueError(f"--explain {name}: exists and is not a directory")


def _make_explain_dir(name: str) -> None:
    _check_explain_dir(name)
    _make_dir("--explain", Path(name))


def _make_dir(flag: str, path: Path) -> None:
    """Create the folder given to `flag`, or say why it cannot be created."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot create the directory ({err.strerror})") from None


def add_device_option(add: Callable[..., Any]) -> None:
    """`--device` as every model-running command takes it (mmseq.precision.check_device reads
    it before a model loads)."""
    add(
        "--device",
        default="auto",
        help="auto (CUDA when present, else cpu), cpu, cuda, cuda:1, ... (default: %(default)s)",
    )


def add_compute_type_option(add: Callable[..., Any], what: str) -> None:
    """`--compute-type` (COMPUTE_TYPES, float32 by default); `what` opens its help."""
    add(
        "--compute-type",
        default="float32",
        choices=COMPUTE_TYPES,
        help=f"{what} (default: %(default)s)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


# -- flags from the option dataclasses' fields ---------------------------------------------------


def add_field(
    add: Callable[..., Any], options: type, name: str, help: str, **settings: Any
) -> None:
    """The flag of field `name` of the options dataclass `options`: `--name` with hyphens for
    underscores, the field's default, and the type and choices its annotation gives, so that
    the parser restates no default. A bool is a flag: `--name` when the field is False by
    default, `--no-name` when it is True. `settings` (metavar, choices, ...) go to
    `add_argument` as they are.

    Types: int and float (a float that may be None takes 'none' too, `_optional_float`),
    str, a Literal's values as choices, and tuple[float, ...] as '1,2.5,...' (`_seconds_list`).
    """
    default = field_default(options, name)
    flag = name.replace("_", "-")
    if _annotation(options, name)[0] is bool:
        if default:
            add(f"--no-{flag}", dest=name, action="store_false", help=help)
        else:
            add(f"--{flag}", action="store_true", help=help)
        return
    add(f"--{flag}", default=default, help=help, **(_parsing(options, name) | settings))


def field_default(options: type, name: str) -> Any:  # noqa: ANN401 - the field's type
    """The default of field `name` of the dataclass `options` (its factory's value)."""
    field = {f.name: f for f in dataclasses.fields(options)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    if field.default is dataclasses.MISSING:
        raise TypeError(f"{options.__name__}.{name} has no default to give its flag")
    return field.default


def parameter_default(function: Callable[..., Any], name: str) -> Any:  # noqa: ANN401
    """The default of parameter `name` of `function` (a method or a class: its __init__'s),
    for a flag that passes its value there."""
    return inspect.signature(function).parameters[name].default


def _annotation(options: type, name: str) -> tuple[Any, bool]:
    """Field `name`'s type without None, and whether it may be None: `int | None` -> int, True."""
    hint = typing.get_type_hints(options)[name]
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint, False
    (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint, True


def _parsing(options: type, name: str) -> dict[str, Any]:
    """add_argument's type (and choices) for field `name` of `options`."""
    hint, optional = _annotation(options, name)
    if typing.get_origin(hint) is typing.Literal:
        values = typing.get_args(hint)
        return {"type": type(values[0]), "choices": values}
    if hint == tuple[float, ...]:
        return {"type": _seconds_list}
    if hint is float:
        return {"type": _optional_float if optional else float}
    if hint is int:
        return {"type": int}
    if hint is str:
        return {}  # argparse's own
    raise TypeError(f"{options.__name__}.{name}: no flag for a {hint}; add it by hand")


def _optional_float(text: str) -> float | None:
    """A float, or None for 'none' (a threshold switched off)."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _seconds_list(text: str) -> tuple[float, ...]:
    """'5,20,30.5' -> (5.0, 20.0, 30.5)"""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds separated by commas (start,end,...), got {text!r}"
        ) from None


class _counter:
    """A rich progress bar on stderr over a number of files (only on a terminal)."""

    def __init__(self, total: int, label: str, quiet: bool) -> None:
        self.total, self.label = total, label
        self.enabled = not quiet and sys.stderr.isatty() and total > 1

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=True, console=None)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


class _progress:
    """A rich progress bar on stderr over seconds of audio, with the real-time factor."""

    def __init__(self, files: list[str], quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = sum(map(_duration, files)) if self.enabled else 0.0

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.started = time.perf_counter()
        self.bar = Progress(
            TextColumn("transcribing"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s audio"),
            TextColumn("{task.fields[rtf]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("audio", total=self.total or None, rtf="")
        return self.advance

    def advance(self, seconds: float) -> None:
        task = self.bar.tasks[0]
        rate = (task.completed + seconds) / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=seconds, rtf=f"{rate:.1f}x real time")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def _duration(path: str) -> float:
    from mmseq.data.audio import header_seconds

    return header_seconds(path)  # 0.0 when unreadable: the transcriber reports those

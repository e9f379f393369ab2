"""Reading checkpoint files safely: torch files through `torch.load(weights_only=True)`, so no
pickled code ever runs, and JSON configs; errors name the file."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmseq.errors import CheckpointError


def load_plain(path: str | os.PathLike, what: str = "torch file") -> Any:
    """The tensors and plain values of a torch file; CheckpointError naming `path` if it holds
    other Python objects (refused, never unpickled) or cannot be read as `what`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain "
            f"values ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable {what} ({err})") from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; CheckpointError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, flushed to disk
    (fsync) and renamed into place (`os.replace`, then the folder fsync'ed), so that a reader
    never sees half a file and a crash, even of the machine, leaves the old one or the new."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        usual_permissions(Path(tmp))
        os.replace(tmp, path)
        sync_folder(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def usual_permissions(path: Path) -> None:
    """mkstemp, mkdtemp (and safetensors) make private files and folders: give `path` what a
    plain open or mkdir would (0666 or 0777 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename into it survives a crash (a no-op where folders
    cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

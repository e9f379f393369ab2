"""Reading checkpoint files safely: torch files through `torch.load(weights_only=True)`, so no
pickled code ever runs, and JSON configs; errors name the file. Writing files that a later step
depends on atomically (`atomic_path`, `atomic_open`): complete or absent, never half written."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

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
    except Exception as err:  # noqa: BLE001 - a corrupt pickle raises IndexError, KeyError,
        # UnicodeDecodeError, struct.error, ... from inside torch's weights-only unpickler
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable {what} ({reason})") from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; CheckpointError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8; [[[[... nested too deep
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside `path`, for a writer that takes a path and writes it in full.
    On a clean exit the file is flushed to disk (fsync) and renamed into place (`os.replace`,
    then the folder fsync'ed), so that a reader never sees half a file and a crash, even of the
    machine, leaves the old file or the new; on an error it is removed and `path` left as it
    was. The temporary name, `.NAME.XXXXXXXX.tmp`, matches no pattern of a file mmseq reads
    (writers that choose a format by the file's extension must be told it).

    durable=False skips the two fsyncs (a few ms each), for the thousands of files of a data
    set: they are then flushed together (`sync_all`) before the file that vouches for them
    (a part's stamp, a summary) is written, durably."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        usual_permissions(tmp)
        os.replace(tmp, path)
        if durable:
            sync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """`open(path, mode, **kwargs)` for writing, through `atomic_path`: the file appears at
    `path`, complete and on disk, when the block ends without an error."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8, newlines as given) to `path` through `atomic_path`."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `atomic_path`."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def usual_permissions(path: Path) -> None:
    """mkstemp, mkdtemp (and safetensors) make private files and folders: give `path` what a
    plain open or mkdir would (0666 or 0777 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def sync_all() -> None:
    """Flush every file written so far to disk (`os.sync`; nothing where there is none, as on
    Windows): one call for the many files written with `atomic_path(durable=False)`."""
    if hasattr(os, "sync"):
        os.sync()


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


@contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block ends without an error
    (removed otherwise). `out` must not exist, or be an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out}: exists and is not an empty folder; choose a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield staging
        usual_permissions(staging)
        if out.exists():
            out.rmdir()
        staging.rename(out)
        sync_folder(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

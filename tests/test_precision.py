"""Lower precision (mmseq.precision): int8 keeps the transcripts of batches equal to those of
single inputs, stays close to fp32, and refuses what it cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_text_model
from torch import nn

from mmseq.nn.attention import CrossAttention
from mmseq.precision import Int8WeightLinear, apply_compute_type
from mmseq.transcription import TranscribeOptions, Transcriber

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

CLIPS = sorted((Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips").glob("*.flac"))


def test_int8_weight_linear_is_close_to_fp32_and_rows_are_independent() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 96)
    quantized = Int8WeightLinear.from_linear(linear)
    assert quantized.weight.dtype == torch.int8 and quantized.weight.shape == (96, 64)
    x = torch.randn(5, 3, 64)
    with torch.no_grad():
        expected, got = linear(x), quantized(x)
    assert got.shape == (5, 3, 96) and got.dtype == torch.float32
    relative = (got - expected).norm() / expected.norm()
    assert relative < 0.02, relative  # int8 weights + bf16 inputs: about 0.5% here
    # a row's result does not depend on the rows computed with it (no shared activation scale)
    assert torch.equal(quantized(x[2:3]), got[2:3])
    x[0] *= 1000
    assert torch.equal(quantized(x)[1:], got[1:])


def test_int8_weight_linear_survives_float_and_has_no_bias_when_none() -> None:
    linear = nn.Linear(32, 16, bias=False)
    quantized = Int8WeightLinear.from_linear(linear).float()  # the scales become fp32 here
    assert quantized.bias is None
    x = torch.randn(4, 32)
    with torch.no_grad():
        assert torch.allclose(quantized(x), linear(x), atol=0.05)


def test_int8_model_layout() -> None:
    """Decoder linears -> int8 weights (not the cross-attention's key/value projection);
    encoder MLPs -> fbgemm dynamic quantisation; attention projections elsewhere stay fp32."""
    model = apply_compute_type(tiny_text_model(), "int8")
    for block in model.decoder.blocks:
        for module in block.modules():
            for name, child in module.named_children():
                keep = isinstance(module, CrossAttention) and name == "kv"
                if keep:
                    assert type(child) is nn.Linear
                elif isinstance(child, nn.Linear):
                    pytest.fail(f"decoder linear {name} was not quantised")
    encoder_block = model.encoders["text"].stack.blocks[0]
    assert "quantized" in type(encoder_block.mlp.fc1).__module__
    assert type(encoder_block.attn.qkv) is nn.Linear


@torch.no_grad()
def test_int8_decoder_rows_do_not_change_each_other() -> None:
    """The logits of one input are the same alone and in a batch with very different inputs."""
    model = apply_compute_type(tiny_text_model(seed=3), "int8").eval()
    torch.manual_seed(0)
    tokens = torch.randint(3, 20, (4, 7))
    context = torch.randn(4, 5, 32) * torch.tensor([1.0, 30.0, 0.01, 5.0])[:, None, None]
    batch = model.decoder(tokens, context)
    alone = model.decoder(tokens[:1], context[:1])
    assert torch.equal(batch[:1], alone)


def test_compute_type_bad_values() -> None:
    with pytest.raises(ValueError, match="compute_type: expected one of"):
        apply_compute_type(tiny_text_model(), "int4")
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        apply_compute_type(tiny_text_model().to("meta"), "int8")


@pytest.fixture(scope="module")
def int8_transcriber() -> Transcriber:
    return Transcriber(compute_type="int8")


def test_int8_batch_gives_the_single_input_transcripts(int8_transcriber: Transcriber) -> None:
    """fbgemm's activation scale was one per call, so a batch's rows changed each other's
    tokens; with int8 decoder weights and unquantised activations they do not."""
    options = dict(temperatures=(0.0,), without_timestamps=True)
    batched = int8_transcriber.transcribe(CLIPS, batch_size=8, **options)
    single = int8_transcriber.transcribe(CLIPS, batch_size=1, **options)
    assert [t.tokens for t in batched] == [t.tokens for t in single]
    fp32 = Transcriber().transcribe(CLIPS, batch_size=8, **options)
    same_words = sum(a.text.split() == b.text.split() for a, b in zip(batched, fp32, strict=True))
    assert same_words >= len(CLIPS) - 1, [t.text for t in batched]


def test_compile_gives_the_eager_tokens() -> None:
    """`Transcriber(compile=True)` (the CLI's --compile): the same tokens as eager fp32."""
    options = TranscribeOptions(temperatures=(0.0,), batch_size=2)
    eager = Transcriber().transcribe(CLIPS[:2], options=options)
    compiled = Transcriber(compile=True)
    assert compiled.whisper.model.decoder._compiled_call_impl is not None  # nn.Module.compile
    tokens = [t.tokens for t in compiled.transcribe(CLIPS[:2], options=options)]
    assert tokens == [t.tokens for t in eager]


def test_compile_refuses_int8() -> None:
    with pytest.raises(ValueError, match="compile: not with compute_type int8"):
        Transcriber(compute_type="int8", compile=True)
    int8 = Transcriber(compute_type="int8").whisper  # a loaded int8 model passed in
    with pytest.raises(ValueError, match="compile: not with compute_type int8"):
        Transcriber(int8, compile=True)

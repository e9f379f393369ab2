"""Building blocks: KV cache, cached attention, masks, block variants, fp32 norms, padding."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_block
from torch import nn

from mmseq.encoders import TextEncoder, TextEncoderConfig
from mmseq.nn import (
    BlockConfig,
    KVCache,
    LayerNorm,
    RMSNorm,
    SelfAttention,
    TransformerBlock,
    causal_mask_with_offset,
)


def test_kv_cache_writes_at_positions_into_fixed_buffers() -> None:
    cache = KVCache(2, 4, 8, 16, dtype=torch.float32, device="cpu")
    k1, v1 = torch.randn(2, 4, 3, 16), torch.randn(2, 4, 3, 16)
    k2, v2 = torch.randn(2, 4, 1, 16), torch.randn(2, 4, 1, 16)
    cache.write(k1, v1, torch.arange(3))
    keys, values = cache.write(k2, v2, torch.tensor([3]))
    assert keys.shape == (2, 4, 8, 16)  # always the whole buffer: fixed shapes
    assert torch.equal(keys[:, :, :4], torch.cat([k1, k2], 2))
    assert torch.equal(values[:, :, :4], torch.cat([v1, v2], 2))
    assert not keys[:, :, 4:].any()


def test_decoder_cache_overflow_is_an_error() -> None:
    from mmseq.decoder import DecoderCache

    cache = KVCache(1, 2, 4, 8, dtype=torch.float32, device="cpu")
    decoder_cache = DecoderCache([cache], [], None, torch.arange(4))
    assert decoder_cache.claim(2).tolist() == [0, 1]
    assert decoder_cache.claim(2).tolist() == [2, 3]  # fills the 4 slots exactly
    with pytest.raises(ValueError, match=r"KV cache overflow: positions up to 5.*holds 4"):
        decoder_cache.claim(1)


def test_kv_cache_reorder() -> None:
    cache = KVCache(3, 1, 4, 2, dtype=torch.float32, device="cpu")
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    cache.write(k, k, torch.arange(2))
    cache.reorder(torch.tensor([2, 2, 0]), length=2)
    assert cache.keys[:, 0, :2, 0].tolist() == [[2, 2], [2, 2], [0, 0]]
    # slots past `length` hold no garbage (a compiled step reads them under its mask)
    assert not cache.keys[:, :, 2:].any()
    cache.reorder(torch.tensor([1, 0, 0]), length=2)  # and back into the first buffers
    assert cache.keys[:, 0, :2, 0].tolist() == [[2, 2], [2, 2], [2, 2]]


@torch.no_grad()
def test_cached_self_attention_equals_causal_attention() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(32, 4)
    x = torch.randn(2, 7, 32)
    expected = attn(x, causal=True)
    cache = KVCache(2, 4, 9, 8, dtype=torch.float32, device="cpu")  # 2 slots never written
    slots = torch.arange(9)

    def step(start: int, end: int) -> torch.Tensor:
        positions = torch.arange(start, end)
        mask = slots[None, :] <= positions[:, None]  # unwritten slots hidden
        return attn(x[:, start:end], mask=mask, cache=cache, positions=positions)

    # a 3-token prompt, then one token at a time, then a 2-token chunk after a prefix
    steps = [step(0, 3), step(3, 4), step(4, 5), step(5, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), expected, atol=1e-5, rtol=1e-5)


def test_causal_mask_with_offset() -> None:
    mask = causal_mask_with_offset(2, 3, torch.device("cpu"))
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(
        causal_mask_with_offset(3, 0, torch.device("cpu")), torch.ones(3, 3).tril().bool()
    )


def test_block_config_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match=r"activation: expected one of .*'gelu'.*got 'swish'"):
        BlockConfig(activation="swish")


def test_block_config_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        BlockConfig(d_model=30, n_heads=4)


def test_unknown_norm_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"norm: expected 'layernorm' or 'rmsnorm', got 'batch'"):
        TransformerBlock(tiny_block(norm="batch"))


VARIANTS = {
    "post_ln": {"pre_norm": False},
    "rmsnorm": {"norm": "rmsnorm"},
    "gated_mlp": {"gated_mlp": True, "activation": "silu"},
    "relu": {"activation": "relu"},
    "no_bias": {"bias": False},
    "unscaled_attention": {"attention_scale": 1.0},
    "t5": {"norm": "rmsnorm", "bias": False, "activation": "relu", "attention_scale": 1.0},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@torch.no_grad()
def test_block_variants_run_and_differ(name: str) -> None:
    x, context = torch.randn(2, 5, 32), torch.randn(2, 6, 32)

    def run(**overrides: object) -> torch.Tensor:
        torch.manual_seed(0)  # same initialisation for the parameters both variants share
        block = TransformerBlock(tiny_block(**overrides), cross_attention=True)
        for p in block.parameters():  # non-trivial norms and biases
            p.add_(0.1 * torch.randn_like(p))
        kv = block.cross_attn.project_context(context)
        return block(x, causal=True, context_kv=kv)

    out = run(**VARIANTS[name])
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, run(), atol=1e-4)


def test_block_variant_modules() -> None:
    no_bias = TransformerBlock(tiny_block(bias=False), cross_attention=True)
    assert all(m.bias is None for m in no_bias.modules() if isinstance(m, nn.Linear))
    assert TransformerBlock(tiny_block(gated_mlp=True)).mlp.gate is not None
    assert TransformerBlock(tiny_block()).mlp.gate is None
    assert isinstance(TransformerBlock(tiny_block(norm="rmsnorm")).mlp_norm, RMSNorm)


def test_cross_attention_block_needs_context() -> None:
    block = TransformerBlock(tiny_block(), cross_attention=True)
    with pytest.raises(ValueError, match="pass context_kv"):
        block(torch.randn(1, 2, 32))


@torch.no_grad()
def test_layer_norm_computes_in_fp32_under_bf16() -> None:
    torch.manual_seed(0)
    norm = LayerNorm(384).to(torch.bfloat16)
    norm.weight.copy_(torch.randn(384))
    norm.bias.copy_(torch.randn(384))
    x = (torch.randn(4, 384) * 30 + 100).to(torch.bfloat16)  # large mean: bf16 stats would drift
    y = norm(x)
    assert y.dtype == torch.bfloat16
    expected = F.layer_norm(x.float(), (384,), norm.weight.float(), norm.bias.float(), 1e-5)
    assert torch.equal(y, expected.to(torch.bfloat16))  # fp32 statistics, then one rounding
    torch.testing.assert_close(y.float(), expected, atol=0.05, rtol=1e-2)


@torch.no_grad()
def test_padded_positions_do_not_change_real_tokens() -> None:
    torch.manual_seed(0)
    config = TextEncoderConfig(vocab_size=50, n_ctx=16, n_layers=2, block=tiny_block())
    encoder = TextEncoder(config).eval()
    real = torch.tensor([[5, 6, 7, 8, 0, 0, 0], [9, 10, 11, 12, 13, 14, 15]])
    lengths = torch.tensor([4, 7])
    garbage = real.clone()
    garbage[0, 4:] = torch.tensor([40, 41, 42])
    a = encoder(real, lengths)
    b = encoder(garbage, lengths)
    assert a.mask.tolist()[0] == [True] * 4 + [False] * 3
    torch.testing.assert_close(a.states[0, :4], b.states[0, :4], atol=1e-6, rtol=0)
    torch.testing.assert_close(a.states[1], b.states[1], atol=0, rtol=0)
    alone = encoder(real[:1, :4])  # no padding at all
    torch.testing.assert_close(a.states[0, :4], alone.states[0], atol=1e-5, rtol=1e-5)
    # without the mask the garbage would leak into the real positions
    unmasked = encoder(garbage, None)
    assert not torch.allclose(unmasked.states[0, :4], a.states[0, :4], atol=1e-4)


def test_marian_sinusoids_equal_transformers() -> None:
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    from mmseq.nn import marian_sinusoids

    reference = MarianSinusoidalPositionalEmbedding(64, 48).create_weight()
    assert torch.equal(marian_sinusoids(64, 48), reference)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("buckets", "distance"), [(32, 128), (8, 20)])
def test_t5_relative_buckets_equal_transformers(bidirectional, buckets, distance) -> None:
    from transformers.models.t5.modeling_t5 import T5Attention

    from mmseq.nn import RelativePositionBias

    relative = torch.arange(-300, 300)
    expected = T5Attention._relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance
    )
    bias = RelativePositionBias(4, buckets, distance, bidirectional)
    assert torch.equal(bias.buckets(relative), expected)


def test_relative_bias_while_decoding_offsets_the_query_positions() -> None:
    from mmseq.nn import RelativePositionBias

    torch.manual_seed(0)
    bias = RelativePositionBias(2, 8, 20, bidirectional=False)
    full = bias(torch.arange(6), torch.arange(6))  # [1, H, 6, 6]
    step = bias(torch.tensor([4]), torch.arange(6))  # the 5th token, cache of 6 slots
    assert torch.equal(step[0, :, 0], full[0, :, 4])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fp32_mlp_output_does_not_overflow(dtype) -> None:
    """T5's `wo` overflows fp16 (transformers#9295): with fp32_mlp_output the product runs in
    fp32 from an fp32 weight, and fp16 results are clamped to the finite range."""
    from mmseq.nn import MLP
    from mmseq.precision import apply_compute_type

    cfg = BlockConfig(d_model=8, n_heads=2, d_ff=16, bias=False, fp32_mlp_output=True)
    mlp = MLP(cfg)
    with torch.no_grad():
        mlp.fc2.weight.fill_(3000.0)
    compute_type = {torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmseq warns that float16 on the CPU is slow
        apply_compute_type(nn.Sequential(mlp), compute_type)
    assert mlp.fc2.weight.dtype == torch.float32 and mlp.fc1.weight.dtype == dtype
    y = mlp(torch.ones(1, 8, dtype=dtype) * 40)  # fc2 output ~1e6: inf in fp16
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_position_kinds_are_checked() -> None:
    from mmseq.decoder import DecoderConfig
    from mmseq.encoders import AudioEncoder, AudioEncoderConfig

    with pytest.raises(ValueError, match=r"positions: expected one of .*'relative'.*got 'rope'"):
        DecoderConfig(positions="rope")
    with pytest.raises(ValueError, match="'relative' is for text stacks only"):
        AudioEncoder(AudioEncoderConfig(positions="relative"))


def test_rows_of_one_input_share_its_cross_attention_context() -> None:
    """Beams (or samples) of an input attend to its keys and values stored once: the same
    outputs as attending to a copy per row, and the decoder cache keeps a row's input when
    inputs finish (and refuses to mix the rows of two inputs)."""
    from mmseq.decoder import DecoderConfig, TextDecoder
    from mmseq.nn import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(32, 4).eval()
    context = torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    x = torch.randn(6, 3, 32)  # 3 rows per input
    shared = attn(x, attn.project_context(context), mask)
    copied = attn.project_context(context.repeat_interleave(3, 0))
    assert torch.allclose(shared, attn(x, copied, mask.repeat_interleave(3, 0)), atol=1e-6)
    assert torch.allclose(attn.scores(x, attn.project_context(context)), attn.scores(x, copied))

    decoder = TextDecoder(DecoderConfig(vocab_size=11, n_ctx=8, n_layers=1)).eval()
    cache = decoder.new_cache(torch.randn(2, 7, decoder.d_model), max_len=4, repeat=3)
    with torch.inference_mode():
        decoder(torch.ones(6, 1, dtype=torch.long), cache=cache)
        cache.reorder(torch.tensor([5, 3, 4]))  # input 0 finished: input 1's rows go on
        assert cache.context_kv[0][0].shape[0] == 1 and cache.rows == 3
        with pytest.raises(ValueError, match="rows of one input must stay together"):
            cache.reorder(torch.tensor([0]))  # one of the input's three rows

"""Building blocks: KV cache, cached attention, masks, block variants, fp32 norms, padding."""

from __future__ import annotations

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


def test_kv_cache_write_returns_everything_so_far() -> None:
    cache = KVCache(2, 4, 8, 16, dtype=torch.float32, device="cpu")
    k1, v1 = torch.randn(2, 4, 3, 16), torch.randn(2, 4, 3, 16)
    k2, v2 = torch.randn(2, 4, 1, 16), torch.randn(2, 4, 1, 16)
    cache.write(k1, v1, 0)
    keys, values = cache.write(k2, v2, 3)
    assert keys.shape == (2, 4, 4, 16)
    assert torch.equal(keys, torch.cat([k1, k2], 2)) and torch.equal(values, torch.cat([v1, v2], 2))


def test_kv_cache_overflow_is_an_error() -> None:
    cache = KVCache(1, 2, 4, 8, dtype=torch.float32, device="cpu")
    kv = torch.zeros(1, 2, 2, 8)
    cache.write(kv, kv, 2)  # fills positions 2, 3 exactly
    with pytest.raises(ValueError, match=r"KV cache overflow: positions up to 5.*holds 4"):
        cache.write(kv, kv, 3)


def test_kv_cache_reorder() -> None:
    cache = KVCache(3, 1, 4, 2, dtype=torch.float32, device="cpu")
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    cache.write(k, k, 0)
    cache.reorder(torch.tensor([2, 2, 0]), length=2)
    assert cache.keys[:, 0, :2, 0].tolist() == [[2, 2], [2, 2], [0, 0]]
    assert not cache.keys[:, :, 2:].any()  # slots past `length` untouched


@torch.no_grad()
def test_cached_self_attention_equals_causal_attention() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(32, 4)
    x = torch.randn(2, 7, 32)
    expected = attn(x, causal=True)
    cache = KVCache(2, 4, 7, 8, dtype=torch.float32, device="cpu")
    # a 3-token prompt (causal), then one token at a time, then a 2-token chunk after a prefix
    steps = [attn(x[:, :3], causal=True, cache=cache, position=0)]
    steps += [attn(x[:, t : t + 1], cache=cache, position=t) for t in (3, 4)]
    mask = causal_mask_with_offset(2, 5, x.device)
    steps.append(attn(x[:, 5:7], mask=mask, cache=cache, position=5))
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

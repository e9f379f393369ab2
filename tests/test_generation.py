"""Decoding: the KV cache changes nothing, batching changes nothing, options are validated and
obeyed (sampling, filters, suppression, EOS and padding)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_block, tiny_text_model
from torch import Tensor

from mmseq.decoder import DecoderConfig
from mmseq.encoders import AudioEncoderConfig
from mmseq.generation import GenerationConfig, generate
from mmseq.generation.logits import top_k_filter, top_p_filter
from mmseq.model import EncoderDecoder, ModelConfig

VOCAB = 20
BOS = 1


def _sharpen(model: EncoderDecoder) -> EncoderDecoder:
    """Larger decoder embeddings and norm gain: peaky, varied next-token distributions (a model
    at initialisation repeats one token, which would make these tests weak)."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.decoder.positions.weight.normal_(std=1.0)
        model.decoder.token_embedding.weight.normal_(std=0.3)
        model.decoder.norm.weight.mul_(3.0)
    return model


def _audio_model() -> EncoderDecoder:
    torch.manual_seed(0)
    config = ModelConfig(
        decoder=DecoderConfig(vocab_size=VOCAB, n_ctx=32, n_layers=2, block=tiny_block()),
        audio=AudioEncoderConfig(
            n_mels=16, n_ctx=64, n_layers=2, block=tiny_block(), pad_to_30s=False
        ),
    )
    return _sharpen(EncoderDecoder(config).eval())


def _text_model() -> EncoderDecoder:
    return _sharpen(tiny_text_model(vocab_size=VOCAB))


def _text_inputs() -> tuple[Tensor, Tensor]:
    """Three right-padded inputs of lengths 5, 9 and 3 (the padding is garbage, on purpose)."""
    torch.manual_seed(2)
    return torch.randint(2, VOCAB, (3, 9)), torch.tensor([5, 9, 3])


@torch.no_grad()
def _greedy_uncached(model, modality, inputs, prefix, steps, lengths=None) -> Tensor:
    """Reference: the whole sequence through the decoder at every step, no cache."""
    encoded = model.encode(modality, inputs, lengths)
    tokens = prefix
    for _ in range(steps):
        logits = model.decoder(tokens, encoded.states, encoded.mask)[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_cached_greedy_equals_uncached(modality: str) -> None:
    if modality == "audio":
        model, lengths = _audio_model(), torch.tensor([40, 31])
        inputs = torch.randn(2, 16, 40)
    else:
        model = _text_model()
        inputs, lengths = _text_inputs()
    prefix = torch.tensor([[BOS, 3, 4]] * inputs.shape[0])
    expected = _greedy_uncached(model, modality, inputs, prefix, 12, lengths)
    config = GenerationConfig(max_new_tokens=12)
    out = generate(model, modality, inputs, prefix, config, lengths=lengths)
    assert torch.equal(out.sequences[:, 0], expected)
    assert len(set(expected[:, 3:].flatten().tolist())) > 3  # not one token repeated


@torch.no_grad()
def test_cached_logits_equal_full_forward() -> None:
    model = _text_model()
    inputs, lengths = _text_inputs()
    encoded = model.encode("text", inputs, lengths)
    tokens = torch.randint(0, VOCAB, (3, 10))
    expected = model.decoder(tokens, encoded.states, encoded.mask)
    cache = model.decoder.new_cache(encoded.states, encoded.mask, max_len=10)
    # a 4-token prompt, a 3-token chunk after it, then single tokens
    chunks = [tokens[:, :4], tokens[:, 4:7], tokens[:, 7:8], tokens[:, 8:9], tokens[:, 9:]]
    got = torch.cat([model.decoder(chunk, cache=cache) for chunk in chunks], dim=1)
    assert cache.position == 10
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_batch_equals_each_input_alone(num_beams: int) -> None:
    model = _text_model()
    inputs, lengths = _text_inputs()
    config = GenerationConfig(max_new_tokens=10, num_beams=num_beams, eos_token_id=7)
    batched = generate(model, "text", inputs, [BOS], config, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = generate(model, "text", inputs[i : i + 1, :n], [BOS], config)
        width = alone.sequences.shape[-1]
        assert torch.equal(batched.sequences[i, :, :width], alone.sequences[0])
        assert not batched.sequences[i, :, width:].ne(config.pad_id).any()
        torch.testing.assert_close(batched.scores[i], alone.scores[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences must be <= num_beams"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"num_beams": 0}, "num_beams must be >= 1"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
    ],
)
def test_generation_config_validation(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"GenerationConfig: {message}"):
        GenerationConfig(**options)


def test_too_long_request_names_n_ctx() -> None:
    model = _text_model()  # decoder n_ctx 32
    inputs = torch.randint(2, VOCAB, (1, 4))
    with pytest.raises(ValueError, match=r"prefix \(3 tokens\).*max_new_tokens \(31\).*n_ctx=?32"):
        generate(model, "text", inputs, [BOS, 3, 4], GenerationConfig(max_new_tokens=31))
    out = generate(model, "text", inputs, [BOS, 3], GenerationConfig(max_new_tokens=30))
    assert out.sequences.shape == (1, 1, 32)


def test_empty_prefix_is_an_error() -> None:
    with pytest.raises(ValueError, match="prefix: give at least one token"):
        generate(_text_model(), "text", torch.ones(1, 3, dtype=torch.long), [], GenerationConfig())


def test_sampling_is_reproducible_and_top_k_1_is_greedy() -> None:
    model = _text_model()
    inputs, lengths = _text_inputs()

    def sample(seed: int, **options: object) -> Tensor:
        config = GenerationConfig(max_new_tokens=12, do_sample=True, **options)
        generator = torch.Generator().manual_seed(seed)
        return generate(model, "text", inputs, [BOS], config, lengths, generator).sequences

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    greedy = generate(model, "text", inputs, [BOS], GenerationConfig(max_new_tokens=12), lengths)
    assert torch.equal(sample(3, top_k=1), greedy.sequences)
    assert torch.equal(sample(4, top_p=1e-6), greedy.sequences)


def test_num_return_sequences_with_sampling() -> None:
    model = _text_model()
    config = GenerationConfig(max_new_tokens=8, do_sample=True, num_return_sequences=3)
    generator = torch.Generator().manual_seed(0)
    out = generate(model, "text", torch.randint(2, VOCAB, (2, 5)), [BOS], config, None, generator)
    assert out.sequences.shape == (2, 3, 9)
    assert len({tuple(s) for s in out.sequences[0].tolist()}) > 1


def test_top_k_filter() -> None:
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, -2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    out = top_k_filter(logits, 2)
    assert torch.isfinite(out).tolist() == [
        [False, True, True, True, False],  # a tie at the k-th value is kept
        [False, False, False, True, True],
    ]
    assert torch.equal(out[0, 1:4], logits[0, 1:4])
    assert torch.equal(top_k_filter(logits, 0), logits)  # 0: off


def test_top_p_filter() -> None:
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]  # the top token alone reaches 0.5
    assert kept(0.6) == [True, False, True, False]
    assert kept(0.81) == [True, False, True, True]
    assert kept(0.01) == [True, False, False, False]  # at least one token
    assert kept(1.0) == [True, True, True, True]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_suppressed_tokens(num_beams: int) -> None:
    model = _text_model()
    inputs, lengths = _text_inputs()
    plain = GenerationConfig(max_new_tokens=12, num_beams=num_beams)
    free = generate(model, "text", inputs, [BOS], plain, lengths).sequences[:, 0, 1:]
    common = int(free.flatten().mode().values)  # suppressing it must change the output
    first = int(free[0, 0])
    config = GenerationConfig(
        max_new_tokens=12,
        num_beams=num_beams,
        suppress_tokens=(common,),
        begin_suppress_tokens=(first,),
    )
    out = generate(model, "text", inputs, [BOS], config, lengths).sequences[:, 0, 1:]
    assert not (out == common).any()
    assert not (out[:, 0] == first).any()
    assert not torch.equal(out, free)


@pytest.mark.parametrize("num_beams", [1, 2])
def test_eos_ends_sequences_and_pad_follows(num_beams: int) -> None:
    model = _text_model()
    inputs, lengths = _text_inputs()
    free = generate(model, "text", inputs, [BOS], GenerationConfig(max_new_tokens=12), lengths)
    generated = free.sequences[:, 0, 1:]
    eos = int(generated[0, 3])  # row 0 would stop after 4 tokens at the latest
    pad = 0
    config = GenerationConfig(
        max_new_tokens=12, num_beams=num_beams, eos_token_id=eos, pad_token_id=pad
    )
    out = generate(model, "text", inputs, [BOS], config, lengths)
    for row, n in zip(out.sequences[:, 0, 1:].tolist(), out.lengths[:, 0].tolist(), strict=True):
        if eos in row:
            end = row.index(eos) + 1
            assert n == end
            assert all(t == pad for t in row[end:])
        else:
            assert n == 12 and len(row) == 12
    row0 = out.sequences[0, 0, 1:].tolist()
    assert eos in row0 and row0.index(eos) <= 3
    if num_beams == 1:  # greedy: identical to the unconstrained run up to EOS
        end = row0.index(eos) + 1
        assert row0[:end] == generated[0, :end].tolist()


@pytest.mark.parametrize("options", [{}, {"num_beams": 3}, {"do_sample": True}])
def test_non_finite_logits_stop_decoding_with_a_clear_error(options: dict) -> None:
    """Broken weights (or a low precision that overflowed) give NaN logits: decoding stops
    instead of returning a sequence argmax picked out of NaNs."""
    from mmseq.generation.step import NonFiniteLogitsError

    model = _text_model()
    with torch.no_grad():
        model.decoder.norm.weight[3] = float("nan")
    inputs, lengths = _text_inputs()
    config = GenerationConfig(max_new_tokens=4, eos_token_id=2, **options)
    with pytest.raises(NonFiniteLogitsError, match=r"non-finite logits \(NaN or inf\) at "):
        generate(model, "text", inputs, [BOS], config, lengths)

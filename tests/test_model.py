"""EncoderDecoder: config round trip, bridges, loss and label shifting, input validation, and a
tiny model that learns to copy."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from conftest import tiny_block, tiny_text_model

from mmseq.config import from_dict
from mmseq.decoder import DecoderConfig
from mmseq.encoders import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from mmseq.generation import GenerationConfig, generate
from mmseq.model import IGNORE_INDEX, EncoderDecoder, ModelConfig, seq2seq_loss, shift_right
from mmseq.nn import BlockConfig


def _three_modality_config() -> ModelConfig:
    return ModelConfig(
        decoder=DecoderConfig(vocab_size=30, n_ctx=16, n_layers=1, block=tiny_block()),
        audio=AudioEncoderConfig(
            n_mels=16, n_ctx=50, n_layers=1, block=tiny_block(), pad_to_30s=False
        ),
        image=ImageEncoderConfig(
            image_size=(16, 24), patch_size=8, n_layers=1, block=tiny_block(48, norm_eps=1e-6)
        ),
        text=TextEncoderConfig(vocab_size=30, n_ctx=16, n_layers=1, block=tiny_block()),
    )


@pytest.fixture(scope="module")
def model() -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(_three_modality_config()).eval()


def test_config_round_trip_through_json() -> None:
    config = _three_modality_config()
    data = json.loads(json.dumps(config.to_dict()))
    assert data["image"]["image_size"] == [16, 24]
    restored = ModelConfig.from_dict(data)
    assert restored == config
    assert restored.image.image_size == (16, 24) and restored.modalities == [
        "audio",
        "image",
        "text",
    ]
    shapes = {k: v.shape for k, v in EncoderDecoder(restored).state_dict().items()}
    assert shapes == {k: v.shape for k, v in EncoderDecoder(config).state_dict().items()}


def test_config_unknown_field_names_the_dotted_path() -> None:
    data = _three_modality_config().to_dict()
    data["audio"]["block"]["d_modle"] = 64
    with pytest.raises(ValueError, match=r"model\.audio\.block: unknown field\(s\) \['d_modle'\]"):
        ModelConfig.from_dict(data)


def test_config_section_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"model\.decoder: expected a mapping"):
        ModelConfig.from_dict({"decoder": 3})


def test_config_missing_required_field() -> None:
    @dataclass
    class Needs:
        width: int
        depth: int = 1

    assert from_dict(Needs, {"width": 3}, "cfg") == Needs(3)
    with pytest.raises(ValueError, match=r"cfg: .*missing 1 required .*'width'"):
        from_dict(Needs, {"depth": 2}, "cfg")


def test_model_needs_an_encoder() -> None:
    with pytest.raises(ValueError, match="configure at least one encoder"):
        EncoderDecoder(ModelConfig())


def test_bridge_only_for_encoders_of_another_width(model: EncoderDecoder) -> None:
    assert set(model.bridges) == {"image"}
    assert (model.bridges["image"].in_features, model.bridges["image"].out_features) == (48, 32)
    out = model.encode("image", torch.randn(2, 3, 16, 24))
    assert out.states.shape == (2, 1 + 2 * 3, 32) and out.mask is None
    logits = model("image", torch.randn(2, 3, 16, 24), torch.tensor([[1, 2, 3]] * 2)).logits
    assert logits.shape == (2, 3, 30) and logits.dtype == torch.float32


def test_loss_equals_manual_cross_entropy(model: EncoderDecoder) -> None:
    torch.manual_seed(0)
    inputs, lengths = torch.randint(0, 30, (2, 6)), torch.tensor([6, 4])
    labels = torch.tensor([[5, 6, 7, 2, IGNORE_INDEX], [8, 2, IGNORE_INDEX, IGNORE_INDEX, 9]])
    tokens = shift_right(labels, start_token_id=1, pad_token_id=0)
    out = model("text", inputs, tokens, lengths=lengths, labels=labels)
    logprobs = out.logits.log_softmax(-1)
    kept = [(b, t) for b in range(2) for t in range(5) if labels[b, t] != IGNORE_INDEX]
    expected = -torch.stack([logprobs[b, t, labels[b, t]] for b, t in kept]).mean()
    torch.testing.assert_close(out.loss, expected)
    uniform = -torch.stack([logprobs[b, t].mean() for b, t in kept]).mean()
    smoothed = seq2seq_loss(out.logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(smoothed, 0.9 * expected + 0.1 * uniform)
    with pytest.raises(ValueError, match=r"labels: expected shape \(2, 5\).*got \(2, 4\)"):
        seq2seq_loss(out.logits, labels[:, :4])


def test_shift_right() -> None:
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, IGNORE_INDEX, IGNORE_INDEX]])
    assert shift_right(labels, 1, 0).tolist() == [[1, 5, 6, 7], [1, 8, 2, 0]]


@pytest.mark.parametrize(
    ("modality", "shape", "message"),
    [
        ("audio", (1, 40, 100), r"log-mels \[B, 16, frames\], got shape \(1, 40, 100\)"),
        ("audio", (16000,), r"waveforms \[B, samples\].*got shape \(16000,\)"),
        ("image", (1, 1, 16, 24), r"image input: expected \[B, 3, H, W\].*\(1, 1, 16, 24\)"),
        ("image", (1, 3, 16, 20), r"H a multiple of 8 and W of 8, got shape \(1, 3, 16, 20\)"),
        ("image", (3, 16, 24), r"image input: expected \[B, 3, H, W\]"),
        ("text", (7,), r"text input: expected token ids \[B, T\], got shape \(7,\)"),
    ],
)
def test_bad_input_shapes(model: EncoderDecoder, modality: str, shape, message: str) -> None:
    inputs = torch.zeros(shape, dtype=torch.long) if modality == "text" else torch.randn(shape)
    with pytest.raises(ValueError, match=message):
        model.encode(modality, inputs)


def test_unknown_modality(model: EncoderDecoder) -> None:
    with pytest.raises(ValueError, match=r"modality 'video': this model has encoders \['audio'"):
        model.encode("video", torch.randn(1, 3))


def test_decoder_tokens_must_be_2d(model: EncoderDecoder) -> None:
    with pytest.raises(ValueError, match=r"decoder tokens: expected \[B, T\], got shape \(3,\)"):
        model("text", torch.ones(1, 4, dtype=torch.long), torch.tensor([1, 2, 3]))


def test_decoder_context_width(model: EncoderDecoder) -> None:
    with pytest.raises(ValueError, match=r"encoder states \[B, S, 32\], got shape \(1, 4, 48\)"):
        model.decoder(torch.ones(1, 2, dtype=torch.long), torch.randn(1, 4, 48))


def test_image_lengths_are_refused(model: EncoderDecoder) -> None:
    with pytest.raises(ValueError, match="lengths must be None"):
        model.encode("image", torch.randn(1, 3, 16, 24), torch.tensor([3]))


def test_whisper_mel_longer_than_30s() -> None:
    config = ModelConfig(
        decoder=DecoderConfig(vocab_size=30, n_ctx=16, n_layers=1, block=tiny_block()),
        audio=AudioEncoderConfig(n_mels=16, n_ctx=1500, n_layers=1, block=tiny_block()),
    )
    model = EncoderDecoder(config)
    with pytest.raises(ValueError, match=r"3001 mel frames exceed one 30 s window \(3000\)"):
        model.encode("audio", torch.randn(1, 16, 3001))


def test_overfits_ten_copies() -> None:
    """One shift_right and one loss: a text -> text model learns to copy 10 sequences."""
    bos, eos, pad = 1, 2, 0
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 7, (10,), generator=gen)
    inputs = torch.zeros(10, 6, dtype=torch.long)
    labels = torch.full((10, 7), IGNORE_INDEX)
    for i, n in enumerate(lengths.tolist()):
        seq = torch.randint(3, 20, (n,), generator=gen)
        inputs[i, :n] = seq
        labels[i, : n + 1] = torch.cat([seq, torch.tensor([eos])])
    tokens = shift_right(labels, bos, pad)

    model = tiny_text_model(seed=0, vocab_size=20).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        loss = model("text", inputs, tokens, lengths=lengths, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05

    config = GenerationConfig(max_new_tokens=8, eos_token_id=eos, pad_token_id=pad)
    out = generate(model.eval(), "text", inputs, [bos], config, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        assert out.sequences[i, 0, 1 : n + 2].tolist() == labels[i, : n + 1].tolist()
        assert out.lengths[i, 0] == n + 1


def test_inference_output_projection_follows_the_embedding() -> None:
    """Without grad the decoder multiplies by a cached contiguous E.T; it must equal the tied
    projection and be rebuilt when the embedding changes (e.g. after an optimiser step)."""
    from mmseq.decoder import DecoderConfig, TextDecoder
    from mmseq.nn import BlockConfig

    torch.manual_seed(0)
    decoder = TextDecoder(
        DecoderConfig(vocab_size=50, n_ctx=8, n_layers=1, block=BlockConfig(32, 4, 64))
    ).eval()
    tokens, context = torch.tensor([[1, 2, 3]]), torch.randn(1, 5, 32)
    with torch.no_grad():
        cached = decoder(tokens, context)
    torch.testing.assert_close(cached, decoder(tokens, context), atol=1e-5, rtol=0)
    with torch.no_grad():
        # in place, as an optimiser step is; not a constant shift, which the zero-mean output
        # of the final LayerNorm would cancel in the logit
        decoder.token_embedding.weight[7] += torch.linspace(-1.0, 1.0, 32)
        after = decoder(tokens, context)
    torch.testing.assert_close(after, decoder(tokens, context), atol=1e-5, rtol=0)
    assert not torch.allclose(after, cached)


def test_conv_stem_reaches_the_patch_grid_and_learns_through_every_layer() -> None:
    from mmseq.encoders import ImageEncoder

    cfg = ImageEncoderConfig(
        image_size=(16, 32),
        patch_size=4,
        n_layers=1,
        stem="conv",
        block=tiny_block(32),
    )
    encoder = ImageEncoder(cfg)
    states = encoder(torch.randn(2, 3, 16, 32)).states
    assert states.shape == (2, 1 + 4 * 8, 32)  # class token + (16/4) x (32/4) patches
    states.sum().backward()
    convs = [m for m in encoder.patch_embed if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3  # two stride-2 convolutions for patch 4, then the 1x1 projection
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    # each stride-2 convolution is batch-normalised: its output has zero mean per channel
    norms = [m for m in encoder.patch_embed if isinstance(m, torch.nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [c.out_channels for c in convs[:2]]
    first = torch.nn.Sequential(*list(encoder.patch_embed)[:2])(torch.randn(4, 3, 16, 32) * 5 + 3)
    torch.testing.assert_close(first.mean(dim=(0, 2, 3)), torch.zeros(16), atol=1e-5, rtol=0)


def test_sincos_positions_encode_rows_and_columns_apart() -> None:
    from mmseq.encoders.image import sincos_positions

    table = sincos_positions((3, 4), 16).reshape(3, 4, 16)
    # the first half depends on the row only, the second on the column only
    assert torch.equal(table[:, :1, :8].expand(-1, 4, -1), table[..., :8])
    assert torch.equal(table[:1, :, 8:].expand(3, -1, -1), table[..., 8:])
    # nearer patches are more alike
    flat = table.reshape(12, 16)
    sims = flat @ flat[0]
    assert sims[1] > sims[2] > sims[3] and sims[4] > sims[8]


def test_sincos_position_init_fills_the_patch_positions() -> None:
    from mmseq.encoders import ImageEncoder
    from mmseq.encoders.image import sincos_positions

    cfg = ImageEncoderConfig(
        image_size=16, patch_size=4, n_layers=1, position_init="sincos", block=tiny_block(32)
    )
    encoder = ImageEncoder(cfg)
    torch.testing.assert_close(encoder.positions.data[1:], sincos_positions((4, 4), 32))
    assert encoder.positions.requires_grad  # an initialisation: still trained


@pytest.mark.parametrize(
    ("stem", "patch", "message"),
    [("cnn", 8, "stem"), ("conv", 6, "power"), ("conv", [8, 4], "square")],
)
def test_bad_stem_settings_are_named(stem: str, patch, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageEncoderConfig(image_size=24, patch_size=patch, stem=stem)


def test_bad_position_init_is_named() -> None:
    with pytest.raises(ValueError, match="position_init: expected 'random' or 'sincos'"):
        ImageEncoderConfig(image_size=24, patch_size=8, position_init="rope")
    with pytest.raises(ValueError, match="d_model divisible by 4"):
        ImageEncoderConfig(
            image_size=24, patch_size=8, position_init="sincos", block=BlockConfig(30, 2, 60)
        )


def test_strip_patches_read_an_image_as_a_sequence_of_columns() -> None:
    """patch_size [H, w]: one token per w-pixel column strip; wider inputs add columns."""
    from mmseq.encoders import ImageEncoder

    cfg = ImageEncoderConfig(
        image_size=(16, 32), patch_size=[16, 4], n_layers=1, block=tiny_block()
    )
    assert cfg.patch_size == (16, 4) and cfg.grid == (1, 8)
    encoder = ImageEncoder(cfg).eval()
    assert encoder(torch.randn(2, 3, 16, 32)).states.shape == (2, 1 + 8, 32)
    assert encoder(torch.randn(2, 3, 16, 48)).states.shape == (2, 1 + 12, 32)
    # each token sees only its own columns: changing column strip 3 changes token 1 + 3 only
    images = torch.randn(1, 3, 16, 32)
    edited = images.clone()
    edited[..., 12:16] += 1.0
    embed = encoder.patch_embed
    changed = (embed(edited) - embed(images)).abs().flatten(2).sum(1)[0] > 1e-6  # [columns]
    assert changed.tolist() == [i == 3 for i in range(8)]
    with pytest.raises(ValueError, match="W of 4"):
        encoder(torch.randn(1, 3, 16, 30))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("patch_size", [16, 5], "not a multiple of patch_size"),
        ("patch_size", [16, 4, 1], "patch_size: expected a positive int or"),
        ("patch_size", 0, "patch_size: expected a positive int or"),
        ("image_size", [16], "image_size: expected a positive int or"),
    ],
)
def test_bad_patch_and_image_sizes_are_named(field: str, value, message: str) -> None:
    args = {"image_size": (16, 32), "patch_size": 4, field: value}
    with pytest.raises(ValueError, match=message):
        ImageEncoderConfig(**args)

"""`mmseq caption --explain`: per-word cross-attention figures, from a tiny random-weights
checkpoint in the format `mmseq fit` writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry
from mmseq.cli import main
from mmseq.data.tokenizer import train_bpe
from mmseq.decoder import DecoderConfig
from mmseq.encoders import ImageEncoderConfig
from mmseq.explain import (
    ALPHA,
    HEADER,
    LABEL,
    PAD,
    WordAttention,
    cross_attention,
    explanation_paths,
    figure_layout,
    group_words,
    panel_size,
    render_explanation,
)
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.nn import BlockConfig

TEXTS = ["a red square", "a blue circle left of a red square", "a green triangle above"] * 20
BLOCK = BlockConfig(d_model=32, n_heads=2, d_ff=64)
WORD = " red"  # what the rigged decoder always says


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return train_bpe(TEXTS, vocab_size=300)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:  # noqa: ANN001
    """16x32 images in 8 px patches (a 2x4 grid), a 2-layer decoder rigged to say "red" until
    max_new_tokens: its final norm outputs the direction of that token's embedding."""
    torch.manual_seed(0)
    image = ImageEncoderConfig(image_size=(16, 32), patch_size=8, n_layers=1, block=BLOCK)
    decoder = DecoderConfig(vocab_size=tokenizer.vocab_size, n_ctx=16, n_layers=2, block=BLOCK)
    config = ModelConfig(decoder=decoder, image=image)
    model = EncoderDecoder(config)
    (red,) = tokenizer.encode(WORD)
    with torch.no_grad():
        embedding = model.decoder.token_embedding.weight
        embedding[red] = torch.ones(32)
        model.decoder.norm.weight.zero_()
        model.decoder.norm.bias.copy_(embedding[red])
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    ckpt = {"state_dict": state, "mmseq": checkpoint_entry(config, tokenizer, {"image": "caption"})}
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    torch.save(ckpt, path)
    return path


def _picture(path: Path, size: tuple[int, int] = (48, 24)) -> str:
    rng = np.random.default_rng(len(str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


def test_cli_writes_one_figure_per_image(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = [_picture(tmp_path / "a" / "cat.png"), _picture(tmp_path / "b" / "cat.png", (20, 40))]
    out = tmp_path / "explained"
    args = ["caption", "--model", str(checkpoint), "--max-new-tokens", "3", "--beam-size", "1"]
    assert main([*args, "--output-format", "jsonl", "--explain", str(out), *images]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["caption"] for r in rows] == ["red red red"] * 2
    assert [r["explanation"] for r in rows] == [str(out / "cat.png"), str(out / "cat-2.png")]
    for row, image in zip(rows, images, strict=True):
        figure = Image.open(row["explanation"])
        assert figure.format == "PNG" and figure.mode == "RGB"
        panels = 1 + len(row["caption"].split())  # the image, then one per word
        panel = panel_size(Image.open(image).size)
        assert figure.size == figure_layout(panels, panel)[2:]
    assert figure_layout(4, (256, 128))[:2] == (4, 1) and figure_layout(6, (256, 128))[:2] == (4, 2)
    # the checkpoint exported as an mmseq folder captions the same
    folder = tmp_path / "exported"
    assert main(["export", str(checkpoint), str(folder)]) == 0
    capsys.readouterr()
    args = ["caption", "--model", str(folder), "--max-new-tokens", "3", "--beam-size", "1"]
    assert main([*args, "--output-format", "jsonl", *images]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["caption"] for r in rows] == ["red red red"] * 2


def test_attention_rows_are_distributions_over_the_image(checkpoint: Path, tokenizer) -> None:  # noqa: ANN001
    from mmseq.checkpoint import load_trained

    model = load_trained(checkpoint).model
    tokens = [*tokenizer.prefix("caption"), *tokenizer.encode(" red red")]
    attention = cross_attention(model, "image", torch.randn(1, 3, 16, 32), tokens)
    assert attention.shape == (len(tokens), 1 + 2 * 4)  # class token + 2x4 patches
    torch.testing.assert_close(attention.sum(-1), torch.ones(len(tokens)))
    last = cross_attention(model, "image", torch.randn(1, 3, 16, 32), tokens, layers=[1])
    assert last.shape == attention.shape and not torch.allclose(last, attention)


def test_tokens_are_grouped_into_the_words_of_the_text(tokenizer) -> None:  # noqa: ANN001
    text = "a reddish squares circles"  # words the tokenizer splits into several tokens
    ids = tokenizer.encode(text)
    groups = group_words(tokenizer, ids)
    assert [word for word, _ in groups] == text.split()
    assert [i for _, group in groups for i in group] == ids
    assert any(len(group) > 1 for _, group in groups)


def test_heat_lies_on_the_attended_patch() -> None:
    """All attention on patch (row 1, column 2) of a 2x4 grid over a black 128x64 image: the
    word's panel is brightest in that patch's quarter-by-half."""
    grid = torch.zeros(2, 4)
    grid[1, 2] = 1.0
    word = WordAttention("red", [5], grid, prefix_share=0.25)
    figure = np.asarray(render_explanation(Image.new("RGB", (128, 64)), "red", [word]))
    panel = panel_size((128, 64))
    x0, y0 = PAD + panel[0] + PAD, HEADER + LABEL  # the second panel
    heat = figure[y0 : y0 + panel[1], x0 : x0 + panel[0]].astype(float).sum(-1)
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert panel[1] / 2 <= y < panel[1] and panel[0] / 2 <= x < 3 * panel[0] / 4
    assert heat.max() == pytest.approx(ALPHA * (252 + 255 + 164), abs=3)  # the ramp's top
    first = figure[y0 : y0 + panel[1], PAD : PAD + panel[0]]
    assert first.max() == 0  # the image panel itself: black


def test_explanation_paths_keep_names_apart(tmp_path: Path) -> None:
    paths = explanation_paths(["x/a.jpg", "y/a.png", "b.gif", "z/a.jpg"], tmp_path)
    assert [p.name for p in paths] == ["a.png", "a-2.png", "b.png", "a-3.png"]

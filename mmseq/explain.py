"""`mmseq caption --explain DIR`: where the decoder looked for each word of a caption.

The caption's tokens are fed once more through the decoder (teacher forcing, the encoder states
of the image as context) and each layer's cross-attention is kept. The attention a token was
generated with is the row of the position before it. Per word, the rows of its tokens are
averaged, and so are all heads of all decoder layers: single heads specialise (some watch the
class token, some one region), and their mean is the steadiest picture of what the decoder
used. The share that went to the class token is reported apart, and the rest, over the patch
grid, is drawn as a heatmap upsampled onto the image, one panel per word, each panel scaled to
its own maximum.

The figure is drawn with Pillow alone (no plotting library): a header with the caption, then
the image and one panel per word, `COLUMNS` to a row.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from mmseq.data.images import load_image
from mmseq.data.tokenizer import TextTokenizer
from mmseq.inference import Caption, Captioner
from mmseq.model import EncoderDecoder

PANEL = 256  # pixels on the long side of each panel
COLUMNS = 4
PAD = 8
LABEL = 20  # height of the label band above a panel
HEADER = 26  # height of the caption band at the top
ALPHA = 0.6  # heatmap opacity over the image
BACKGROUND = (255, 255, 255)
# a perceptually ordered dark-to-bright ramp (matplotlib's "inferno", 5 stops)
_RAMP = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
)


@dataclass
class WordAttention:
    """A word, its token ids, the decoder's attention over the patch grid while producing it
    (`grid` [gh, gw], summing to 1 - prefix_share) and the share on the class token."""

    word: str
    tokens: list[int]
    grid: Tensor
    prefix_share: float


@torch.inference_mode()
def cross_attention(
    model: EncoderDecoder,
    modality: str,
    inputs: Tensor,
    tokens: Sequence[int],
    layers: Sequence[int] | None = None,
) -> Tensor:
    """Decoder cross-attention probabilities [T, S] for one input (inputs [1, ...]) and a token
    sequence (prefix included) of length T, averaged over heads and over `layers` (None: all).
    Row t is the attention of the step that predicted token t + 1."""
    encoded = model.encode(modality, inputs)
    ids = torch.tensor([list(tokens)], device=encoded.states.device)
    scores: list[Tensor] = []
    model.decoder(ids, encoded.states, encoded.mask, cross_scores=scores)
    chosen = scores if layers is None else [scores[i] for i in layers]
    weights = torch.stack([s[0] for s in chosen])  # [layers, H, T, S]
    if encoded.mask is not None:
        weights = weights.masked_fill(~encoded.mask[0], float("-inf"))
    return weights.softmax(-1).mean((0, 1)).cpu()


def group_words(tokenizer: TextTokenizer, tokens: Sequence[int]) -> list[tuple[str, list[int]]]:
    """Consecutive tokens as words (whitespace-separated in the decoded text): a token joins the
    word it completes, and starts a new one where the text gains a word."""
    words: list[tuple[str, list[int]]] = []
    for i, token in enumerate(tokens):
        text = tokenizer.decode(tokens[: i + 1]).split()
        if not text:
            continue  # nothing visible yet (a space, a partial character)
        if len(text) > len(words):
            words.append((text[-1], [token]))
        else:
            words[-1] = (text[-1], [*words[-1][1], token])
    return words


def word_attention(
    attention: Tensor,
    words: list[tuple[str, list[int]]],
    prefix_len: int,
    n_prefix: int,
    grid: tuple[int, int],
) -> list[WordAttention]:
    """Per word the mean attention rows of its tokens. attention [T, S] from `cross_attention`;
    prefix_len: forced decoder tokens before the caption; n_prefix: encoder states before the
    patch grid (the class token); grid: (gh, gw) patches."""
    out, row = [], prefix_len - 1  # the first generated token was predicted at the last prefix
    for word, ids in words:
        mean = attention[row : row + len(ids)].mean(0)  # [S]
        row += len(ids)
        patches = mean[n_prefix:].reshape(grid)
        out.append(WordAttention(word, ids, patches, float(mean[:n_prefix].sum())))
    return out


def explain_caption(captioner: Captioner, caption: Caption) -> Image.Image:
    """The figure (see `render_explanation`) for a caption made by `captioner`."""
    if caption.tokens is None or caption.caption is None:
        raise ValueError(f"{caption.image}: no caption to explain ({caption.error})")
    image = load_image(caption.image, captioner.max_pixels)
    pixels = captioner.transform(image)[None].to(captioner.device)
    model = captioner.trained.model
    prefix = captioner.prefix
    attention = cross_attention(model, "image", pixels, [*prefix, *caption.tokens])
    patch_h, patch_w = model.config.image.patch_size
    grid = (pixels.shape[2] // patch_h, pixels.shape[3] // patch_w)
    words = group_words(captioner.trained.tokenizer, caption.tokens)
    n_prefix = model.encoders["image"].n_prefix
    return render_explanation(
        image, caption.caption, word_attention(attention, words, len(prefix), n_prefix, grid)
    )


def explanation_paths(images: Sequence[str], out_dir: str | os.PathLike) -> list[Path]:
    """`out_dir/<image stem>.png` per image; a stem seen before gets `-2`, `-3`, ..."""
    seen: dict[str, int] = {}
    paths = []
    for image in images:
        stem = Path(image).stem
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        paths.append(Path(out_dir) / f"{name}.png")
    return paths


def render_explanation(image: Image.Image, caption: str, words: list[WordAttention]) -> Image.Image:
    """The figure: the caption on top, then the image and one heatmap panel per word."""
    panel = panel_size(image.size)
    shown = image.convert("RGB").resize(panel, Image.Resampling.BICUBIC)
    panels = [("image", shown)] + [(_label(w), overlay(shown, w.grid)) for w in words]
    columns, rows, width, height = figure_layout(len(panels), panel)
    figure = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    font = _font()
    draw.text((PAD, PAD // 2), _fit(draw, caption, width - 2 * PAD, font), (0, 0, 0), font=font)
    for i, (label, picture) in enumerate(panels):
        x = PAD + (i % columns) * (panel[0] + PAD)
        y = HEADER + (i // columns) * (LABEL + panel[1] + PAD)
        draw.text((x, y + 2), _fit(draw, label, panel[0], font), (0, 0, 0), font=font)
        figure.paste(picture, (x, y + LABEL))
    return figure


def panel_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a panel: the image's aspect ratio, `PANEL` on the long side (the
    short side at least 16 px)."""
    w, h = image_size
    scale = PANEL / max(w, h)
    return max(16, round(w * scale)), max(16, round(h * scale))


def figure_layout(n_panels: int, panel: tuple[int, int]) -> tuple[int, int, int, int]:
    """(columns, rows, width, height) of a figure of `n_panels` panels of size `panel`."""
    columns = min(COLUMNS, n_panels)
    rows = math.ceil(n_panels / columns)
    width = columns * panel[0] + (columns + 1) * PAD
    height = HEADER + rows * (LABEL + panel[1] + PAD)
    return columns, rows, width, height


def overlay(image: Image.Image, grid: Tensor) -> Image.Image:
    """`grid` [gh, gw] upsampled (bilinear) to the image, scaled to its maximum, coloured with
    the ramp and blended over a grey version of the image."""
    w, h = image.size
    heat = F.interpolate(grid[None, None].float(), size=(h, w), mode="bilinear")[0, 0]
    heat = (heat / heat.max().clamp_min(1e-12)).clamp(0, 1).numpy()
    colours = np.stack(
        [np.interp(heat, np.linspace(0, 1, len(_RAMP)), _RAMP[:, c]) for c in range(3)], -1
    )
    grey = np.asarray(image.convert("L").convert("RGB"), dtype=np.float64)
    blended = (1 - ALPHA) * grey + ALPHA * colours
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def _label(word: WordAttention) -> str:
    return f"{word.word} (cls {word.prefix_share:.0%})" if word.prefix_share else word.word


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: ImageFont.ImageFont) -> str:
    """`text`, cut short with "..." to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."

"""`mmseq caption --explain DIR` and `mmseq transcribe --explain DIR`: where the decoder looked
for each word, as a PNG per input.

Captions: where the decoder looked for each word of a caption.

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

Speech: a word-by-time alignment plot made of what word timestamps use (`mmseq.whisper.timing`):
the cross-attention of the alignment heads, normalised and median-filtered, and the DTW path
through it. The transcriber keeps each 30 s window's alignment (`keep_alignments`); per word
(punctuation merged, as word timestamps list them) the rows of its tokens are averaged into one
row of the heat map, and the path is drawn as a staircase: across each word's row from where
the path reaches its first token to where it reaches the next word's. The figure has one panel
per window, stacked, on one time scale: a window's words attend only to its own 30 s, so one
plot over the whole file would be block-diagonal, mostly empty, and grow with the square of
the length, while panels grow linearly and keep every label legible.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from mmseq.data.tokenizer import TextTokenizer
from mmseq.model import EncoderDecoder
from mmseq.transcription import Transcript
from mmseq.whisper.timing import Alignment, merge_punctuation
from mmseq.whisper.tokenizer import TIME_PRECISION

if TYPE_CHECKING:  # Lightning and torchvision, seconds to import: not for speech figures
    from mmseq.inference import Caption, Captioner

log = logging.getLogger(__name__)

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
# speech figures
ROW = 18  # pixels per word
TIME_WIDTH = 900  # pixels of the time axis for the longest window of a file
MAX_LABEL = 220  # pixels at most for the word column
AXIS = 34  # ticks and their labels under a panel
TICK_SPACING = 60  # pixels at least between labelled ticks
PATH = (0, 230, 255)  # the DTW path: cyan, apart from every colour of the ramp
AXIS_TITLE = "time (s)"
# a VAD chunk's axis: its speech regions back to back, from the first one's start
SPEECH_AXIS_TITLE = "speech (s)"


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
    from mmseq.data.images import load_image  # torchvision: only for captions

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
    grey = np.asarray(image.convert("L").convert("RGB"), dtype=np.float64)
    blended = (1 - ALPHA) * grey + ALPHA * _colourize(heat)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def _colourize(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB floats in [0, 255] along the ramp, shape [..., 3]."""
    stops = np.linspace(0, 1, len(_RAMP))
    return np.stack([np.interp(heat, stops, _RAMP[:, c]) for c in range(3)], -1)


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


@dataclass
class WordSpan:
    """A word in one window: the mean row of its tokens in the alignment matrix (`heat`
    [frames]) and where the DTW path reaches its first token and the next word's (seconds of
    the recording)."""

    word: str
    start: float
    end: float
    heat: np.ndarray


@dataclass
class WindowPanel:
    """One window's part of the figure: `frames` alignment frames from `start` seconds; with
    `speech_time` (a VAD chunk) the frames are speech with the pauses cut out, so its times
    past `start` count speech, not the recording."""

    start: float
    frames: int
    words: list[WordSpan]
    speech_time: bool = False

    @property
    def end(self) -> float:
        return self.start + self.frames * TIME_PRECISION


def window_panel(alignment: Alignment) -> WindowPanel:
    """A window's words as `--word-timestamps` lists them (punctuation joined to its word),
    each with its heat row and its span on the DTW path."""
    timings = [replace(w, tokens=list(w.tokens)) for w in alignment.words]
    merge_punctuation(timings)
    n_rows = alignment.matrix.shape[0]  # text tokens + <|endoftext|>
    first_step = np.searchsorted(alignment.token_index, np.arange(n_rows))
    reached = alignment.offset + alignment.frame_index[first_step] * TIME_PRECISION
    words, row = [], 0
    for timing in timings:
        a, row = row, row + len(timing.tokens)
        if a == row:
            continue  # punctuation merged into a neighbour
        heat = alignment.matrix[a:row].mean(0)
        words.append(WordSpan(timing.word.strip(), float(reached[a]), float(reached[row]), heat))
    return WindowPanel(alignment.offset, alignment.matrix.shape[1], words, alignment.speech_time)


def explain_transcript(transcript: Transcript) -> Image.Image:
    """The alignment figure of a transcript made with `keep_alignments=True`."""
    if transcript.error:
        raise ValueError(f"{transcript.source}: no transcript to explain ({transcript.error})")
    panels = [window_panel(a) for a in transcript.alignments]
    return render_alignment(Path(transcript.source).name, [p for p in panels if p.words])


def render_alignment(title: str, panels: list[WindowPanel]) -> Image.Image:
    """The figure: `title`, then per window the word labels, the heat map (each panel scaled
    to its own range), the DTW path, and a time axis in seconds of the recording. Windows that
    would make the image larger than Pillow opens without a decompression-bomb warning
    (`Image.MAX_IMAGE_PIXELS`: some 20 minutes of continuous speech) are left out, with a
    warning."""
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    texts = [AXIS_TITLE, SPEECH_AXIS_TITLE] + [w.word for p in panels for w in p.words]
    label_width = min(MAX_LABEL, max(round(measure.textlength(t, font=font)) for t in texts))
    width = label_width + TIME_WIDTH + 6 * PAD
    heights = [panel_height(p, len(panels)) for p in panels]
    n_shown = _panels_that_fit(title, panels, heights, width)
    shown, heights = panels[:n_shown], heights[:n_shown] or [LABEL + PAD]
    figure = Image.new("RGB", (width, HEADER + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    header = f"{title}: cross-attention per word, DTW path in cyan"
    draw.text((PAD, PAD // 2), _fit(draw, header, width - 2 * PAD, font), (0, 0, 0), font=font)
    if not panels:
        draw.text((PAD, HEADER), "no speech found: nothing to align", (0, 0, 0), font=font)
        return figure
    scale = TIME_WIDTH / max(p.end - p.start for p in panels)  # pixels per second
    y = HEADER
    for i, (panel, height) in enumerate(zip(shown, heights, strict=True)):
        top = y
        if len(panels) > 1:
            draw.text((PAD, y + 2), panel_title(panel, i, len(panels)), (0, 0, 0), font=font)
            top += LABEL
        _draw_panel(figure, draw, font, panel, (2 * PAD + label_width, top), scale)
        y += height
    return figure


def panel_title(panel: WindowPanel, index: int, n_panels: int) -> str:
    """The title of the index-th (from 0) of n_panels panels: the window's span of the
    recording, or for a VAD chunk the seconds of speech it holds and where it starts (its end
    is no time of the recording: the pauses between its regions are cut out)."""
    if panel.speech_time:
        return (
            f"speech chunk {index + 1} of {n_panels}: {panel.end - panel.start:.1f} s of speech "
            f"from {panel.start:.1f} s, pauses cut out"
        )
    return f"window {index + 1} of {n_panels}: {panel.start:.1f}-{panel.end:.1f} s"


def _panels_that_fit(title: str, panels: list[WindowPanel], heights: list[int], width: int) -> int:
    """How many of the first panels (of `heights` pixels) keep the figure within
    `Image.MAX_IMAGE_PIXELS` (at least one)."""
    limit = Image.MAX_IMAGE_PIXELS or math.inf
    height, n = HEADER, 0
    while n < len(panels) and (n == 0 or width * (height + heights[n]) <= limit):
        height += heights[n]
        n += 1
    if n < len(panels):
        log.warning(
            "%s: the alignment figure shows windows 1-%d of %d (up to %.0f s): a taller image "
            "would pass Pillow's size limit",
            title,
            n,
            len(panels),
            panels[n - 1].end,
        )
    return n


def panel_height(panel: WindowPanel, n_panels: int) -> int:
    """Pixels of one window's panel in a figure of `n_panels` (a title band when several)."""
    return (LABEL if n_panels > 1 else 0) + len(panel.words) * ROW + AXIS + PAD


def _path_points(
    panel: WindowPanel, origin: tuple[int, int], scale: float
) -> list[tuple[int, int]]:
    """The DTW path as drawn: across the middle of each word's row from its start to its end,
    the heat map's top-left at `origin`, `scale` pixels per second."""
    x0, y0 = origin
    points = []
    for i, word in enumerate(panel.words):
        y = y0 + i * ROW + ROW // 2
        for t in (word.start, word.end):
            points.append((x0 + round((t - panel.start) * scale), y))
    return points


def _draw_panel(
    figure: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont,
    panel: WindowPanel,
    origin: tuple[int, int],
    scale: float,
) -> None:
    x0, y0 = origin
    size = (max(1, round(panel.frames * TIME_PRECISION * scale)), len(panel.words) * ROW)
    heat = np.stack([w.heat for w in panel.words])  # [words, frames]
    low, high = heat.min(), heat.max()
    heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    rgb = np.clip(np.rint(_colourize(heat)), 0, 255).astype(np.uint8)
    picture = Image.fromarray(rgb).resize((size[0], len(panel.words)), Image.Resampling.BOX)
    figure.paste(picture.resize(size, Image.Resampling.NEAREST), origin)
    draw.rectangle((x0 - 1, y0 - 1, x0 + size[0], y0 + size[1]), outline=(0, 0, 0))
    draw.line(_path_points(panel, origin, scale), fill=PATH, width=2)
    _, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    for i, word in enumerate(panel.words):
        label = _fit(draw, word.word, x0 - 2 * PAD, font)
        y = y0 + i * ROW + (ROW - top - bottom) // 2  # centred on the row
        draw.text((x0 - PAD - draw.textlength(label, font=font), y), label, (0, 0, 0), font=font)
    _draw_time_axis(draw, font, panel, (x0, y0 + size[1]), scale)


def _draw_time_axis(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont,
    panel: WindowPanel,
    origin: tuple[int, int],
    scale: float,
) -> None:
    """Ticks at round seconds of the recording, at least TICK_SPACING pixels apart."""
    x0, y0 = origin
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10) if s * scale >= TICK_SPACING), 30)
    first, last = math.ceil(panel.start / step - 1e-6), math.floor(panel.end / step + 1e-6)
    for k in range(first, last + 1):
        x = x0 + round((k * step - panel.start) * scale)
        draw.line((x, y0, x, y0 + 4), fill=(0, 0, 0))
        text = f"{round(k * step, 1):g}"
        draw.text((x - draw.textlength(text, font=font) / 2, y0 + 6), text, (0, 0, 0), font=font)
    title = SPEECH_AXIS_TITLE if panel.speech_time else AXIS_TITLE
    left = x0 - PAD - draw.textlength(title, font=font)
    draw.text((left, y0 + 6), title, (0, 0, 0), font=font)

"""The `digits` captioning task: strings of 1-4 handwritten digits, captioned with their words.

The digits are scikit-learn's bundled handwriting (`load_digits`: 1,797 images of 8x8 pixels,
0-16 ink, white on black). Each digit is upscaled to 32x32 with a randomly chosen filter (from
blocky to smooth), and 1-4 of them are placed left to right on a black 32x128 (height x width)
RGB canvas, 0-4 px apart where the width allows (four digits fill it exactly, so they touch),
the group shifted at random. "four one seven" is the caption of 4, 1, 7.

Handwriting never crosses splits: training strings use source images 0-1199 only, validation
1200-1499 and test 1500-1796, so the test measures reading unseen handwriting (and model
selection on validation never sees a test digit).

    OUT/digits/images/{split}_{i:05d}.png
    OUT/digits/train.jsonl, val.jsonl, test.jsonl   {"image_filepath", "caption", "digits",
                                                     "sources"} (source image indices)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from mmseq.serialization import atomic_open, atomic_path

HEIGHT, WIDTH = 32, 128
DIGIT_SIZE = 32
MAX_DIGITS = 4
MAX_GAP = 4
INK_MAX = 16  # load_digits pixel values run 0..16
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SOURCES = {
    "train": range(0, 1200),
    "val": range(1200, 1500),
    "test": range(1500, 1797),
}
# Pillow's upscaling filters, blocky to smooth: the model must not rely on one look.
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class DigitString:
    """Source image indices in reading order, their labels, the upscaling filter of each,
    the gaps between neighbours and the left edge of the first digit (pixels)."""

    sources: tuple[int, ...]
    digits: tuple[int, ...]
    filters: tuple[str, ...]
    gaps: tuple[int, ...]
    left: int

    @property
    def caption(self) -> str:
        return " ".join(WORDS[d] for d in self.digits)

    @property
    def boxes(self) -> list[tuple[int, int]]:
        """(x0, x1) of each digit's 32 px cell, end exclusive."""
        x, out = self.left, []
        for i in range(len(self.sources)):
            out.append((x, x + DIGIT_SIZE))
            x += DIGIT_SIZE + (self.gaps[i] if i < len(self.gaps) else 0)
        return out


@cache
def load_sources() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images uint8 [1797, 8, 8] scaled to 0-255, labels int [1797]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(data.images * (255 / INK_MAX)).astype(np.uint8)
    return images, data.target.astype(np.int64)


def sample_string(rng: random.Random, pool: Sequence[int], labels: np.ndarray) -> DigitString:
    """1-4 digits drawn from the source images in `pool`, laid out on the canvas."""
    n = rng.randint(1, MAX_DIGITS)
    sources = tuple(rng.choice(pool) for _ in range(n))
    slack = WIDTH - n * DIGIT_SIZE
    gaps = []
    for _ in range(n - 1):
        gaps.append(rng.randint(0, min(MAX_GAP, slack)))
        slack -= gaps[-1]
    return DigitString(
        sources=sources,
        digits=tuple(int(labels[s]) for s in sources),
        filters=tuple(rng.choice(tuple(FILTERS)) for _ in range(n)),
        gaps=tuple(gaps),
        left=rng.randint(0, slack),
    )


def render_string(string: DigitString, images: np.ndarray) -> np.ndarray:
    """The canvas: uint8 [32, 128, 3], white digits on black."""
    canvas = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for source, name, (x0, x1) in zip(string.sources, string.filters, string.boxes, strict=True):
        digit = Image.fromarray(images[source]).resize((DIGIT_SIZE, DIGIT_SIZE), FILTERS[name])
        canvas[:, x0:x1] = np.maximum(canvas[:, x0:x1], np.asarray(digit))
    return np.repeat(canvas[:, :, None], 3, axis=2)


def make_digits(
    folder: str | Path,
    counts: dict[str, int],
    seed: int = 0,
    on_item: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """Write `counts[split]` images and a manifest per split (train, val, test) under `folder`
    (see the module docstring); return the manifests' rows. Each item draws its own seeded
    stream, so an item depends only on `seed`, its split and its index. `on_item(split)` is
    called after each image (progress bars)."""
    unknown = sorted(set(counts) - set(SOURCES))
    if unknown:
        raise ValueError(f"digits splits: expected some of {sorted(SOURCES)}, got {unknown}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, labels = load_sources()
    manifests = {}
    for split, n in counts.items():
        rows = []
        pool = SOURCES[split]
        for i in range(n):
            string = sample_string(random.Random(f"{seed}/digits/{split}/{i}"), pool, labels)
            name = f"images/{split}_{i:05d}.png"
            # made durable with the rest of the part, before its stamp (mmseq.data.demo)
            with atomic_path(folder / name, durable=False) as tmp:
                Image.fromarray(render_string(string, images)).save(tmp, format="PNG")
            digits = "".join(map(str, string.digits))
            row = {"image_filepath": name, "caption": string.caption, "digits": digits}
            rows.append(row | {"sources": list(string.sources)})
            if on_item is not None:
                on_item(split)
        with atomic_open(folder / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)  # a line at a time
        manifests[split] = rows
    return manifests

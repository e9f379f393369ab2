"""Drawing `shapes` scenes (`mmseq.data.shapes`): two independent renderers of one spec.

- "pil": PIL.ImageDraw straight onto the picture, at 1x (aliased) or supersampled 2-4x and
  downscaled with a random filter (box, bilinear, Hamming, bicubic or Lanczos); triangles are
  isosceles, as tall as wide, pointing up.
- "mask": numpy coverage from 1-16 sub-pixel samples per pixel, composited over the background;
  squares and equilateral triangles turned by up to 10 degrees, discs a little under the box.

A captioner trained on one renderer should still read the other's pictures: that is what the
second renderer is for. Both jitter colours slightly and return each object's coverage, so tests
can check the layout from the pixels.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mmseq.data.shapes import BACKGROUNDS, COLOURS, IMAGE_SIZE, Scene, ShapeObject

RENDERERS = ("pil", "mask")
COLOUR_JITTER = 18  # per channel, out of 255
BACKGROUND_JITTER = 10
_FILTERS = (
    Image.Resampling.BOX,
    Image.Resampling.BILINEAR,
    Image.Resampling.HAMMING,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
)
# Unit outlines the "mask" renderer turns and fits into the box.
_SQUARE = np.array([(-1, -1), (-1, 1), (1, 1), (1, -1)], np.float64)
_TRIANGLE = np.array([(0, -1), (-math.sqrt(3) / 2, 0.5), (math.sqrt(3) / 2, 0.5)], np.float64)


@dataclass
class Rendering:
    """image: [H, W, 3] uint8 RGB; coverage: [n_objects, H, W] float32 in [0, 1], how much of
    each pixel each object covers (objects in caption order)."""

    image: np.ndarray
    coverage: np.ndarray


def render(scene: Scene, rng: random.Random, renderer: str = "pil") -> Rendering:
    """Draw `scene` with `renderer` ("pil" or "mask"); `rng` picks the jitter and filters."""
    if renderer == "pil":
        return _render_pil(scene, rng)
    if renderer == "mask":
        return _render_mask(scene, rng)
    raise ValueError(f"unknown shapes renderer {renderer!r}; expected one of {RENDERERS}")


def _jitter(rgb: tuple[int, int, int], amount: int, rng: random.Random) -> tuple[int, ...]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)


def _render_pil(scene: Scene, rng: random.Random) -> Rendering:
    scale = rng.choice((1, 2, 3, 4))
    size = IMAGE_SIZE * scale
    background = _jitter(BACKGROUNDS[scene.background], BACKGROUND_JITTER, rng)
    image = Image.new("RGB", (size, size), background)
    masks = []
    for obj in scene.objects:
        mask = Image.new("L", (size, size), 0)
        colour = _jitter(COLOURS[obj.colour], COLOUR_JITTER, rng)
        _draw_pil(ImageDraw.Draw(image), obj, scale, colour)
        _draw_pil(ImageDraw.Draw(mask), obj, scale, 255)
        masks.append(mask)
    if scale > 1:
        resample = rng.choice(_FILTERS)
        image, *masks = (im.resize((IMAGE_SIZE,) * 2, resample) for im in (image, *masks))
    coverage = np.stack([np.asarray(m, np.float32) / 255 for m in masks])
    return Rendering(np.asarray(image, np.uint8).copy(), coverage)


def _draw_pil(draw: ImageDraw.ImageDraw, obj: ShapeObject, scale: int, fill: object) -> None:
    # PIL includes the end coordinate, so the last pixel inside the box is end * scale - 1.
    x0, y0, x1, y1 = (v * scale for v in obj.box)
    x1, y1 = x1 - 1, y1 - 1
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)


def _render_mask(scene: Scene, rng: random.Random) -> Rendering:
    samples = rng.choice((1, 2, 3, 4))  # per axis
    grid = (np.arange(IMAGE_SIZE * samples) + 0.5) / samples
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    coverage = np.stack(
        [
            _inside(obj, xs, ys, rng)
            .reshape(IMAGE_SIZE, samples, IMAGE_SIZE, samples)
            .mean(axis=(1, 3), dtype=np.float32)
            for obj in scene.objects
        ]
    )
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    image[:] = _jitter(BACKGROUNDS[scene.background], BACKGROUND_JITTER, rng)
    for obj, cover in zip(scene.objects, coverage, strict=True):
        colour = np.array(_jitter(COLOURS[obj.colour], COLOUR_JITTER, rng), np.float32)
        image += cover[..., None] * (colour - image)
    return Rendering(np.rint(image).clip(0, 255).astype(np.uint8), coverage)


def _inside(obj: ShapeObject, xs: np.ndarray, ys: np.ndarray, rng: random.Random) -> np.ndarray:
    """Which sample points ([h, w] coordinates in pixels) fall inside `obj`."""
    (cx, cy), side = obj.centre, obj.box[2] - obj.box[0]
    if obj.shape == "circle":
        radius = side / 2 * rng.uniform(0.92, 1.0)
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    outline = _SQUARE if obj.shape == "square" else _TRIANGLE
    turn = math.radians(rng.uniform(-10, 10))
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    points = outline @ rotation.T
    # Scale the turned outline to fill the box along its longer side, centred in the box.
    low, high = points.min(axis=0), points.max(axis=0)
    points = (points - (low + high) / 2) * (side / (high - low).max()) + (cx, cy)
    # Inside a convex outline: on the same side of every edge.
    sides = np.stack(
        [
            (qx - px) * (ys - py) - (qy - py) * (xs - px)
            for (px, py), (qx, qy) in zip(points, np.roll(points, -1, axis=0), strict=True)
        ]
    )
    return (sides >= 0).all(axis=0) | (sides <= 0).all(axis=0)

"""The `shapes` captioning task: scenes of one or two coloured shapes, and their captions.

A scene is a 64x64 picture on a white, black or gray background. Its caption follows

    caption  := object | object " " relation " " object
    object   := "a " size " " colour " " shape
    relation := "left of" | "above"

e.g. "a large red circle" or "a small blue square left of a large green triangle". The
first-named object is the left (or upper) one, objects never overlap, and the relation is
unambiguous: the offset along the named axis is at least twice the offset along the other.

Six (colour, shape) pairs, `HELD_OUT_PAIRS`, never occur in training scenes; the held-out test
set holds scenes with at least one of them, to measure compositional generalisation. Pictures
are drawn by `mmseq.data.shapes_render`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import product

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 225),
    "yellow": (240, 210, 20),
    "purple": (140, 50, 180),
    "orange": (250, 140, 20),
}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
# Side of an object's square bounding box in pixels (inclusive ranges). The gap between the
# two ranges keeps small and large apart under any jitter or antialiasing.
SIZES = {"small": (10, 16), "large": (22, 28)}
RELATIONS = ("left of", "above")
HELD_OUT_PAIRS = frozenset(
    {
        ("red", "triangle"),
        ("green", "square"),
        ("blue", "circle"),
        ("yellow", "triangle"),
        ("purple", "square"),
        ("orange", "circle"),
    }
)
ALL_PAIRS = tuple(product(COLOURS, SHAPES))
SEEN_PAIRS = tuple(pair for pair in ALL_PAIRS if pair not in HELD_OUT_PAIRS)

MARGIN = 2  # free pixels at the image border
GAP = 4  # free pixels at least between two boxes: resampling filters spread an edge ~2 px
ONE_OBJECT_PROBABILITY = 0.35


@dataclass(frozen=True)
class ShapeObject:
    """One object; `box` is (x0, y0, x1, y1) in pixels, end exclusive, always square."""

    size: str
    colour: str
    shape: str
    box: tuple[int, int, int, int]

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass(frozen=True)
class Scene:
    """Objects in caption order (the first is the left/upper one) and their relation."""

    objects: tuple[ShapeObject, ...]
    relation: str | None
    background: str

    @property
    def caption(self) -> str:
        if self.relation is None:
            return self.objects[0].phrase
        first, second = self.objects
        return f"{first.phrase} {self.relation} {second.phrase}"


def sample_scene(rng: random.Random, heldout: bool = False) -> Scene:
    """A random scene. Without `heldout` only `SEEN_PAIRS` appear; with it at least one object
    is a held-out pair (any other object may be any pair)."""
    n_objects = 1 if rng.random() < ONE_OBJECT_PROBABILITY else 2
    if heldout:
        pairs = [rng.choice(ALL_PAIRS) for _ in range(n_objects)]
        pairs[rng.randrange(n_objects)] = rng.choice(sorted(HELD_OUT_PAIRS))
    else:
        pairs = [rng.choice(SEEN_PAIRS) for _ in range(n_objects)]
    sizes = [rng.choice(tuple(SIZES)) for _ in range(n_objects)]
    sides = [rng.randint(*SIZES[size]) for size in sizes]
    relation = rng.choice(RELATIONS) if n_objects == 2 else None
    boxes = _place(rng, sides, relation)
    objects = tuple(
        ShapeObject(size, colour, shape, box)
        for size, (colour, shape), box in zip(sizes, pairs, boxes, strict=True)
    )
    return Scene(objects, relation, rng.choice(tuple(BACKGROUNDS)))


def _place(
    rng: random.Random, sides: list[int], relation: str | None
) -> list[tuple[int, int, int, int]]:
    """Boxes for objects of these sides: the first left of / above the second."""
    room = IMAGE_SIZE - 2 * MARGIN
    if relation is None:
        (side,) = sides
        x, y = (MARGIN + rng.randint(0, room - side) for _ in range(2))
        return [(x, y, x + side, y + side)]
    # Along the relation's axis: split the slack at random before, between and after.
    slack = room - sum(sides) - GAP
    before, between = sorted(rng.randint(0, slack) for _ in range(2))
    main = [MARGIN + before, MARGIN + between + sides[0] + GAP]
    main_offset = (main[1] + sides[1] / 2) - (main[0] + sides[0] / 2)
    # Across it: free, as long as the offset stays at most half the main one (otherwise
    # "left of" could just as well read "above").
    for _ in range(100):
        cross = [MARGIN + rng.randint(0, room - side) for side in sides]
        if abs((cross[1] + sides[1] / 2) - (cross[0] + sides[0] / 2)) <= main_offset / 2:
            break
    else:  # not reached in practice; centre both across the axis
        cross = [(IMAGE_SIZE - side) // 2 for side in sides]
    if relation == "above":
        main, cross = cross, main
    return [(x, y, x + s, y + s) for x, y, s in zip(main, cross, sides, strict=True)]


_OBJECT = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
_CAPTION = re.compile(rf"{_OBJECT}(?: ({'|'.join(RELATIONS)}) {_OBJECT})?")


def parse_caption(caption: str) -> tuple[list[tuple[str, str, str]], str | None]:
    """`caption` -> ([(size, colour, shape), ...] in caption order, relation or None).

    Raises:
        ValueError: `caption` does not follow the shapes grammar.
    """
    match = _CAPTION.fullmatch(caption)
    if match is None:
        raise ValueError(
            f"not a shapes caption: {caption!r} (expected 'a <size> <colour> <shape>', "
            f"optionally followed by ' left of ' or ' above ' and a second such object)"
        )
    groups = match.groups()
    objects = [groups[0:3]] if groups[3] is None else [groups[0:3], groups[4:7]]
    return [tuple(obj) for obj in objects], groups[3]

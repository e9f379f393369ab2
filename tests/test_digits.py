"""The digits captioning task: handwriting kept apart by split, captions that spell the digits,
the canvas layout read back from the pixels, and determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmseq.data.digits import (
    DIGIT_SIZE,
    FILTERS,
    HEIGHT,
    MAX_DIGITS,
    MAX_GAP,
    SOURCES,
    WIDTH,
    WORDS,
    load_sources,
    make_digits,
    render_string,
    sample_string,
)

COUNTS = {"train": 40, "val": 12, "test": 12}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    folder = tmp_path_factory.mktemp("digits")
    return folder, make_digits(folder, COUNTS, seed=3)


def _strings(split: str, n: int = 400) -> list:
    labels = load_sources()[1]
    return [
        sample_string(random.Random(f"t/{split}/{i}"), SOURCES[split], labels) for i in range(n)
    ]


def test_source_images_are_split_without_overlap(written: tuple[Path, dict]) -> None:
    ranges = [set(SOURCES[s]) for s in ("train", "val", "test")]
    assert set().union(*ranges) == set(range(len(load_sources()[0]))) == set(range(1797))
    assert sum(len(r) for r in ranges) == 1797  # pairwise disjoint
    assert max(SOURCES["train"]) == 1199
    _, manifests = written
    for split, rows in manifests.items():
        assert len(rows) == COUNTS[split]
        assert all(set(row["sources"]) <= set(SOURCES[split]) for row in rows), split


def test_captions_spell_the_source_labels(written: tuple[Path, dict]) -> None:
    folder, manifests = written
    labels = load_sources()[1]
    for split, rows in manifests.items():
        assert [json.loads(line) for line in (folder / f"{split}.jsonl").open()] == rows
        for row in rows:
            words = row["caption"].split()
            assert 1 <= len(words) <= MAX_DIGITS
            assert words == [WORDS[labels[s]] for s in row["sources"]]
            assert row["digits"] == "".join(str(WORDS.index(w)) for w in words)
    assert WORDS[4] == "four" and " ".join(WORDS[d] for d in (4, 1, 7)) == "four one seven"


def test_canvas_geometry_read_from_the_pixels() -> None:
    images = load_sources()[0]
    strings = _strings("train")
    assert {len(s.sources) for s in strings} == set(range(1, MAX_DIGITS + 1))
    assert {f for s in strings for f in s.filters} == set(FILTERS)
    for string in strings:
        canvas = render_string(string, images)
        assert canvas.shape == (HEIGHT, WIDTH, 3) and canvas.dtype == np.uint8
        assert (canvas == canvas[:, :, :1]).all()  # gray as RGB
        boxes = string.boxes
        assert boxes[0][0] >= 0 and boxes[-1][1] <= WIDTH
        assert all(
            b[0] - a[1] == g for a, b, g in zip(boxes[:-1], boxes[1:], string.gaps, strict=True)
        )
        assert all(0 <= g <= MAX_GAP for g in string.gaps)
        ink = canvas[:, :, 0].max(axis=0) > 0  # columns with ink
        inside = np.zeros(WIDTH, dtype=bool)
        for x0, x1 in boxes:
            inside[x0:x1] = True
            assert ink[x0:x1].any()  # every digit is drawn
        assert not ink[~inside].any()  # black around them
        assert canvas.mean() < 128  # white on black


def test_a_nearest_upscaled_digit_is_its_source_pixels_4x4() -> None:
    images = load_sources()[0]
    string = next(s for s in _strings("val") if s.filters[0] == "nearest" and len(s.sources) == 1)
    x0, x1 = string.boxes[0]
    cell = render_string(string, images)[:, x0:x1, 0]
    scale = DIGIT_SIZE // 8
    np.testing.assert_array_equal(cell, np.kron(images[string.sources[0]], np.ones((scale, scale))))
    assert images.max() == 255 and images.min() == 0  # 0..16 ink scaled to the full range


def test_four_digits_fill_the_width_and_touch() -> None:
    four = [s for s in _strings("test") if len(s.sources) == 4]
    assert four and all(s.gaps == (0, 0, 0) and s.left == 0 for s in four)


def test_images_are_deterministic_per_seed(written: tuple[Path, dict], tmp_path: Path) -> None:
    folder, manifests = written
    make_digits(tmp_path / "again", {"val": 12}, seed=3)
    make_digits(tmp_path / "other", {"val": 12}, seed=4)
    for row in manifests["val"]:
        name = row["image_filepath"]
        assert (folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert (folder / "val.jsonl").read_bytes() == (tmp_path / "again" / "val.jsonl").read_bytes()
    assert (folder / "val.jsonl").read_bytes() != (tmp_path / "other" / "val.jsonl").read_bytes()
    image = Image.open(folder / manifests["train"][0]["image_filepath"])
    assert (image.mode, image.size) == ("RGB", (WIDTH, HEIGHT))


def test_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected some of \\['test', 'train', 'val'\\]"):
        make_digits(tmp_path, {"dev": 3})

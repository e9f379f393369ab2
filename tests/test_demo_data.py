"""The embedded demo data: shapes scenes and captions, speech sentences, and `make_demo`."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mmseq.data.demo as demo
from mmseq.data.demo import make_demo
from mmseq.data.demo_speech import TEST_VOICES, TRAIN_VOICES
from mmseq.data.sentences import catalog_sentences, demo_sentences, is_speakable
from mmseq.data.shapes import (
    COLOURS,
    GAP,
    HELD_OUT_PAIRS,
    IMAGE_SIZE,
    MARGIN,
    SEEN_PAIRS,
    SHAPES,
    parse_caption,
    sample_scene,
)
from mmseq.data.shapes_render import COLOUR_JITTER, RENDERERS, render

TINY = dict(
    n_shapes_train=12,
    n_shapes_val=3,
    n_shapes_test=6,
    n_speech_train=4,
    n_speech_val=2,
    n_speech_test=3,
    n_digits_train=6,
    n_digits_val=2,
    n_digits_test=3,
    vocab_size=300,
    progress=False,
)


def _scenes(n: int, heldout: bool = False, salt: str = "") -> list:
    return [sample_scene(random.Random(f"{salt}{i}"), heldout) for i in range(n)]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- captions ---------------------------------------------------------------------------


def test_captions_parse_back_to_their_scenes() -> None:
    for scene in _scenes(300) + _scenes(100, heldout=True):
        objects, relation = parse_caption(scene.caption)
        assert objects == [(o.size, o.colour, o.shape) for o in scene.objects]
        assert relation == scene.relation
        assert (relation is None) == (len(objects) == 1)


def test_caption_examples() -> None:
    assert parse_caption("a large red circle") == ([("large", "red", "circle")], None)
    assert parse_caption("a small blue square left of a large green triangle") == (
        [("small", "blue", "square"), ("large", "green", "triangle")],
        "left of",
    )


@pytest.mark.parametrize(
    "caption",
    [
        "a red circle",
        "a large red circle right of a small blue square",
        "a large red circle left of",
        "A large red circle",
        "a large red circle ",
        "a huge red circle",
    ],
)
def test_parse_caption_refuses_other_text(caption: str) -> None:
    with pytest.raises(ValueError, match="not a shapes caption"):
        parse_caption(caption)


def test_held_out_pairs_split_every_colour_and_shape() -> None:
    assert len(HELD_OUT_PAIRS) == 6 and len(SEEN_PAIRS) == 12
    assert {c for c, _ in SEEN_PAIRS} == set(COLOURS) == {c for c, _ in HELD_OUT_PAIRS}
    assert {s for _, s in SEEN_PAIRS} == set(SHAPES) == {s for _, s in HELD_OUT_PAIRS}


def test_scenes_keep_held_out_pairs_apart() -> None:
    for scene in _scenes(1000):
        assert all((o.colour, o.shape) not in HELD_OUT_PAIRS for o in scene.objects)
    for scene in _scenes(300, heldout=True):
        assert any((o.colour, o.shape) in HELD_OUT_PAIRS for o in scene.objects)
    relations = {scene.relation for scene in _scenes(200)}
    assert relations == {None, "left of", "above"}


# --- rendering ------------------------------------------------------------------------------


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("renderer", RENDERERS)
def test_layout_read_from_the_pixels(renderer: str) -> None:
    """Relations, separation, sizes and colours hold in the rendered picture itself."""
    for i, scene in enumerate(_scenes(150, salt="layout") + _scenes(50, True, "layout")):
        drawn = render(scene, random.Random(i), renderer)
        assert drawn.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and drawn.image.dtype == np.uint8
        solid = drawn.coverage > 0.5
        assert not ((drawn.coverage > 0.25).sum(axis=0) > 1).any(), scene.caption  # overlap
        for obj, mask, cover in zip(scene.objects, solid, drawn.coverage, strict=True):
            x0, y0, x1, y1 = _extent(mask)
            assert min(x0, y0) >= MARGIN - 1 and max(x1, y1) <= IMAGE_SIZE - MARGIN
            extent = max(x1 - x0, y1 - y0) + 1
            assert extent <= 17 if obj.size == "small" else extent >= 19, (scene, extent)
            # the median: sharpening filters (bicubic, Lanczos) overshoot near edges
            inner = np.median(drawn.image[cover > 0.99], axis=0)
            assert np.abs(inner - COLOURS[obj.colour]).max() <= COLOUR_JITTER + 1, scene
        if scene.relation is not None:
            first, second = (_extent(mask) for mask in solid)
            axis = 0 if scene.relation == "left of" else 1
            assert first[axis + 2] + GAP // 2 < second[axis], scene.caption
            boxes = [o.box for o in scene.objects]
            assert boxes[0][axis + 2] + GAP <= boxes[1][axis]


@pytest.mark.parametrize("renderer", RENDERERS)
def test_rendering_is_deterministic_per_seed(renderer: str) -> None:
    (scene,) = _scenes(1)
    first, again = (render(scene, random.Random(7), renderer) for _ in range(2))
    other = render(scene, random.Random(8), renderer)
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)


def test_renderers_draw_differently() -> None:
    scene = next(s for s in _scenes(50) if any(o.shape == "triangle" for o in s.objects))
    pil, mask = (render(scene, random.Random(3), r).coverage for r in RENDERERS)
    assert np.abs(pil - mask).mean() > 0.005


def test_unknown_renderer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shapes renderer 'svg'"):
        render(_scenes(1)[0], random.Random(0), "svg")


# --- sentences ------------------------------------------------------------------------------


def _mo(messages: list[str]) -> bytes:
    """A little-endian compiled gettext catalog holding `messages` as ids (and translations)."""
    ids = [m.encode() for m in messages]
    n, start = len(ids), 28 + 16 * len(messages)
    table, blob = [], b""
    for raw in ids:
        table.append((len(raw), start + len(blob)))
        blob += raw + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    entries = b"".join(struct.pack("<II", *e) for e in table)
    return header + entries + entries + blob


def test_catalog_sentences_keeps_plain_sentences(tmp_path: Path) -> None:
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    messages = [
        "",  # the catalog header's id
        "The selected packages may already be installed.",
        "the selected packages may already be installed",  # a duplicate
        "Cannot open %s for writing",
        "Enable GTK debugging output",  # an acronym espeak would spell out
        "Two words",
        "ctx\x04Remove the selected bookmark",
    ]
    (folder / "prog.mo").write_bytes(_mo(messages))
    (folder / "iso_3166.mo").write_bytes(_mo(["Korea, Republic of the South"]))
    (folder / "broken.mo").write_bytes(b"not a catalog")
    assert catalog_sentences((tmp_path,)) == [
        "Remove the selected bookmark",
        "The selected packages may already be installed.",
    ]


def test_is_speakable() -> None:
    assert is_speakable("Don't clear the environment on startup.")
    assert not is_speakable("Run 2 jobs at once")
    assert not is_speakable("See the README file")
    assert not is_speakable(" ".join(["word"] * 16))


def test_too_few_catalog_sentences_are_topped_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mmseq.data.sentences.catalog_sentences", lambda: ["One two three."])
    sentences = demo_sentences(50, seed=1)
    assert len(sentences) == len(set(sentences)) == 50 and "One two three." in sentences
    assert all(is_speakable(s) for s in sentences)


# --- make_demo ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """The tiny demo made twice with the same seed."""
    first, second = tmp_path_factory.mktemp("demo1"), tmp_path_factory.mktemp("demo2")
    summary = make_demo(first, **TINY)
    make_demo(second, **TINY)
    return first, second, summary


def test_make_demo_writes_the_shapes_manifests(demo_dirs: tuple[Path, Path, dict]) -> None:
    out, _, summary = demo_dirs
    expected = {"train": 12, "val": 3, "test": 6, "test_heldout_pairs": 6}
    for split, n in expected.items():
        rows = _read_jsonl(out / "shapes" / f"{split}.jsonl")
        assert len(rows) == n == summary["shapes"][split]
        for row in rows:
            assert (out / "shapes" / row["image_filepath"]).is_file()
            pairs = {(colour, shape) for _, colour, shape in parse_caption(row["caption"])[0]}
            assert bool(pairs & HELD_OUT_PAIRS) == (split == "test_heldout_pairs"), row


def test_make_demo_writes_the_speech_manifests(demo_dirs: tuple[Path, Path, dict]) -> None:
    out = demo_dirs[0]
    splits = {s: _read_jsonl(out / "speech" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert [len(rows) for rows in splits.values()] == [4, 2, 3]
    for rows in splits.values():
        for row in rows:
            info = sf.info(str(out / "speech" / row["audio_filepath"]))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
            assert row["duration"] > 0.5 and is_speakable(row["text"])
    texts = {s: {row["text"] for row in rows} for s, rows in splits.items()}
    assert not texts["test"] & (texts["train"] | texts["val"])
    assert not texts["val"] & texts["train"]
    assert {row["voice"] for row in splits["train"] + splits["val"]} <= set(TRAIN_VOICES)
    assert {row["voice"] for row in splits["test"]} <= set(TEST_VOICES)
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)


def test_make_demo_writes_the_digits_manifests(demo_dirs: tuple[Path, Path, dict]) -> None:
    out, _, summary = demo_dirs
    assert summary["digits"] == {"train": 6, "val": 2, "test": 3}
    for split, n in summary["digits"].items():
        rows = _read_jsonl(out / "digits" / f"{split}.jsonl")
        assert len(rows) == n and all(
            (out / "digits" / r["image_filepath"]).is_file() for r in rows
        )
    assert "digits/" in (out / "README.md").read_text()


def test_make_demo_writes_tokenizer_readme_and_summary(demo_dirs: tuple[Path, Path, dict]) -> None:
    out, _, summary = demo_dirs
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["speech"]["test"]["clips"] == 3
    assert "test_heldout_pairs.jsonl" in (out / "README.md").read_text()
    assert (out / "tokenizer.json").stat().st_size > 0


def test_make_demo_is_deterministic_per_seed(demo_dirs: tuple[Path, Path, dict]) -> None:
    first, second, _ = demo_dirs
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        if name.suffix in (".png", ".wav", ".jsonl"):
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_make_demo_keeps_a_complete_folder(demo_dirs: tuple[Path, Path, dict]) -> None:
    out, _, summary = demo_dirs
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = make_demo(out, **TINY)
    assert again == summary | {"reused": True}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps


@pytest.mark.parametrize(
    ("damage", "overrides"),
    [
        ("image", {}),  # a file a manifest names is gone
        ("manifest", {}),  # a manifest lost its last row
        (None, {"n_digits_train": 7}),  # another request
        (None, {"force": True}),
    ],
)
def test_make_demo_rebuilds_what_is_incomplete_or_other(
    demo_dirs: tuple[Path, Path, dict], tmp_path: Path, damage: str | None, overrides: dict
) -> None:
    out = tmp_path / "demo"
    shutil.copytree(demo_dirs[0], out)
    image = out / "digits" / _read_jsonl(out / "digits" / "train.jsonl")[0]["image_filepath"]
    if damage == "image":
        image.unlink()
    elif damage == "manifest":
        manifest = out / "speech" / "val.jsonl"
        manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-1]))
    summary = make_demo(out, **{**TINY, **overrides})
    assert "reused" not in summary
    assert image.is_file()
    assert len(_read_jsonl(out / "speech" / "val.jsonl")) == TINY["n_speech_val"]
    remade = {"image": "digits", "manifest": "speech", None: "digits"}[damage]
    everything = ["shapes", "speech", "digits", "text"]
    expected = [] if "force" in overrides else [part for part in everything if part != remade]
    assert summary["kept"] == expected


def test_make_demo_makes_only_the_parts_asked_for(tmp_path: Path) -> None:
    summary = make_demo(tmp_path, **{**TINY, "shapes": False, "speech": False})
    assert not (tmp_path / "shapes").exists() and not (tmp_path / "speech").exists()
    assert summary["digits"] == {"train": 6, "val": 2, "test": 3}
    assert summary["tokenizer"]["trained_on"] == 6 + 4000  # digit captions + text targets
    assert make_demo(tmp_path, **{**TINY, "shapes": False, "speech": False})["reused"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_shapes_train": -1}, "n_shapes_train must be a positive integer, got -1"),
        ({"n_speech_test": 0}, "n_speech_test must be a positive integer, got 0"),
        ({"n_shapes_val": 2.5}, "n_shapes_val must be a positive integer, got 2.5"),
    ],
)
def test_make_demo_refuses_bad_counts(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_demo(tmp_path, **{**TINY, **overrides})
    assert not any(tmp_path.iterdir())


def test_make_demo_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(OSError, match="cannot write the demo data there"):
        make_demo(blocker / "demo", **TINY)


def test_make_demo_without_espeak_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "espeak_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs espeak-ng .* speech=False"):
        make_demo(tmp_path, **TINY)

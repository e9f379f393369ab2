"""Datasets on tiny generated fixtures: each format, path rules and every bad-data case."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mmseq.data.datasets import (
    CocoCaptionsDataset,
    DataError,
    ImageCaptionDataset,
    LibriSpeechDataset,
    SpeechManifestDataset,
    TextPairDataset,
)
from mmseq.data.images import image_transforms

TRANSFORM = image_transforms(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), train=False)


def _wav(path: Path, seconds: float = 0.25, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def _png(path: Path, colour=(255, 0, 0), size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _jsonl(path: Path, *lines: object) -> Path:
    """Objects are written as JSON, strings as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n")
    return path


def _speech(tmp_path: Path, *lines: object) -> Path:
    _wav(tmp_path / "data" / "clips" / "a.wav", 0.25)
    _wav(tmp_path / "data" / "clips" / "b.wav", 0.5, rate=8000)
    return _jsonl(tmp_path / "data" / "train.jsonl", *lines)


A = {"audio_filepath": "clips/a.wav", "duration": 0.25, "text": " hello there "}
B = {"audio_filepath": "clips/b.wav", "duration": 0.5, "text": "general kenobi"}


def _expect_bad(build, manifest: Path, line: int, match: str, good: int) -> None:
    """`build(skip_bad)` fails naming `manifest` and `line`, or skips just that line."""
    with pytest.raises(DataError, match=match) as info:
        build(False)
    assert f"{manifest}, line {line}:" in str(info.value)
    dataset = build(True)
    assert len(dataset) == good
    assert [n for n, _ in dataset.skipped] == [line]
    assert f"{manifest}, line {line}:" in dataset.skipped[0][1]


# --- speech ------------------------------------------------------------------------------


def test_speech_manifest_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _speech(tmp_path, A, "", {**B, "id": "utt-b"})
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the manifest, not cwd
    dataset = SpeechManifestDataset(manifest)
    assert len(dataset) == 2 and dataset.skipped == []
    first, second = dataset[0], dataset[1]
    assert first["id"] == "clips/a.wav" and first["text"] == "hello there"
    assert first["audio"].dtype == torch.float32 and first["audio"].shape == (4000,)
    assert second["id"] == "utt-b" and second["audio"].shape == (8000,)  # resampled to 16 kHz
    assert dataset.costs() == [0.25, 0.5]
    assert len(pickle.loads(pickle.dumps(dataset))) == 2  # DataLoader workers get a copy


def test_speech_absolute_path_inside_the_folder(tmp_path: Path) -> None:
    manifest = _speech(tmp_path, {**A, "audio_filepath": str(tmp_path / "data/clips/a.wav")})
    assert SpeechManifestDataset(manifest)[0]["audio"].shape == (4000,)


def test_speech_max_duration_filters_and_logs(tmp_path: Path, caplog) -> None:
    manifest = _speech(tmp_path, A, B)
    with caplog.at_level(logging.WARNING):
        dataset = SpeechManifestDataset(manifest, max_duration=0.3)
    assert dataset.costs() == [0.25]
    assert [n for n, _ in dataset.filtered] == [2]
    assert "longer than max_duration" in caplog.text
    with pytest.raises(DataError, match="every utterance is longer"):
        SpeechManifestDataset(manifest, max_duration=0.1)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"duration": 0.25, "text": "hi"}, "missing field 'audio_filepath'"),
        ({"audio_filepath": "clips/a.wav", "text": "hi"}, "missing field 'duration'"),
        ({"audio_filepath": "clips/a.wav", "duration": 0.25}, "missing field 'text'"),
        ({**A, "text": "   "}, "field 'text' is empty"),
        ({**A, "text": 3}, "'text' must be a string"),
        ({**A, "duration": -1}, "must be positive"),
        ({**A, "duration": "long"}, "must be a number"),
        ({**A, "audio_filepath": "clips/missing.wav"}, r"missing\.wav' does not exist"),
        ({**A, "audio_filepath": "clips"}, "is not a file"),
        ({**A, "audio_filepath": "clips/empty.wav"}, r"empty \(0 bytes"),
        ({**A, "audio_filepath": "../outside.wav"}, "outside the dataset folder"),
    ],
)
def test_speech_bad_lines(tmp_path: Path, line: object, match: str) -> None:
    manifest = _speech(tmp_path, A, line, B)
    (tmp_path / "data" / "clips" / "empty.wav").touch()
    _wav(tmp_path / "outside.wav")
    _expect_bad(lambda skip: SpeechManifestDataset(manifest, skip_bad=skip), manifest, 2, match, 2)


def test_skipped_lines_are_logged_and_an_all_bad_manifest_fails(tmp_path: Path, caplog) -> None:
    manifest = _speech(tmp_path, A, "oops", {**A, "text": ""})
    with caplog.at_level(logging.WARNING):
        dataset = SpeechManifestDataset(manifest, skip_bad=True)
    assert [n for n, _ in dataset.skipped] == [2, 3]
    assert f"{manifest}: skipped 2 bad entries of 3" in caplog.text
    bad = _jsonl(tmp_path / "data" / "bad.jsonl", "oops")
    with pytest.raises(DataError, match=r"no usable entries \(1 skipped as bad\)"):
        SpeechManifestDataset(bad, skip_bad=True)
    with pytest.raises(DataError, match=r"nothing\.jsonl: manifest does not exist"):
        SpeechManifestDataset(tmp_path / "nothing.jsonl")


def test_speech_paths_escaping_the_folder(tmp_path: Path) -> None:
    outside = _wav(tmp_path / "elsewhere" / "x.wav")
    (tmp_path / "data" / "clips").mkdir(parents=True)
    (tmp_path / "data" / "clips" / "link.wav").symlink_to(outside)
    for path in ("../elsewhere/x.wav", str(outside), "clips/link.wav"):
        manifest = _jsonl(tmp_path / "data" / "m.jsonl", {**A, "audio_filepath": path})
        with pytest.raises(DataError, match=r"m\.jsonl, line 1: .*outside the dataset folder"):
            SpeechManifestDataset(manifest)
        dataset = SpeechManifestDataset(manifest, allow_outside_root=True)
        assert dataset[0]["audio"].shape == (4000,)


def test_speech_undecodable_audio(tmp_path: Path) -> None:
    not_audio = tmp_path / "data" / "clips" / "notes.wav"
    manifest = _speech(tmp_path, A, {**A, "audio_filepath": "clips/notes.wav"})
    not_audio.write_text("this is not audio")
    # every header is read when the dataset is built: the run stops before it starts
    with pytest.raises(DataError, match=rf"{manifest}, line 2: .*notes\.wav"):
        SpeechManifestDataset(manifest)
    # with skip_bad the line is skipped
    dataset = SpeechManifestDataset(manifest, skip_bad=True)
    assert len(dataset) == 1 and dataset.skipped[0][0] == 2


def test_speech_truncated_audio_names_the_line(tmp_path: Path) -> None:
    manifest = _speech(tmp_path, A)
    clip = tmp_path / "data" / "clips" / "a.wav"
    clip.write_bytes(clip.read_bytes()[:3000])
    for skip in (False, True):
        with pytest.raises(DataError, match=rf"{manifest}, line 1: .*truncated"):
            SpeechManifestDataset(manifest, skip_bad=skip)[0]


def test_manifest_line_not_utf8(tmp_path: Path) -> None:
    manifest = _speech(tmp_path, A)
    manifest.write_bytes(manifest.read_bytes() + b'{"text": "caf\xe9"}\n')
    _expect_bad(
        lambda skip: SpeechManifestDataset(manifest, skip_bad=skip), manifest, 2, "UTF-8", 1
    )


# --- LibriSpeech ---------------------------------------------------------------------------


def _librispeech(root: Path, lines: dict[str, str], seconds: float = 0.1) -> Path:
    """Utterances under root/train-clean-100: {"<speaker>-<chapter>-<n>": transcript}."""
    for utterance, text in lines.items():
        speaker, chapter, _ = utterance.split("-")
        folder = root / "train-clean-100" / speaker / chapter
        _wav(folder / f"{utterance}.flac", seconds)  # FLAC, from the suffix
        with (folder / f"{speaker}-{chapter}.trans.txt").open("a") as f:
            f.write(f"{utterance} {text}\n")
    return root


def test_librispeech_layout(tmp_path: Path) -> None:
    lines = {"19-198-0000": "NORTHANGER ABBEY", "19-198-0001": "THIS LITTLE WORK"}
    other = {"19-227-0000": "IT IS A"}
    for root in (tmp_path / "a", tmp_path / "b" / "LibriSpeech"):
        _librispeech(root, lines, 0.25)
        _librispeech(root, other, 0.5)
    for root in (tmp_path / "a", tmp_path / "b"):  # torchaudio's LibriSpeech/ folder too
        dataset = LibriSpeechDataset(root, "train-clean-100")
        assert [dataset[i]["id"] for i in range(3)] == [*lines, *other]
        assert dataset[1]["text"] == "THIS LITTLE WORK"
        assert dataset[2]["audio"].shape == (8000,)
        assert dataset.costs() == [0.25, 0.25, 0.5]  # from the audio headers
    with pytest.raises(DataError, match="no LibriSpeech split 'dev-clean'"):
        LibriSpeechDataset(tmp_path / "a", "dev-clean")


def test_librispeech_bad_lines(tmp_path: Path) -> None:
    root = _librispeech(tmp_path, {"19-198-0000": "A", "19-198-0001": "B", "19-198-0002": "C"})
    chapter = root / "train-clean-100" / "19" / "198"
    transcript = chapter / "19-198.trans.txt"
    (chapter / "19-198-0001.flac").unlink()
    with transcript.open("a") as f:
        f.write("19-198-0002\n")
    with pytest.raises(DataError, match=rf"{transcript}, line 2: .*19-198-0001\.flac' does not"):
        LibriSpeechDataset(root, "train-clean-100")
    dataset = LibriSpeechDataset(root, "train-clean-100", skip_bad=True)
    assert len(dataset) == 2
    assert [n for n, _ in dataset.skipped] == [2, 4]
    assert "empty transcript for utterance '19-198-0002'" in dataset.skipped[1][1]


# --- image captions ------------------------------------------------------------------------


def _captions(tmp_path: Path, *lines: object) -> Path:
    _png(tmp_path / "data" / "img" / "red.png")
    _png(tmp_path / "data" / "img" / "blue.png", (0, 0, 255))
    return _jsonl(tmp_path / "data" / "captions.jsonl", *lines)


RED = {"image_filepath": "img/red.png", "caption": "a red square"}
BLUE = {"image_filepath": "img/blue.png", "captions": ["a blue one", "blue square on the left"]}


def test_image_captions(tmp_path: Path) -> None:
    manifest = _captions(tmp_path, RED, BLUE)
    dataset = ImageCaptionDataset(manifest, TRANSFORM, train=False)
    item = dataset[1]
    assert item["id"] == "img/blue.png"
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    torch.testing.assert_close(item["image"][2], torch.ones(16, 16))  # blue, normalised
    assert item["text"] == "a blue one"  # eval: the first caption
    assert item["references"] == ["a blue one", "blue square on the left"]
    assert dataset[0]["references"] == ["a red square"]
    assert dataset.costs() == [3.0, 4.0]  # mean words per caption
    train = ImageCaptionDataset(manifest, TRANSFORM, train=True)
    torch.manual_seed(0)
    assert {train[1]["text"] for _ in range(20)} == set(BLUE["captions"])
    assert len(pickle.loads(pickle.dumps(train))) == 2


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("not json", "not valid JSON"),
        ({"caption": "x"}, "missing field 'image_filepath'"),
        ({"image_filepath": "img/red.png"}, r"missing field 'caption' \(or 'captions'\)"),
        ({**RED, "captions": ["y"]}, "both 'caption' and 'captions'"),
        ({**RED, "caption": []}, "non-empty list"),
        ({**RED, "caption": ["ok", " "]}, r"'caption\[1\]' is empty"),
        ({**RED, "image_filepath": "img/gone.png"}, "does not exist"),
        ({**RED, "image_filepath": "/etc/hostname"}, "outside the dataset folder"),
    ],
)
def test_image_caption_bad_lines(tmp_path: Path, line: object, match: str) -> None:
    manifest = _captions(tmp_path, RED, line, BLUE)

    def build(skip: bool) -> ImageCaptionDataset:
        return ImageCaptionDataset(manifest, TRANSFORM, train=False, skip_bad=skip)

    _expect_bad(build, manifest, 2, match, 2)


def test_image_caption_undecodable_image(tmp_path: Path) -> None:
    manifest = _captions(tmp_path, RED, {**RED, "image_filepath": "img/fake.png"})
    (tmp_path / "data" / "img" / "fake.png").write_text("not an image")
    with pytest.raises(DataError, match=rf"{manifest}, line 2: .*fake\.png: not an image"):
        ImageCaptionDataset(manifest, TRANSFORM, train=False)  # every header read up front
    dataset = ImageCaptionDataset(manifest, TRANSFORM, train=False, skip_bad=True)
    assert len(dataset) == 1 and "not an image" in dataset.skipped[0][1]


def _coco(tmp_path: Path, images: list, annotations: list) -> Path:
    _png(tmp_path / "val2014" / "b.png")
    _png(tmp_path / "val2014" / "a.png", (0, 0, 255))
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}))
    return path


COCO_IMAGES = [{"id": 42, "file_name": "b.png"}, {"id": 7, "file_name": "a.png"}]
COCO_CAPTIONS = [
    {"id": 1, "image_id": 42, "caption": "A red square.\n"},
    {"id": 2, "image_id": 7, "caption": "A blue square."},
    {"id": 3, "image_id": 42, "caption": "Something red."},
]


def test_coco_captions(tmp_path: Path) -> None:
    annotations = _coco(tmp_path, COCO_IMAGES, COCO_CAPTIONS)
    dataset = CocoCaptionsDataset(tmp_path / "val2014", annotations, TRANSFORM, train=False)
    assert [dataset[i]["id"] for i in range(2)] == ["7", "42"]  # by image id, as torchvision
    assert dataset[1]["references"] == ["A red square.", "Something red."]
    assert dataset[0]["text"] == "A blue square."
    assert dataset[0]["image"].shape == (3, 16, 16)
    assert dataset.costs() == [3.0, 2.5]


@pytest.mark.parametrize(
    ("images", "annotations", "match", "good"),
    [
        (
            COCO_IMAGES,
            [*COCO_CAPTIONS, {"image_id": 99, "caption": "x"}],
            r"annotations\[3\]: image_id 99 is not among 'images'",
            2,
        ),
        (COCO_IMAGES, [*COCO_CAPTIONS, {"image_id": 7}], r"annotations\[3\]: missing field", 2),
        (COCO_IMAGES, COCO_CAPTIONS[:1], r"images\[1\]: image 7 has no captions", 1),
        (
            [COCO_IMAGES[0], {"id": 7, "file_name": "../x.png"}],
            COCO_CAPTIONS,
            r"images\[1\]: .*outside the dataset folder",
            1,
        ),
    ],
)
def test_coco_bad_entries(tmp_path: Path, images, annotations, match: str, good: int) -> None:
    path = _coco(tmp_path, images, annotations)
    _png(tmp_path / "x.png")
    with pytest.raises(DataError, match=match) as info:
        CocoCaptionsDataset(tmp_path / "val2014", path, TRANSFORM, train=False)
    assert str(info.value).startswith(str(path))
    dataset = CocoCaptionsDataset(tmp_path / "val2014", path, TRANSFORM, False, skip_bad=True)
    assert len(dataset) == good and len(dataset.skipped) == 1


def test_coco_not_json(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_text('{"images": [')
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"captions\.json: not a valid JSON file"):
        CocoCaptionsDataset(tmp_path / "images", path, TRANSFORM, train=False)


# --- text pairs ----------------------------------------------------------------------------


def test_text_pairs_jsonl_and_tsv(tmp_path: Path) -> None:
    jsonl = _jsonl(
        tmp_path / "pairs.jsonl",
        {"source": "hallo welt", "target": "hello world", "id": "p1"},
        {"source": "guten morgen allerseits", "target": "good morning all"},
    )
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(
        "source\ttarget\nhallo welt\thello world\nguten morgen allerseits\tgood morning all\n"
    )
    for path, first_id in ((jsonl, "p1"), (tsv, "pairs.tsv:2")):
        dataset = TextPairDataset(path)
        assert len(dataset) == 2 and dataset.costs() == [2.0, 3.0]
        assert dataset[0] == {"id": first_id, "source": "hallo welt", "text": "hello world"}
        assert dataset[1]["text"] == "good morning all"


@pytest.mark.parametrize(
    ("suffix", "line", "match"),
    [
        (".tsv", "only one column", "expected 2 tab-separated columns"),
        (".tsv", "a\tb\tc", "got 3"),
        (".tsv", "source\t ", "field 'target' is empty"),
        (".jsonl", '{"source": "x"}', "missing field 'target'"),
        (".jsonl", '{"source": "x", "target": ""}', "field 'target' is empty"),
        (".jsonl", "{", "not valid JSON"),
    ],
)
def test_text_pair_bad_lines(tmp_path: Path, suffix: str, line: str, match: str) -> None:
    path = tmp_path / f"pairs{suffix}"
    good = "a b\tc d" if suffix == ".tsv" else '{"source": "a b", "target": "c d"}'
    path.write_text(f"{good}\n{line}\n{good}\n")
    _expect_bad(lambda skip: TextPairDataset(path, skip_bad=skip), path, 2, match, 2)


def test_text_pair_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.xlsx"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match=r"pairs\.xlsx: unknown text-pair format '\.xlsx'"):
        TextPairDataset(path)

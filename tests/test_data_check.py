"""`mmseq data check` on tiny hand-written manifests: every kind of bad row, by line and field,
the exit code and summary; and the same rules in the datasets and DataModules, which list every
bad row at start-up (or skip and count them with skip_bad). Speed: benchmarks/data_check_speed.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmseq.cli import main
from mmseq.data.check import check_manifest, token_counter
from mmseq.data.datasets import (
    DataError,
    ImageCaptionDataset,
    SpeechManifestDataset,
    TextPairDataset,
)
from mmseq.data.images import image_transforms
from mmseq.data.manifest import MAX_LISTED
from mmseq.data.modules import SpeechDataModule
from mmseq.data.tokenizer import train_bpe

TRANSFORM = image_transforms(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), train=False)


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * 16000), np.float32), 16000)


def _write(path: Path, lines: list, end: bytes = b"\n", bom: bool = False) -> Path:
    """Objects as JSON, str as written, bytes as they are; each line ends with `end`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\xef\xbb\xbf" if bom else b""
    for line in lines:
        if isinstance(line, str):
            line = line.encode()
        elif not isinstance(line, bytes):
            line = json.dumps(line).encode()
        data += line + end
    path.write_bytes(data)
    return path


def _check(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
    code = main(["data", "check", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out.splitlines()


def _speech_folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    _wav(data / "clips" / "a.wav", 0.5)
    _wav(data / "clips" / "b.wav", 1.0)
    _wav(tmp_path / "outside.wav", 0.5)
    (data / "clips" / "empty.wav").touch()
    (data / "clips" / "notes.wav").write_text("not audio")
    return data


A = {"audio_filepath": "clips/a.wav", "duration": 0.5, "text": "hello there"}
B = {"audio_filepath": "clips/b.wav", "duration": 1.0, "text": "general kenobi"}

# (line as written, what the report says about it) for each kind of bad speech row
BAD_SPEECH = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ({"audio_filepath": "clips/b.wav", "text": "hi", "id": "m"}, "missing field 'duration'"),
    ({**B, "duration": "long", "id": "d"}, "field 'duration' must be a number"),
    ({**B, "text": 3, "id": "t"}, "field 'text' must be a string, got int"),
    ({**B, "id": True}, "field 'id' must be a string or integer"),
    ({**B, "text": "  ", "id": "e"}, "field 'text' is empty"),
    ({**B, "text": "word " * 449, "id": "o"}, "field 'text' is over-long: 449 words > "),
    (b'{"audio_filepath": "clips/b.wav", "text": "caf\xe9"}', "not valid UTF-8"),
    ({**A, "audio_filepath": "../outside.wav"}, "outside the dataset folder"),
    ({**A, "audio_filepath": "/etc/hostname"}, "resolves to /etc/hostname, outside the"),
    ({**A, "audio_filepath": "clips/gone.wav"}, "audio_filepath 'clips/gone.wav' does not exist"),
    ({**A, "audio_filepath": "clips"}, "audio_filepath 'clips' is not a file"),
    ({**A, "audio_filepath": "clips/empty.wav"}, "'clips/empty.wav' is empty (0 bytes"),
    ({**A, "audio_filepath": "clips/notes.wav"}, "audio_filepath 'clips/notes.wav': "),
    ({**A, "audio_filepath": "clips/a\x00.wav"}, "is not a usable path"),
    ({**A, "text": "again"}, "duplicate id 'clips/a.wav' (first on line 1)"),
    ("[" * 100_000, "not usable JSON"),
]


def test_every_bad_speech_row_is_listed_by_line_and_field(tmp_path: Path, capsys) -> None:
    data = _speech_folder(tmp_path)
    rows = [A, ""] + [row for row, _ in BAD_SPEECH] + ["   ", B]
    manifest = _write(data / "train.jsonl", rows, end=b"\r\n", bom=True)  # BOM, CRLF: fine
    code, out = _check(capsys, str(manifest))
    assert code == 1
    bad = [line for line in out if line.startswith(f"{manifest}, line ")]
    assert len(bad) == len(BAD_SPEECH)
    for number, (line, (_, expected)) in enumerate(zip(bad, BAD_SPEECH, strict=True), 3):
        assert line.startswith(f"{manifest}, line {number}: ") and expected in line, line
    assert out[-2] == (
        f"{manifest}: speech manifest: {len(BAD_SPEECH) + 2} rows, {len(BAD_SPEECH)} bad, "
        "2 blank lines skipped, 0.00 h (1.5 s) of audio, 4 words of transcripts"
    )
    assert out[-1] == f"{len(BAD_SPEECH)} bad rows in 1 manifest"


def test_a_good_manifest_exits_0_with_its_summary(tmp_path: Path, capsys) -> None:
    data = _speech_folder(tmp_path)
    manifest = _write(data / "train.jsonl", [A, B])
    code, out = _check(capsys, str(manifest), "--max-tokens", "2")  # two words each: not over
    assert code == 0
    assert out == [
        f"{manifest}: speech manifest: 2 rows, 0 bad, 0.00 h (1.5 s) of audio, "
        "4 words of transcripts"
    ]
    code, out = _check(capsys, str(manifest), "--max-tokens", "1")
    assert code == 1 and "field 'text' is over-long: 2 words > --max-tokens 1" in out[0]


def test_tokens_are_counted_by_a_tokenizer(tmp_path: Path, capsys) -> None:
    data = _speech_folder(tmp_path)
    manifest = _write(data / "train.jsonl", [A, B])
    tokenizer = tmp_path / "tokenizer.json"
    train_bpe(["hello there", "general kenobi"] * 20, vocab_size=300).save(tokenizer)
    lengths = token_counter(str(tokenizer))(["hello there", "general kenobi"])
    code, out = _check(capsys, str(manifest), "--tokenizer", str(tokenizer))
    assert code == 0 and out[0].endswith(f", {sum(lengths)} tokens of transcripts")


def _caption_folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(data / "img" / "red.png")
    Image.new("RGB", (8, 6), (0, 0, 255)).save(data / "img" / "blue.png")
    (data / "img" / "fake.png").write_text("not an image")
    return data


RED = {"image_filepath": "img/red.png", "caption": "a red square"}
BLUE = {"image_filepath": "img/blue.png", "captions": ["a blue one", "blue square"]}
BAD_CAPTIONS = [
    ({"caption": "x"}, "missing field 'image_filepath'"),
    ({**RED, "id": "r2", "captions": ["y"]}, "has both 'caption' and 'captions'"),
    ({**BLUE, "id": "b2", "captions": ["ok", ""]}, "field 'captions[1]' is empty"),
    ({**RED, "image_filepath": "img/fake.png"}, "image_filepath 'img/fake.png': "),
    ({**RED, "caption": "another"}, "duplicate id 'img/red.png' (first on line 1); give each"),
    ({**BLUE, "id": "b3", "captions": ["ok", "w " * 9]}, "field 'captions[1]' is over-long"),
]


def test_every_bad_caption_row(tmp_path: Path, capsys) -> None:
    data = _caption_folder(tmp_path)
    manifest = _write(data / "captions.jsonl", [RED, BLUE, *(row for row, _ in BAD_CAPTIONS)])
    code, out = _check(capsys, str(manifest), "--max-tokens", "8")
    assert code == 1
    for number, (line, (_, expected)) in enumerate(zip(out, BAD_CAPTIONS, strict=False), 3):
        assert line.startswith(f"{manifest}, line {number}: ") and expected in line, line
    assert out[len(BAD_CAPTIONS)] == (
        f"{manifest}: caption manifest: 8 rows, 6 bad, 2 images, 3 captions, 8 words of captions"
    )


def test_text_pairs_tsv_csv_and_jsonl(tmp_path: Path, capsys) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("source\ttarget\nhallo welt\thello world\nonly one column\na\tb\tc\n\tx\n")
    csv = tmp_path / "pairs.csv"
    csv.write_bytes(
        b'source,target\r\n"hallo, welt","hello, world"\r\n"unclosed,x\r\nguten tag,\r\n'
    )
    jsonl = _write(
        tmp_path / "pairs.jsonl",
        [
            {"source": "a b", "target": "c", "id": 1},
            {"source": "d", "target": "e", "id": 1},
            {"source": "f"},
            {"source": "g", "target": ["h"]},
        ],
    )
    code, out = _check(capsys, str(tsv), str(csv), str(jsonl))
    assert code == 1
    assert out == [
        f"{tsv}, line 3: expected 2 tab-separated columns (source, target), got 1",
        f"{tsv}, line 4: expected 2 tab-separated columns (source, target), got 3",
        f"{tsv}, line 5: field 'source' is empty",
        f"{tsv}: text manifest: 4 rows, 3 bad, 2 source and 2 target words",
        f"{csv}, line 3: not a valid CSV row (unexpected end of data)",
        f"{csv}, line 4: field 'target' is empty",
        f"{csv}: text manifest: 3 rows, 2 bad, 2 source and 2 target words",
        f"{jsonl}, line 2: duplicate id '1' (first on line 1); give each line its own 'id'",
        f"{jsonl}, line 3: missing field 'target' (expected fields: source, target)",
        f"{jsonl}, line 4: field 'target' must be a string, got list",
        f"{jsonl}: text manifest: 4 rows, 3 bad, 2 source and 1 target words",
        "8 bad rows in 3 manifests",
    ]
    # what the check accepts, training reads
    assert TextPairDataset(csv, skip_bad=True)[0]["text"] == "hello, world"


def test_manifest_level_errors_name_the_input(tmp_path: Path, capsys) -> None:
    unknown = _write(tmp_path / "m.jsonl", [{"audio": "a.wav"}, "{"])
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    code, out = _check(capsys, str(tmp_path / "nothing.jsonl"), str(unknown), str(folder))
    assert code == 1
    assert out[0] == f"{tmp_path / 'nothing.jsonl'}: manifest does not exist"
    assert out[1].startswith(f"{unknown}: cannot tell the manifest's kind") and "--kind" in out[1]
    assert out[2] == f"{folder}: manifest is not a file"
    # --kind tells it instead of the fields
    code, out = _check(capsys, str(unknown), "--kind", "speech")
    assert code == 1 and "line 1: missing field 'audio_filepath'" in out[0]
    # empty: training would stop with 'no usable entries'
    empty_jsonl, empty_tsv = _write(tmp_path / "e.jsonl", ["", " "]), _write(tmp_path / "e.tsv", [])
    code, out = _check(capsys, str(empty_jsonl), str(empty_tsv))
    assert code == 1 and out[:2] == [
        f"{empty_jsonl}: no rows (training stops with 'no usable entries')",
        f"{empty_tsv}: no rows (training stops with 'no usable entries')",
    ]
    assert main(["data", "check", str(empty_tsv), "--max-tokens", "-1"]) == 2
    assert "--max-tokens: expected a number of tokens >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a usage error, no traceback
        main(["data", "check", str(unknown), "--kind", "video"])
    assert "invalid choice: 'video'" in capsys.readouterr().err


def test_check_manifest_api(tmp_path: Path) -> None:
    data = _speech_folder(tmp_path)
    manifest = _write(data / "train.jsonl", [A, "oops", B])
    report = check_manifest(manifest)
    assert report.kind == "speech" and report.rows == 3 and report.seconds == 1.5
    assert [line for line, _ in report.bad] == [2]


# --- the same rules at training start-up -----------------------------------------------------


def test_datasets_list_every_bad_row_at_once(tmp_path: Path) -> None:
    data = _speech_folder(tmp_path)
    manifest = _write(data / "train.jsonl", [A, "oops", {**B, "text": ""}, B, {**B, "id": 3}, A])
    with pytest.raises(DataError) as info:
        SpeechManifestDataset(manifest)
    message = str(info.value)
    assert message.startswith(f"{manifest}: 3 bad entries of 6 (fix them, or pass skip_bad=True")
    for line in (2, 3, 6):
        assert f"\n  {manifest}, line {line}: " in message
    assert "line 6: duplicate id 'clips/a.wav' (first on line 1)" in message
    dataset = SpeechManifestDataset(manifest, skip_bad=True)
    assert len(dataset) == 3 and [n for n, _ in dataset.skipped] == [2, 3, 6]


def test_a_long_list_of_bad_rows_is_capped(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.jsonl", ['{"source": "a", "target": "b"}'] + ["x"] * 30)
    with pytest.raises(DataError) as info:
        TextPairDataset(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}: 30 bad entries of 31 (fix them, or pass skip_bad")
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == f"  ... and {30 - MAX_LISTED} more"


def test_caption_dataset_rejects_duplicate_ids(tmp_path: Path) -> None:
    data = _caption_folder(tmp_path)
    manifest = _write(data / "captions.jsonl", [RED, BLUE, {**RED, "caption": "again"}])
    with pytest.raises(DataError, match=r"line 3: duplicate id 'img/red\.png'.*'captions'"):
        ImageCaptionDataset(manifest, TRANSFORM, train=False)


def test_datamodule_stops_at_start_up_with_the_list(tmp_path: Path, caplog) -> None:
    data = _speech_folder(tmp_path)
    bad = [
        {**A, "audio_filepath": "clips/gone.wav"},
        "{oops",
        {**B, "duration": -1, "id": "neg"},
        {**B, "id": "x", "audio_filepath": "clips/notes.wav"},  # its header does not read
    ]
    manifest = _write(data / "train.jsonl", [A, B, *bad])
    with pytest.raises(DataError) as info:
        SpeechDataModule(None, train=str(manifest)).setup("fit")
    message = str(info.value)
    assert message.startswith(f"{manifest}: 4 bad entries of 6")
    assert all(f"{manifest}, line {n}: " in message for n in (3, 4, 5, 6))
    dm = SpeechDataModule(None, train=str(manifest), skip_bad=True)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.skipped == {"train": 4} and len(dm.datasets["train"]) == 2
    assert "'train' split: 4 bad entries skipped (skip_bad=True), 2 kept" in caplog.text

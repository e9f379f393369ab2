"""`mmseq data make-demo OUT`: demo datasets generated offline, with no download.

    OUT/shapes/images/*.png                64x64 pictures of one or two shapes
    OUT/shapes/train.jsonl, val.jsonl, test.jsonl        seen (colour, shape) pairs only
    OUT/shapes/test_heldout_pairs.jsonl    scenes with at least one held-out pair
    OUT/shapes/test_mask_renderer.jsonl    seen pairs drawn by the second renderer
    OUT/speech/wavs/*.wav                  16 kHz mono speech by espeak-ng
    OUT/speech/train.jsonl, val.jsonl      training voices; test.jsonl: other voices
    OUT/digits/images/*.png                32x128 strings of 1-4 handwritten digits
    OUT/digits/train.jsonl, val.jsonl, test.jsonl   disjoint handwriting (see mmseq.data.digits)
    OUT/text/train.jsonl, val.jsonl, test.jsonl     {"source", "target"}: restore case and
                                           punctuation (the multitask demo's text task)
    OUT/tokenizer.json                     BPE trained on the training captions and transcripts
    OUT/README.md, OUT/summary.json        what is there, counts and timings

Each part's folder gets complete.json (its seed and counts) after everything else in it, and
summary.json (the whole request) is written last: a second call keeps every part that is
complete (every manifest with its row count, every file it names) and writes nothing at all when
the whole request is, unless `force=True`.

Shapes and digits manifests hold {"image_filepath", "caption"}, speech manifests (NeMo style)
{"audio_filepath", "duration", "text", "voice", "wpm"}; paths are relative to the manifest's
folder. Every split draws its own seeded random stream, so a split's content depends only on
`seed` and its own count.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.progress import Progress

from mmseq.data.corpus_files import write_jsonl_atomic
from mmseq.data.demo_speech import TEST_VOICES, TRAIN_VOICES, plan_clips, synthesize
from mmseq.data.digits import make_digits
from mmseq.data.sentences import demo_sentences
from mmseq.data.shapes import HELD_OUT_PAIRS, sample_scene
from mmseq.data.shapes_render import render
from mmseq.data.synth import espeak_available
from mmseq.serialization import atomic_path, sync_all, write_text_atomic


def make_demo(
    out_dir: str | Path,
    *,
    shapes: bool = True,
    n_shapes_train: int = 20000,
    n_shapes_val: int = 500,
    n_shapes_test: int = 500,
    speech: bool = True,
    n_speech_train: int = 1500,
    n_speech_val: int = 100,
    n_speech_test: int = 200,
    digits: bool = True,
    n_digits_train: int = 20000,
    n_digits_val: int = 500,
    n_digits_test: int = 1000,
    vocab_size: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict:
    """Write the demo datasets under `out_dir` (see the module docstring) and return the
    summary also written to summary.json. `n_shapes_test` images go into each of the three
    shapes test sets; `workers` espeak-ng processes run at once (default: cores, at most 4).
    `digits` adds the handwritten digits task (`mmseq.data.digits`, from scikit-learn's data).
    Nothing complete is made twice (unless `force`): a folder complete for the same request is
    kept as it is (its summary is returned with "reused": true), and a part (shapes, speech,
    digits, text) complete with the same seed and counts is kept (listed in "kept") while the
    others are made.

    Raises:
        ValueError: a count is not a positive integer.
        OSError: `out_dir` cannot be created or written.
        RuntimeError: `speech` is asked for but espeak-ng is not installed.
    """
    shapes_counts = {
        "train": n_shapes_train,
        "val": n_shapes_val,
        "test": n_shapes_test,
        "test_heldout_pairs": n_shapes_test,
        "test_mask_renderer": n_shapes_test,
    }
    speech_counts = {"train": n_speech_train, "val": n_speech_val, "test": n_speech_test}
    digits_counts = {"train": n_digits_train, "val": n_digits_val, "test": n_digits_test}
    checked = {"vocab_size": vocab_size}
    if shapes:
        checked |= {"n_shapes_train": n_shapes_train, "n_shapes_val": n_shapes_val}
        checked |= {"n_shapes_test": n_shapes_test}
    if speech:
        checked |= {f"n_speech_{split}": n for split, n in speech_counts.items()}
    if digits:
        checked |= {f"n_digits_{split}": n for split, n in digits_counts.items()}
    _check_counts(checked)
    if speech and not espeak_available():
        raise RuntimeError(
            "the speech demo needs espeak-ng (e.g. `apt-get install espeak-ng`); "
            "pass speech=False (--no-speech) for the shapes demo alone"
        )
    request = {
        "format": FORMAT,
        "seed": seed,
        "shapes": shapes_counts if shapes else None,
        "speech": speech_counts if speech else None,
        "digits": digits_counts if digits else None,
        "text": TEXT_COUNTS,
        "vocab_size": vocab_size,
    }
    if not force and (done := complete_summary(Path(out_dir), request)) is not None:
        return done | {"reused": True}
    out = _writable_folder(Path(out_dir))
    summary: dict = {"seed": seed, "request": request, "seconds": {}, "kept": []}
    writers = {
        "shapes": lambda folder, bar: _write_shapes(folder, shapes_counts, seed, bar),
        "speech": lambda folder, bar: _write_speech(folder, speech_counts, seed, workers, bar),
        "digits": lambda folder, bar: _write_digits(folder, digits_counts, seed, bar),
        "text": lambda folder, bar: _write_text_pairs(folder, TEXT_COUNTS, seed),
    }
    texts: list[str] = []
    with Progress(console=Console(stderr=True), disable=not progress) as bar:
        for part, write in writers.items():
            if request[part] is None:
                continue
            start = time.perf_counter()
            # a part is written in full or not at all: its stamp, last, records what it holds
            stamp = _part_stamp(request, part)
            rows = None if force else _complete_part(out / part, stamp)
            if rows is None:
                rows = write(out / part, bar)
                sync_all()  # its files, written without an fsync each, on disk before the stamp
                write_text_atomic(out / part / PART_STAMP, json.dumps(stamp) + "\n")
            else:
                summary["kept"].append(part)
            summary[part] = {
                split: _speech_stats(split_rows) if part == "speech" else len(split_rows)
                for split, split_rows in rows.items()
            }
            summary["seconds"][part] = round(time.perf_counter() - start, 1)
            texts += [row[TEXT_FIELD[part]] for row in rows["train"]]
    start = time.perf_counter()
    summary["tokenizer"] = _write_tokenizer(out / "tokenizer.json", texts, vocab_size)
    summary["seconds"]["tokenizer"] = round(time.perf_counter() - start, 1)
    write_text_atomic(out / "README.md", _readme(summary))
    # last, and atomically: its presence with this request means every part above is written
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def complete_summary(out: Path, request: dict) -> dict | None:
    """The summary of `out` if it holds the demo data of `request` in full, else None: its
    summary.json (written last) records the same request, every part is complete (see
    `_complete_part`) and the tokenizer is there."""
    try:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("request") != request:
        return None
    if not (out / "tokenizer.json").is_file():
        return None
    for part in TEXT_FIELD:
        if (
            request[part] is not None
            and _complete_part(out / part, _part_stamp(request, part)) is None
        ):
            return None
    return summary


def _part_stamp(request: dict, part: str) -> dict:
    """What a part's complete.json records: enough to tell whether it holds what is asked."""
    return {"format": request["format"], "seed": request["seed"], "counts": request[part]}


def _complete_part(folder: Path, stamp: dict) -> dict[str, list[dict]] | None:
    """The manifest rows of the part in `folder`, by split, if its stamp is `stamp`, each
    manifest has its row count and every file a row names exists; else None."""
    try:
        if json.loads((folder / PART_STAMP).read_text(encoding="utf-8")) != stamp:
            return None
        rows = {
            split: [json.loads(line) for line in (folder / f"{split}.jsonl").open(encoding="utf-8")]
            for split in stamp["counts"]
        }
    except (OSError, ValueError):
        return None
    for split, split_rows in rows.items():
        if len(split_rows) != stamp["counts"][split]:
            return None
        for row in split_rows:
            if not isinstance(row, dict):
                return None
            name = row.get("image_filepath") or row.get("audio_filepath")
            if name is not None and not (folder / name).is_file():
                return None
    return rows


def _check_counts(counts: dict[str, int]) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _writable_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".mmseq-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"{out}: cannot write the demo data there ({exc.strerror or exc})") from exc
    return out


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_jsonl_atomic(path, rows)  # a line at a time


def _write_shapes(
    folder: Path, counts: dict[str, int], seed: int, bar: Progress
) -> dict[str, list[dict]]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    manifests = {}
    for split, n in counts.items():
        renderer = "mask" if split == "test_mask_renderer" else "pil"
        task = bar.add_task(f"shapes {split}", total=n)
        rows = []
        for i in range(n):
            rng = random.Random(f"{seed}/shapes/{split}/{i}")
            scene = sample_scene(rng, heldout=split == "test_heldout_pairs")
            name = f"images/{split}_{i:05d}.png"
            with atomic_path(folder / name, durable=False) as tmp:  # durable before the stamp
                Image.fromarray(render(scene, rng, renderer).image).save(tmp, format="PNG")
            rows.append({"image_filepath": name, "caption": scene.caption})
            bar.advance(task)
        _write_jsonl(folder / f"{split}.jsonl", rows)
        manifests[split] = rows
    return manifests


def _write_digits(
    folder: Path, counts: dict[str, int], seed: int, bar: Progress
) -> dict[str, list[dict]]:
    tasks = {split: bar.add_task(f"digits {split}", total=n) for split, n in counts.items()}
    return make_digits(folder, counts, seed, on_item=lambda split: bar.advance(tasks[split]))


def _write_speech(
    folder: Path, counts: dict[str, int], seed: int, workers: int | None, bar: Progress
) -> dict[str, list[dict]]:
    # Test sentences first: a split's sentences then stay put when the training count changes.
    sentences = demo_sentences(sum(counts.values()), seed)
    test, val, train = (counts[s] for s in ("test", "val", "train"))
    texts = {"test": sentences[:test], "val": sentences[test : test + val]}
    texts["train"] = sentences[test + val : test + val + train]
    manifests = {}
    for split in ("train", "val", "test"):
        voices = TEST_VOICES if split == "test" else TRAIN_VOICES
        clips = plan_clips(split, texts[split], voices, seed)
        task = bar.add_task(f"speech {split}", total=len(clips))
        rows = synthesize(clips, folder, workers, on_done=lambda task=task: bar.advance(task))
        _write_jsonl(folder / f"{split}.jsonl", rows)
        manifests[split] = rows
    return manifests


TEXT_COUNTS = {"train": 4000, "val": 200, "test": 200}
# Bumped when what make_demo writes for the same request changes, so old folders are rebuilt.
FORMAT = 1
# The parts, in the order they are made, and the field of their rows the tokenizer learns from.
TEXT_FIELD = {"shapes": "caption", "speech": "text", "digits": "caption", "text": "target"}
# Written into a part's folder after everything else in it: {"format", "seed", "counts"}.
PART_STAMP = "complete.json"


def restore_source(sentence: str) -> str:
    """The text task's input: the sentence lower-cased, without punctuation."""
    return " ".join(re.sub(r"[^\w\s']", " ", sentence.lower()).split())


def _write_text_pairs(folder: Path, counts: dict[str, int], seed: int) -> dict[str, list[dict]]:
    """Text-to-text demo (multitask): restore the case and punctuation of a sentence."""
    sentences = demo_sentences(sum(counts.values()), seed + 1)
    rows, start = {}, 0
    for split in ("test", "val", "train"):
        chosen = sentences[start : start + counts[split]]
        start += counts[split]
        rows[split] = [{"source": restore_source(t), "target": t} for t in chosen]
        folder.mkdir(parents=True, exist_ok=True)
        _write_jsonl(folder / f"{split}.jsonl", rows[split])
    return rows


def _speech_stats(rows: list[dict]) -> dict:
    return {
        "clips": len(rows),
        "hours": round(sum(row["duration"] for row in rows) / 3600, 3),
        "voices": sorted({row["voice"] for row in rows}),
    }


def _write_tokenizer(path: Path, texts: list[str], vocab_size: int) -> dict:
    from mmseq.data.tokenizer import train_bpe

    tokenizer = train_bpe(texts, vocab_size)
    tokenizer.save(path)
    return {"vocab_size": tokenizer.vocab_size, "trained_on": len(texts)}


def _readme(summary: dict) -> str:
    held_out = ", ".join(f"{colour} {shape}" for colour, shape in sorted(HELD_OUT_PAIRS))
    lines = [
        "# mmseq demo data",
        "",
        f"Generated offline by `mmseq data make-demo` (seed {summary['seed']}).",
        "",
    ]
    if "shapes" in summary:
        lines += [
            "## shapes/: image captioning",
            "",
            "64x64 pictures of one or two shapes, captioned like `a small blue square left of a "
            "large green triangle`. Manifests (JSON lines, `image_filepath` relative to this "
            "folder, `caption`):",
            "",
            *(f"- `{split}.jsonl`: {n} images" for split, n in summary["shapes"].items()),
            "",
            f"Held-out (colour, shape) pairs, never in train/val/test: {held_out}. "
            "`test_heldout_pairs` has at least one of them per picture; `test_mask_renderer` "
            "draws seen pairs with the second, independent renderer.",
            "",
        ]
    if "speech" in summary:
        lines += [
            "## speech/: speech recognition",
            "",
            "16 kHz mono WAV spoken by espeak-ng; sentences from the system's gettext catalogs. "
            "NeMo-style manifests (`audio_filepath`, `duration`, `text`, `voice`, `wpm`); "
            "the test split has other sentences and other voices than training.",
            "",
            *(
                f"- `{split}.jsonl`: {s['clips']} clips, {s['hours']} h, {len(s['voices'])} voices"
                for split, s in summary["speech"].items()
            ),
            "",
        ]
    if "digits" in summary:
        lines += [
            "## digits/: reading handwritten digits",
            "",
            "32x128 strings of 1-4 of scikit-learn's handwritten digits, captioned with the "
            "words (`four one seven`). Handwriting never crosses splits: train uses source "
            "images 0-1199, val 1200-1499, test 1500-1796 (`sources` in each row).",
            "",
            *(f"- `{split}.jsonl`: {n} images" for split, n in summary["digits"].items()),
            "",
        ]
    lines += [
        "## tokenizer.json",
        "",
        f"BPE with {summary['tokenizer']['vocab_size']} tokens, trained on the training "
        "captions and transcripts.",
        "",
    ]
    return "\n".join(lines)

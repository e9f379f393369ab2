"""`python -m mmseq.demo`: the training half of `make demo`.

Makes the shapes data if it is missing, trains `configs/caption_shapes.yaml` for a short CPU
budget, then captions held-out scenes and prints their exact-match rate and CIDEr-D: seen
(colour, shape) pairs, and the six pairs never shown in training.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mmseq.data.demo import make_demo
from mmseq.inference import Captioner
from mmseq.training.cli import run
from mmseq.training.metrics import text_metrics

CONFIG = "configs/caption_shapes.yaml"


def _read(manifest: Path, limit: int) -> tuple[list[str], list[list[str]]]:
    images, references = [], []
    for line in manifest.read_text().splitlines()[:limit]:
        row = json.loads(line)
        captions = row["caption"] if isinstance(row["caption"], list) else [row["caption"]]
        images.append(str(manifest.parent / row["image_filepath"]))
        references.append(captions)
    return images, references


def evaluate(captioner: Captioner, manifest: Path, limit: int, show: int) -> dict[str, float]:
    images, references = _read(manifest, limit)
    results = captioner.caption(images, batch_size=64)
    predictions = [r.caption or "" for r in results]
    for image, prediction, refs in list(zip(images, predictions, references, strict=True))[:show]:
        mark = "ok " if prediction == refs[0] else "   "
        print(f"  {mark}{Path(image).name}: {prediction!r} (truth: {refs[0]!r})")
    return text_metrics(predictions, references, "caption")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmseq.demo", description=__doc__)
    parser.add_argument("--data", default="data/demo", help="demo data folder (made if missing)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget")
    parser.add_argument("--epochs", type=int, default=2, help="max epochs (sizes the schedule)")
    parser.add_argument("--eval-images", type=int, default=500)
    args = parser.parse_args(argv)

    data = Path(args.data)
    if not (data / "shapes" / "train.jsonl").is_file() or not (data / "tokenizer.json").is_file():
        print(f"making the demo data in {data} ...", flush=True)
        make_demo(data, progress=sys.stderr.isatty())
    seconds = int(args.minutes * 60)
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    print(f"training the shapes captioner for at most {args.minutes:g} CPU minutes ...", flush=True)
    cli = run(
        [
            "fit",
            "--config", CONFIG,
            "--model.tokenizer", str(data / "tokenizer.json"),
            "--data.init_args.train", str(data / "shapes" / "train.jsonl"),
            "--data.init_args.val", str(data / "shapes" / "val.jsonl"),
            "--data.init_args.test", str(data / "shapes" / "test.jsonl"),
            "--trainer.max_time", budget,
            "--trainer.max_epochs", str(args.epochs),
        ]
    )
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    print(f"\ncheckpoint: {checkpoint}")
    captioner = Captioner(checkpoint, num_beams=3)
    for title, name in [
        ("held-out scenes, seen (colour, shape) pairs", "test.jsonl"),
        ("the six (colour, shape) pairs never seen in training", "test_heldout_pairs.jsonl"),
    ]:
        print(f"\n{title}:")
        metrics = evaluate(captioner, data / "shapes" / name, args.eval_images, show=4)
        print(
            f"  exact match {metrics['exact_match']:.1%}, CIDEr-D {metrics['cider']:.3f}, "
            f"BLEU-4 {metrics['bleu4']:.3f} ({min(args.eval_images, 500)} images)"
        )
    print(f"\ncaption your own: .venv/bin/mmseq caption --model {checkpoint} IMAGE...")
    return 0


if __name__ == "__main__":
    sys.exit(main())

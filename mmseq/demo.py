"""`python -m mmseq.demo` (`make demo`): what mmseq does, in a few CPU minutes.

1. Speech: a recording of about a minute, spoken by espeak-ng with pauses and a stretch of
   noise, transcribed by the embedded Whisper tiny.en exactly as `mmseq transcribe` does it:
   subtitles with word times (SRT, VTT, JSON, ...), the alignment plot of `--explain`, and the
   word error rate against the script it was spoken from.
2. Training: a reader of handwritten digit strings (`configs/caption_digits.yaml`: a ViT
   encoder and a Transformer decoder, from scratch) trained for a CPU budget with its schedule
   sized to the budget, then tested on handwriting it never saw.
3. What you just saw, and what to try next.

Everything it writes goes under --out (runs/demo) and --data (data/demo); data that is already
there and complete is not made again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

# beside the package in a clone (the demo runs from one: `make demo`)
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "caption_digits.yaml"
SAMPLE_RATE = 16000
# The recording: sentences and pauses in seconds; "noise" is a stretch of hiss, where Whisper
# models tend to invent text. espeak-ng's voices are harder for tiny.en than people: its
# en-us voice at a calm pace is the clearest of those measured (WER 9% vs 13-20%).
VOICE, WORDS_PER_MINUTE = "en-us", 130
SCRIPT: tuple[str | float, ...] = (
    2.0,
    "This recording was made for the demo, with a computer voice.",
    1.0,
    "The quick brown fox jumps over the lazy dog near the river bank.",
    2.5,
    "Please remember to buy milk, eggs and bread on your way home tonight.",
    "noise",
    "The meeting has been moved to Thursday afternoon at three o'clock.",
    1.5,
    "It is going to rain tomorrow, so bring an umbrella to work.",
    4.0,
    "She opened the window and listened to the birds singing in the garden.",
    1.0,
    "Each word of these subtitles carries its own start and end time.",
    2.0,
    "Thank you for listening, and enjoy the rest of the demo.",
    3.0,
)
NOISE_SECONDS, NOISE_LEVEL = 6.0, 0.02
# Counts of the digits task for the demo (mmseq.data.digits); the test handwriting is unseen.
DIGITS = {"n_digits_train": 20000, "n_digits_val": 500, "n_digits_test": 1000}
SHOW = 10  # test strings printed


def make_recording(path: Path) -> str:
    """Speak SCRIPT into `path` (16 kHz mono FLAC) and return the text that was spoken."""
    from mmseq.data.synth import speak

    rng = np.random.default_rng(0)
    pieces, spoken = [], []
    for part in SCRIPT:
        if isinstance(part, str) and part != "noise":
            pieces.append(speak(part, VOICE, WORDS_PER_MINUTE))
            spoken.append(part)
        else:
            seconds = NOISE_SECONDS if part == "noise" else float(part)
            level = NOISE_LEVEL if part == "noise" else 0.0
            pieces.append(level * rng.standard_normal(round(seconds * SAMPLE_RATE)))
    sf.write(path, np.concatenate(pieces).astype(np.float32), SAMPLE_RATE)
    return " ".join(spoken)


def speech(out: Path) -> dict:
    """Part 1: transcribe the demo recording through the CLI; return what to summarise."""
    from mmseq.cli import main as mmseq_main
    from mmseq.training.metrics import normalize_text, wer

    recording = out / "recording.flac"
    print(f"\n== 1. speech: making {recording} (espeak-ng, pauses, 6 s of noise) ...", flush=True)
    script = make_recording(recording)
    seconds = sf.info(str(recording)).duration
    command = [
        "transcribe", str(recording), "--word-timestamps",
        "--output-format", "all", "--output-dir", str(out), "--explain", str(out), "--quiet",
    ]  # fmt: skip
    print(f"$ mmseq {' '.join(command)}", flush=True)
    started = time.perf_counter()
    if mmseq_main(command) != 0:
        raise RuntimeError("the demo transcription failed (see the error above)")
    elapsed = time.perf_counter() - started
    transcript = json.loads((out / "recording.json").read_text(encoding="utf-8"))
    srt = (out / "recording.srt").read_text(encoding="utf-8").strip().split("\n\n")
    print(f"\n{recording.stem}.srt, first cues of {len(srt)}:")
    print("\n\n".join(srt[:4]))
    first_words = transcript["segments"][0].get("words", [])[:4]
    times = ", ".join(f"{w['word'].strip()} {w['start']:.2f}-{w['end']:.2f} s" for w in first_words)
    print(f"\nword times (recording.json): {times} ...")
    error_rate = wer([normalize_text(transcript["text"])], [normalize_text(script)])
    return {"seconds": seconds, "elapsed": elapsed, "wer": error_rate, "cues": len(srt)}


def train(data: Path, out: Path, minutes: float, epochs: int) -> tuple[str, float]:
    """Part 2: make the digits data if needed and train CONFIG for `minutes` (schedule sized
    by `epochs`); return the last checkpoint and the training time in seconds."""
    from mmseq.data.demo import make_demo
    from mmseq.training.cli import run

    print(f"\n== 2. training: the digits data in {data} ...", flush=True)
    make_demo(data, shapes=False, speech=False, progress=sys.stderr.isatty(), **DIGITS)
    seconds = int(minutes * 60)
    print(
        f"training a handwriting reader from scratch for at most {minutes:g} CPU minutes "
        f"({epochs} epochs) ...",
        flush=True,
    )
    started = time.perf_counter()
    cli = run(
        [
            "fit",
            "--config", str(CONFIG),
            "--model.tokenizer", str(data / "tokenizer.json"),
            "--data.init_args.train", str(data / "digits" / "train.jsonl"),
            "--data.init_args.val", str(data / "digits" / "val.jsonl"),
            "--data.init_args.test", str(data / "digits" / "test.jsonl"),
            "--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}",
            "--trainer.max_epochs", str(epochs),
            "--trainer.default_root_dir", str(out / "digits"),
        ]
    )  # fmt: skip
    trainer = cli.trainer
    done = trainer.current_epoch  # epochs finished (the counter stops on the next one)
    if done < epochs:
        print(
            f"\nnote: the {minutes:g}-minute budget ran out after {done} of {epochs} epochs "
            f"({trainer.global_step} steps): this machine ran fewer steps than the README's "
            "figures, so expect lower accuracy. Is another process busy on these cores? "
            "PyTorch's threads wait by spinning, which slows them many-fold on shared cores: "
            "try `OMP_WAIT_POLICY=PASSIVE make demo`, or `make demo DEMO_ARGS='--minutes 12'`.",
            flush=True,
        )
    return trainer.checkpoint_callback.last_model_path, time.perf_counter() - started


def evaluate(checkpoint: str, manifest: Path) -> dict:
    """Read the unseen test handwriting; print SHOW strings; return exact and word accuracy."""
    from mmseq.inference import Captioner
    from mmseq.training.metrics import word_accuracy

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    images = [str(manifest.parent / row["image_filepath"]) for row in rows]
    truths = [row["caption"] for row in rows]
    predictions = [r.caption or "" for r in Captioner(checkpoint).caption(images, batch_size=64)]
    right = [p == t for p, t in zip(predictions, truths, strict=True)]
    print(f"\nunseen handwriting ({manifest}):")
    shown = list(zip(images, predictions, truths, right, strict=True))[:SHOW]
    for image, prediction, truth, ok in shown:
        verdict = "ok" if ok else f"WRONG, truth: {truth!r}"
        print(f"  {Path(image).name}: {prediction!r} ({verdict})")
    return {
        "exact": sum(right) / len(right),
        "words": word_accuracy(predictions, truths),
        "n": len(truths),
        "shown_right": sum(right[:SHOW]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmseq.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="data/demo", help="demo data folder (made if missing)")
    parser.add_argument("--out", default="runs/demo", help="where the demo writes its results")
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget")
    parser.add_argument(
        "--epochs", type=int, default=8, help="epochs the schedule is sized for (default: 8)"
    )
    parser.add_argument("--no-speech", action="store_true", help="skip part 1")
    parser.add_argument("--no-training", action="store_true", help="skip part 2")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    heard = None if args.no_speech else speech(out)
    trained = None
    if not args.no_training:
        checkpoint, seconds = train(data, out, args.minutes, args.epochs)
        if checkpoint:  # none when the budget ended before a checkpoint was written
            trained = evaluate(checkpoint, data / "digits" / "test.jsonl") | {
                "checkpoint": checkpoint,
                "seconds": seconds,
            }
    print(summary(heard, trained, out))
    return 0


def summary(heard: dict | None, trained: dict | None, out: Path) -> str:
    """The closing "what you just saw / what to try next" text."""
    lines = ["", "== what you just saw"]
    if heard:
        lines += [
            f"- speech: {heard['seconds']:.0f} s of audio transcribed by Whisper tiny.en (the "
            f"embedded model, on this CPU) in {heard['elapsed']:.1f} s, word error rate "
            f"{heard['wer']:.1%} against the script; {heard['cues']} subtitle cues timed by their "
            "words, over the pauses and the noise, not through them.",
            f"  files: {out}/recording.{{txt,srt,vtt,tsv,json}}; the alignment plot (which "
            f"audio each word attends to): {out}/recording.png",
        ]
    if trained:
        lines += [
            f"- training: a 1.3 M-parameter reader of handwritten digit strings, from scratch, "
            f"in {trained['seconds'] / 60:.1f} CPU minutes: on {trained['n']} strings of "
            f"handwriting it never saw, {trained['exact']:.1%} read exactly, "
            f"{trained['words']:.1%} of the words right ({trained['shown_right']} of the "
            f"{SHOW} shown).",
            f"  checkpoint: {trained['checkpoint']}",
        ]
    lines += [
        "",
        "== what to try next",
        "- your own audio: .venv/bin/mmseq transcribe FILE.mp3 --word-timestamps "
        "--output-format srt (--vad: batched, for long files)",
    ]
    if trained:
        lines.append(
            f"- read your own digits: .venv/bin/mmseq caption --model {trained['checkpoint']} "
            "IMAGE.png"
        )
    lines += [
        "- train longer: .venv/bin/mmseq fit --config configs/caption_digits.yaml "
        "(about 10 minutes: 95% of the words)",
        "- all the demo data (shapes, speech, text): .venv/bin/mmseq data make-demo data/demo; "
        "the configs in configs/; a server: .venv/bin/mmseq serve (make test installs its extras)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""How long `mmseq data check` takes on a 10,000-row manifest (the issue's bound: under 10 s).

Method
------
- Data, written to a temporary folder before timing: `--rows` speech rows (default 10,000)
  naming 0.1-0.5 s 16 kHz WAV files, one file per row, of which every 50th row is bad in one of
  the ways the check reports (invalid JSON, a missing field, an empty transcript, a missing
  file, a path outside the folder); plus as many caption rows (8x8 PNGs) and text pairs (TSV).
- Timing: `mmseq.data.check.run_check` in this process, `time.perf_counter` around each
  manifest's check, output discarded; the best of `--repeat` runs (default 3), after a first
  untimed run that warms the file-system cache. Then the whole command as a user runs it,
  `mmseq data check MANIFEST` in a new process (Python start-up and imports included: torch,
  and torchvision for captions, take seconds of it), once per manifest.
- Speech and caption rows each stat their file and read its header (libsndfile's `sf.info`;
  Pillow's `verify`); nothing is decoded.
- The bad-row count is checked against the number written, so a fast but wrong check fails.

Run: `.venv/bin/python benchmarks/data_check_speed.py [--rows 10000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from mmseq.data.check import run_check

BAD = 50  # every BAD-th row is bad


def speech_manifest(folder: Path, rows: int) -> tuple[Path, int]:
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, bad = [], 0
    for i in range(rows):
        seconds = 0.1 + 0.4 * rng.random()
        path = f"clips/{i}.wav"
        sf.write(folder / path, np.zeros(int(16000 * seconds), np.float32), 16000)
        row = {"audio_filepath": path, "duration": round(seconds, 3), "text": f"utterance {i}"}
        if i % BAD == BAD - 1:
            bad += 1
            kind = (i // BAD) % 5
            row = [
                "{not json",
                {"audio_filepath": path, "text": "no duration"},
                {**row, "text": " "},
                {**row, "audio_filepath": "clips/missing.wav"},
                {**row, "audio_filepath": "../outside.wav"},
            ][kind]
        lines.append(row if isinstance(row, str) else json.dumps(row))
    manifest = folder / "speech.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, bad


def caption_manifest(folder: Path, rows: int) -> tuple[Path, int]:
    (folder / "img").mkdir(parents=True)
    lines, bad = [], 0
    for i in range(rows):
        path = f"img/{i}.png"
        Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(folder / path)
        row = {"image_filepath": path, "caption": f"a square number {i}"}
        if i % BAD == BAD - 1:
            bad += 1
            row = {**row, "caption": ""}
        lines.append(json.dumps(row))
    manifest = folder / "captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, bad


def text_manifest(folder: Path, rows: int) -> tuple[Path, int]:
    folder.mkdir(parents=True)
    lines, bad = ["source\ttarget"], 0
    for i in range(rows):
        if i % BAD == BAD - 1:
            bad += 1
            lines.append(f"only one column {i}")
        else:
            lines.append(f"source sentence {i}\ttarget sentence {i}")
    manifest = folder / "pairs.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        manifests = [
            make(root / name, args.rows)
            for name, make in [
                ("speech", speech_manifest),
                ("captions", caption_manifest),
                ("text", text_manifest),
            ]
        ]
        print(f"wrote {len(manifests)} x {args.rows} rows in {time.perf_counter() - start:.1f} s")
        for manifest, bad in manifests:
            times = []
            for _ in range(args.repeat + 1):
                out = io.StringIO()
                start = time.perf_counter()
                code = run_check([manifest], out=out)
                times.append(time.perf_counter() - start)
            found = out.getvalue().count(f"{manifest}, line ")
            assert code == 1 and found == bad, (code, found, bad)
            summary = out.getvalue().splitlines()[-2]
            print(f"{min(times[1:]):6.2f} s  {summary.removeprefix(str(manifest.parent) + '/')}")
        for manifest, _ in manifests:
            command = [sys.executable, "-m", "mmseq.cli", "data", "check", str(manifest)]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, check=False)
            seconds = time.perf_counter() - start
            assert done.returncode == 1, done.stderr.decode()
            print(f"{seconds:6.2f} s  mmseq data check {manifest.name} (a new process)")


if __name__ == "__main__":
    main()

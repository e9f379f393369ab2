"""benchmarks/cold_start.py runs end to end at its smallest (tiny.en, float32, greedy, the 4 s
clip, one repeat: four short processes) and writes the JSON it documents. It checks that the
benchmark works, not any speed: the figures come from running it on an idle machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cold_start.py"


def test_smallest_run_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    smallest = ["--models", "tiny.en", "--compute-types", "float32", "--beam-sizes", "1"]
    smallest += ["--repeats", "1", "--files", "clip", "--threads", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *smallest], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fw/mmseq" in done.stdout  # the table

    figures = json.loads(out.read_text())
    assert figures["threads"] == 1 and figures["repeats"] == 1
    assert figures["cpu"]["model_name"] and isinstance(figures["native_bf16"], bool)
    assert figures["files"]["clip"]["audio_s"] == pytest.approx(4.0, abs=0.5)
    (row,) = figures["results"]
    assert (row["model"], row["compute_type"], row["beam_size"], row["file"]) == (
        "tiny.en",
        "float32",
        1,
        "clip",
    )
    for engine in ("mmseq", "faster_whisper"):
        runs = row[engine]
        assert len(runs["walls_s"]) == 1 and runs["median_s"] == runs["min_s"] > 0
        assert runs["cpu_s"] > 0 and runs["texts_identical"]
        assert "umbrella" in runs["text"].lower() and runs["wer"] <= 0.2
        assert {"start", "load", "decode"} <= set(runs["split_s"])
    assert row["faster_whisper"]["compute_type"] == "float32"
    assert row["ratio"] == pytest.approx(
        row["faster_whisper"]["median_s"] / row["mmseq"]["median_s"]
    )

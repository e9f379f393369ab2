"""benchmarks/gpu_check.py runs end to end on the CPU (`--device cpu --quick`): every section
prints its table, none fails, and the last line is the JSON report (the GPU figures themselves
need a GPU: see the README's benchmarks)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
TITLES = (
    "== training step: Whisper-base-sized model ==",
    "== text generation: greedy, tokens/s ==",
    "== transcription: audio seconds per second ==",
)


def test_gpu_check_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--threads", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for title in TITLES:
        assert title in run.stdout
    report = json.loads(run.stdout.strip().splitlines()[-1])["gpu_check"]
    assert json.loads(out.read_text())["gpu_check"] == report
    assert report["failed"] == [] and report["skipped"] == [] and report["quick"]
    for section in ("training", "text", "transcription"):
        rows = report[section]["rows"]
        assert rows and all(row["mmseq"] > 0 for row in rows if section != "text")
    training = report["training"]["rows"][0]
    assert training["extra"]["model_tflop_per_sample"] > 0
    paths = {row["path"] for row in report["transcription"]["rows"]}
    assert paths == {"clip", "seq", "vad"}
    assert all(row["peer"] for row in report["transcription"]["rows"])


def test_gpu_check_failing_section_sets_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section that raises is reported and the run goes on, exiting 1; a spent budget skips
    what is left without failing."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # for its dataclasses
    spec.loader.exec_module(gpu_check)  # puts benchmarks/ on sys.path for its imports

    def broken(*_args):  # noqa: ANN202
        raise RuntimeError("no such kernel")

    gpu_check.RUNNERS["training"] = broken  # a module of this test's own
    gpu_check.RUNNERS["text"] = lambda *_args: None
    argv = ["--device", "cpu", "--quick", "--sections", "training", "text"]
    assert gpu_check.main([*argv, "--json", str(tmp_path / "a.json")]) == 1
    report = json.loads((tmp_path / "a.json").read_text())["gpu_check"]
    assert report["failed"] == ["training"]
    assert "no such kernel" in report["training"]["error"]
    assert report["text"]["rows"] == []
    assert gpu_check.main([*argv, "--budget-s", "0", "--json", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())["gpu_check"]
    assert report["skipped"] == ["section training", "section text"]

"""`python -m mmseq.demo` end to end on a small budget: the recording is transcribed with
subtitles, word times and the alignment plot, the digits reader is trained and tested, and the
closing summary reports both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mmseq.demo as demo
from mmseq.data.demo import make_demo


def test_demo_transcribes_trains_and_summarises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (1.0, "Please remember to buy milk.", "noise", "Thank you.", 1.0)
    monkeypatch.setattr(demo, "SCRIPT", script)
    digits = {"n_digits_train": 64, "n_digits_val": 8, "n_digits_test": 12}
    monkeypatch.setattr(demo, "DIGITS", digits)
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder lands here
    out, data = tmp_path / "out", tmp_path / "data"
    args = ["--out", str(out), "--data", str(data), "--minutes", "1", "--epochs", "1"]
    assert demo.main(args) == 0
    printed = capsys.readouterr().out

    transcript = json.loads((out / "recording.json").read_text())
    assert "milk" in transcript["text"].lower()
    assert transcript["segments"][0]["words"], "word times in the JSON"
    assert (out / "recording.srt").read_text().startswith("1\n00:00:0")
    assert (out / "recording.png").stat().st_size > 0  # the alignment plot

    checkpoint = next((out / "digits").rglob("last.ckpt"))
    assert "== what you just saw" in printed and "== what to try next" in printed
    assert "word error rate" in printed and f"checkpoint: {checkpoint}" in printed
    assert printed.count("WRONG, truth") + printed.count("(ok)") == demo.SHOW
    # the data is made once: the next run keeps it
    assert make_demo(data, shapes=False, speech=False, progress=False, **demo.DIGITS)["reused"]


def test_demo_says_when_its_budget_ran_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    digits = {"n_digits_train": 64, "n_digits_val": 8, "n_digits_test": 12}
    monkeypatch.setattr(demo, "DIGITS", digits)
    monkeypatch.chdir(tmp_path)
    args = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--no-speech"]
    assert demo.main([*args, "--minutes", "0.01", "--epochs", "3"]) == 0  # a 0-second budget
    printed = capsys.readouterr().out
    assert "note: the 0.01-minute budget ran out after 0 of 3 epochs" in printed
    assert "OMP_WAIT_POLICY=PASSIVE" in printed

"""`mmseq transcribe` as a user runs it: a subprocess, results on stdout, everything else on stderr.

Each run that gets as far as loading tiny.en costs about 1.5 s, so the error cases share runs.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
# tiny.en transcribes these two bundled clips word for word
GOOD = ["clip4_en-m3.flac", "clip5_en-gb-x-rp.flac"]


def mmseq(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmseq.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    with (CLIPS / "transcripts.tsv").open(newline="") as f:
        return {row["file"]: row["text"] for row in csv.DictReader(f, delimiter="\t")}


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """Inputs that must each be refused with a message naming the file."""
    files = {  # a missing one is refused before the model loads (tests/test_cli_conventions.py)
        "empty": tmp_path / "empty.wav",
        "text": tmp_path / "notes.wav",
    }
    files["empty"].touch()
    files["text"].write_text("this is not audio\n")
    return files


@pytest.fixture
def long_recording(tmp_path: Path) -> Path:
    """40 s: the two GOOD clips 12 s apart, then silence; more than one 30 s window."""
    first, second = (sf.read(CLIPS / name, dtype="float32")[0] for name in GOOD)
    audio = np.zeros(40 * 16000, dtype=np.float32)
    audio[: len(first)] = first
    start = len(first) + 12 * 16000
    audio[start : start + len(second)] = second
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    return path


def test_one_file_prints_only_its_text(expected: dict[str, str]) -> None:
    run = mmseq("transcribe", CLIPS / GOOD[0])
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected[GOOD[0]] + "\n"
    assert "loaded" in run.stderr and "transcribed" in run.stderr  # logs go to stderr


def test_bad_files_are_reported_and_good_ones_still_transcribed(
    expected: dict[str, str], bad_files: dict[str, Path], long_recording: Path
) -> None:
    good = [CLIPS / name for name in GOOD]
    run = mmseq("transcribe", good[0], *bad_files.values(), long_recording, good[1])
    assert run.returncode == 1
    texts = [expected[name] for name in GOOD]
    assert run.stdout.splitlines() == [
        f"{good[0]}\t{texts[0]}",
        f"{long_recording}\t{' '.join(texts)}",
        f"{good[1]}\t{texts[1]}",
    ]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("mmseq: error:")]
    assert len(errors) == len(bad_files), run.stderr
    for (case, path), line in zip(bad_files.items(), errors, strict=True):
        assert str(path) in line, f"{case}: {line}"
    assert "empty" in errors[0]
    assert "not a readable audio file" in errors[1]


def test_only_bad_input_fails_with_empty_stdout(bad_files: dict[str, Path]) -> None:
    run = mmseq("transcribe", bad_files["empty"])
    assert run.returncode == 1
    assert run.stdout == ""
    assert f"mmseq: error: {bad_files['empty']}" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_model_path_is_a_usage_error() -> None:
    run = mmseq("transcribe", "--model", "/nonexistent", CLIPS / GOOD[0])
    assert run.returncode == 2
    assert run.stdout == ""
    assert "mmseq: error:" in run.stderr and "/nonexistent" in run.stderr
    assert "Traceback" not in run.stderr


def test_compile_with_int8_is_a_usage_error() -> None:
    run = mmseq("transcribe", "--compile", "--compute-type", "int8", CLIPS / GOOD[0])
    assert run.returncode == 2 and run.stdout == ""
    assert "mmseq: error: compile: not with compute_type int8" in run.stderr
    assert "Traceback" not in run.stderr


def test_model_dir_without_checkpoint(tmp_path: Path) -> None:
    run = mmseq("transcribe", "--model", tmp_path, CLIPS / GOOD[0])
    assert run.returncode == 2
    assert f"{tmp_path}: unknown checkpoint layout" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("command", "mentions"), [([], "transcribe"), (["transcribe"], "--batch-size")]
)
def test_help(command: list[str], mentions: str) -> None:
    run = mmseq(*command, "--help")
    assert run.returncode == 0
    assert run.stdout.startswith("usage: mmseq")
    assert mentions in run.stdout


def test_decoding_thresholds_and_threads_reach_the_transcriber(monkeypatch) -> None:  # noqa: ANN001
    import torch

    import mmseq.transcription
    from mmseq.cli import main

    seen = {}

    def iter_transcribe(self, files, options, progress=None):  # noqa: ANN001, ANN202
        seen["options"], seen["threads"] = options, torch.get_num_threads()
        return iter([])

    monkeypatch.setattr(mmseq.transcription.Transcriber, "iter_transcribe", iter_transcribe)
    threads = torch.get_num_threads()
    try:
        args = ["-q", "transcribe", str(CLIPS / GOOD[0]), "--threads", "1"]
        args += ["--no-speech-threshold", "none", "--logprob-threshold", "-0.5"]
        args += ["--compression-ratio-threshold", "NONE", "--clip-timestamps", "1,3.5,7"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    options = seen["options"]
    assert options.no_speech_threshold is None and options.compression_ratio_threshold is None
    assert options.logprob_threshold == -0.5 and seen["threads"] == 1
    assert options.clip_timestamps == (1.0, 3.5, 7.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "-1"], "--threads: expected a positive number, got -1"),
        (["--logprob-threshold", "abc"], "expected a number or 'none', got 'abc'"),
        (["--clip-timestamps", "5,x"], "expected seconds separated by commas"),
        (["--clip-timestamps", "5,2"], "each start before its end"),
        # option errors name the flags, not the Python fields
        (["--max-line-count", "2", "--word-timestamps"], "--max-line-count needs --max-line-width"),
        (["--hallucination-silence-threshold", "2"], "--hallucination-silence-threshold: needs"),
        (["--max-new-tokens", "0"], "--max-new-tokens: expected a number >= 1, got 0"),
        (["--beam-size", "0"], "--beam-size: expected a number >= 1, got 0"),
        (["--length-penalty", "3"], "--length-penalty: expected a number from 0 to 1"),
        (["--beam-size", "2", "--patience", "0.1"], "--patience: expected a number > 0"),
        (["--temperature", "-1"], "--temperature: expected values >= 0"),
        (["--language", "de"], "mmseq: error: language 'de': this model is English-only"),
    ],
)
def test_bad_options_are_usage_errors(flags: list[str], message: str) -> None:
    run = mmseq("transcribe", CLIPS / GOOD[0], *flags)
    assert run.returncode == 2 and run.stdout == ""
    assert message in run.stderr and "Traceback" not in run.stderr


def test_outputs_that_would_overwrite_each_other_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "talk.flac").write_bytes((CLIPS / GOOD[0]).read_bytes())
    first, second = tmp_path / "a" / "talk.flac", tmp_path / "b" / "talk.flac"
    out = tmp_path / "out"
    run = mmseq("transcribe", first, second, "--output-format", "txt", "--output-dir", out)
    assert run.returncode == 2 and run.stdout == ""
    assert f"{first} and {second} would both write {out / 'talk'}.*" in run.stderr
    assert not out.exists()  # refused before any work


def test_unwritable_output_dir_is_refused_before_the_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = mmseq("transcribe", CLIPS / GOOD[0], "--output-dir", blocker / "out")
    assert run.returncode == 2 and run.stdout == ""  # no transcript printed first
    assert f"--output-dir {blocker / 'out'}: cannot create the directory" in run.stderr


def test_version() -> None:
    run = mmseq("--version")
    assert run.returncode == 0 and run.stdout.startswith("mmseq ")


def test_package_transcribe_stays_the_function() -> None:
    """`mmseq.transcribe` is the one-call function even after its module is imported (a
    module of the same name would replace it on the package)."""
    import mmseq
    import mmseq.transcription
    from mmseq import transcribe

    assert transcribe is mmseq.transcribe is mmseq.transcription.transcribe
    assert callable(transcribe)


COMMANDS = {
    "transcribe": [str(CLIPS / GOOD[0])],
    "caption": ["--model", "some.ckpt", str(CLIPS / GOOD[0])],  # exists: inputs are checked first
    "translate": ["--model", "some-folder", str(CLIPS / "transcripts.tsv")],
    "serve": [],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_gpu_this_machine_lacks_is_a_usage_error(command: str, capsys) -> None:  # noqa: ANN001
    """`--device cuda` without a GPU, and float16 on the CPU, are refused with one line before
    any model loads (they were a 36-line traceback, and silently slow)."""
    import torch

    from mmseq.cli import main

    if torch.cuda.is_available():  # the refusal is about machines without one
        pytest.skip("this machine has a CUDA GPU")
    assert main([command, "--device", "cuda", *COMMANDS[command]]) == 2
    err = capsys.readouterr().err
    assert "mmseq: error: --device cuda: no CUDA GPU is available here; use cpu" in err
    assert "Traceback" not in err
    if command != "caption":  # captioners run in float32
        assert main([command, "--compute-type", "float16", *COMMANDS[command]]) == 2
        assert "--compute-type float16 needs a CUDA GPU" in capsys.readouterr().err


def test_no_option_is_taken_by_its_prefix(capsys) -> None:  # noqa: ANN001
    """A prefix of an option is a typo, not the option: `--word` (of --word-timestamps) and,
    in LightningCLI's commands, `--trainer.max_epoch` (of max_epochs) were both accepted."""
    from mmseq.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["transcribe", "--word", str(CLIPS / GOOD[0])])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --word" in capsys.readouterr().err
    config = str(Path(__file__).resolve().parents[1] / "configs" / "caption_shapes.yaml")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", config, "--trainer.max_epoch", "3", "--print_config"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --trainer.max_epoch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # the full name still works
        main(["fit", "--config", config, "--trainer.max_epochs", "3", "--print_config"])
    assert exit_.value.code == 0
    assert "max_epochs: 3" in capsys.readouterr().out


def test_debug_shows_the_traceback_of_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmseq.cli import main

    missing = str(tmp_path / "missing.wav")
    assert main(["transcribe", missing]) == 2
    assert "missing.wav" in capsys.readouterr().err
    with pytest.raises((ValueError, OSError), match="missing.wav"):
        main(["transcribe", "--debug", missing])
    monkeypatch.setenv("MMSEQ_DEBUG", "1")
    with pytest.raises((ValueError, OSError), match="missing.wav"):
        main(["transcribe", missing])


def test_transcribe_flags_default_to_the_option_fields() -> None:
    """One source for every default: each transcribe flag named after a field of
    TranscribeOptions or SubtitleOptions parses, when absent, to that field's default (a
    default restated in the parser and later changed in one place only fails here)."""
    from dataclasses import MISSING, fields

    from mmseq.cli import build_parser
    from mmseq.transcription import TranscribeOptions
    from mmseq.writers import SubtitleOptions

    args = vars(build_parser().parse_args(["transcribe", "x.wav"]))
    checked = 0
    for options in (TranscribeOptions, SubtitleOptions):
        for field in fields(options):
            if field.name not in args:
                continue
            default = field.default if field.default_factory is MISSING else field.default_factory()
            assert args[field.name] == default, (options.__name__, field.name)
            checked += 1
    assert checked >= 20, checked

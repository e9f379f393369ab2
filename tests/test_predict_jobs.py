"""Offline jobs on several processes (`mmseq.jobs`, Lightning's Trainer.predict on the CPU with
gloo): two processes give what one `mmseq` process gives, byte for byte; a job SIGKILLed
mid-way and rerun with --resume ends with the same outputs, no input processed twice (each
process logs the units it finished, the test reads the logs); changed options are redone and
said once; bad options are one-line errors; a failing process stops the job, no hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import CLIPS, time_limit
from text_fixtures import gettext_strings, make_tokenizer_folder

from mmseq.cli import main as mmseq_main

pytestmark = pytest.mark.usefixtures("one_thread")

JOB_TIMEOUT_S = 150  # a 2-process job here takes 10-30 s (Lightning's import in each)


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MarianMT folder with a real SentencePiece tokenizer; beam 2."""
    import transformers
    from transformers import AutoTokenizer

    folder = make_tokenizer_folder("marian", tmp_path_factory.mktemp("marian"))
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    shape = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1}
    shape |= {"encoder_attention_heads": 4, "decoder_attention_heads": 4}
    shape |= {"encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64}
    pad, eos = tok.pad_token_id, tok.eos_token_id
    config = transformers.MarianConfig(
        vocab_size=len(tok),
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
        activation_function="swish",
        scale_embedding=True,
        init_std=0.2,
        **shape,
    )
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        model.final_logits_bias[0, eos] += 2.0
    model.eval().save_pretrained(folder)
    generation = {"decoder_start_token_id": pad, "eos_token_id": eos, "pad_token_id": pad}
    generation |= {"bad_words_ids": [[pad]], "max_length": 12, "num_beams": 2}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files, 44 lines (an empty one among them), cut into 11 windows of 4 lines."""
    lines = [" ".join(s.split()) for s in gettext_strings(43, seed=3)]
    folder = tmp_path_factory.mktemp("texts")
    first, second = folder / "a.txt", folder / "b.txt"
    first.write_text("\n".join(lines[:25]) + "\n", encoding="utf-8")
    second.write_text("\n".join(lines[25:]) + "\n\n", encoding="utf-8")
    return [first, second]


def _translate_args(marian: Path, texts: list[Path], *extra: str) -> list[str]:
    small = ["--window", "4", "--batch-size", "2", "--output-format", "jsonl"]
    return ["translate", "--model", str(marian), *map(str, texts), *small, *extra]


def _one_process(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    capsys.readouterr()
    with time_limit(JOB_TIMEOUT_S):
        code = mmseq_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _job(argv: list[str], cwd: Path, script: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m mmseq.cli ARGV` (the `mmseq` command) or `python SCRIPT ARGV`, as its own
    process group."""
    entry = [str(script)] if script else ["-m", "mmseq.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *entry, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        start_new_session=True,  # a kill of the job's group reaches its processes only
    )


def _processed(job_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for log in sorted((job_dir / "processed").glob("rank*.log"))
        for line in log.read_text().splitlines()
    ]


# a script run as `python SCRIPT ARGS` (as the `mmseq` console script is): Lightning starts the
# second process by running it again; HOOK adds a callback or a fault to every process
_DRIVER = """
import os, signal, sys
import lightning.pytorch as pl
from mmseq.cli import build_parser
from mmseq.jobs import run_job
{hook}
args = build_parser().parse_args(sys.argv[1:])
try:
    sys.exit(run_job(args.command, args, list(args.files), callbacks=CALLBACKS))  # translate
except ValueError as err:
    print(f"mmseq: error: {{err}}", file=sys.stderr)
    sys.exit(2)
"""

_KILL_AFTER_2 = """
class KillAfter(pl.Callback):
    # SIGKILLs every process of the job once rank 0 has written 2 units' results
    done = 0
    def on_predict_batch_end(self, trainer, *args):
        self.done += 1
        if trainer.global_rank == 0 and self.done == 2:
            os.killpg(os.getpgrp(), signal.SIGKILL)
CALLBACKS = [KillAfter()]
"""

_RANK1_FAILS = """
from mmseq.jobs.tasks import TextTask
def run(self, unit):
    if int(os.environ.get("LOCAL_RANK", "0")) == 1:
        raise ValueError("rank one cannot read its share")
    return TextTask_run(self, unit)
TextTask_run, TextTask.run = TextTask.run, run
CALLBACKS = []
"""


def _driver(tmp_path: Path, hook: str) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(_DRIVER.format(hook=textwrap.dedent(hook)))
    return path


def test_a_killed_job_resumes_with_the_same_outputs(
    marian: Path,
    texts: list[Path],
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    argv = _translate_args(marian, texts)
    _, expected, _ = _one_process(argv, capsys)
    job_dir = tmp_path / "job"
    flags = ["--devices", "2", "--job-dir", str(job_dir)]
    killed = _job([*argv, *flags], tmp_path, _driver(tmp_path, _KILL_AFTER_2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert killed.stdout == ""
    done = {p.name: p.read_bytes() for p in (job_dir / "parts").glob("*.json")}
    assert 2 <= len(done) < 11  # mid-way; each unit's results written whole or not at all
    first = {row["unit"] for row in _processed(job_dir)}  # a kill between part and log line
    assert first <= {int(name[:-5]) for name in done}  # can leave a part unlogged

    resumed = _job([*argv, *flags, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout == expected
    # the units finished before the kill were kept as they were, and only the others were run
    assert all((job_dir / "parts" / name).read_bytes() == data for name, data in done.items())
    runs = _processed(job_dir)
    second = [row["unit"] for row in runs if row["run"] != runs[0]["run"]]
    assert sorted(second) == sorted(set(range(11)) - {int(name[:-5]) for name in done})
    assert {row["rank"] for row in runs if row["run"] != runs[0]["run"]} == {0, 1}
    units = [row["unit"] for row in runs]
    assert len(units) == len(set(units))  # no unit finished twice
    assert "other options" not in resumed.stderr


def test_changed_options_are_redone_and_said_once(
    marian: Path,
    texts: list[Path],
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    """One process through the job path (--resume alone makes a job); in this process."""
    copies = [tmp_path / p.name for p in texts]
    for source, copy in zip(texts, copies, strict=True):
        copy.write_bytes(source.read_bytes())
    texts = copies
    job = ["--job-dir", str(tmp_path / "job"), "--resume"]
    greedy = _translate_args(marian, texts, "--beam-size", "1")
    _, expected, _ = _one_process(greedy, capsys)
    code, out, err = _one_process_job([*greedy, *job], capsys)
    assert (code, out) == (0, expected) and "other options" not in err
    assert len(_processed(tmp_path / "job")) == 11

    beams = _translate_args(marian, texts, "--beam-size", "3")
    _, expected, _ = _one_process(beams, capsys)
    code, out, err = _one_process_job([*beams, *job], capsys)
    assert (code, out) == (0, expected)
    assert err.count("other options") == 1
    assert "11 of 11 unit(s)" in err and "--beam-size 1 -> 3" in err
    assert len(_processed(tmp_path / "job")) == 22

    # the same options again: nothing to do, the outputs merged from the job folder
    code, out, err = _one_process_job([*beams, *job, "--batch-size", "5"], capsys)
    assert (code, out) == (0, expected) and "other" not in err
    assert len(_processed(tmp_path / "job")) == 22

    # a line edited since: its window is redone
    texts[0].write_text("Quit\n" + texts[0].read_text(encoding="utf-8").split("\n", 1)[1])
    _, expected, _ = _one_process(beams, capsys)
    code, out, err = _one_process_job([*beams, *job], capsys)
    assert (code, out) == (0, expected) and "other options" not in err
    assert "1 of 11 unit(s)" in err and "from other inputs" in err
    assert [row["unit"] for row in _processed(tmp_path / "job")][22:] == [0]


def _one_process_job(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    capsys.readouterr()
    with time_limit(JOB_TIMEOUT_S):
        code = mmseq_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "0"], "--devices: expected a number >= 1, got 0"),
        (["--devices", "-2"], "--devices: expected a number >= 1, got -2"),
        (["--num-nodes", "two"], "--num-nodes: expected a whole number, got 'two'"),
        (["--strategy", "fsdp"], "--strategy: invalid choice: 'fsdp'"),
    ],
)
def test_bad_job_flags_are_usage_errors(flags: list[str], message: str, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exit_:
        mmseq_main(["translate", "--model", "m", "in.txt", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_job_inputs_are_one_line_errors(
    marian: Path,
    texts: list[Path],
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    job = ["--job-dir", str(tmp_path / "job")]
    cases = [
        (
            _translate_args(marian, texts, "--resume", "--job-dir", str(blocker / "job")),
            f"mmseq: error: --job-dir {blocker / 'job'}: cannot create",
        ),
        (["translate", "--model", str(marian), "-", "--resume", *job], "reads files, not stdin"),
        (
            ["transcribe", str(CLIPS / "clip1_en-us.flac"), "--resume", "--verbose", *job],
            "--verbose: not with --devices, --num-nodes or --resume",
        ),
        (
            _translate_args(marian, texts, "--devices", "2", "--device", "cuda:1", *job),
            "--device cuda:1 with --devices",
        ),
    ]
    if not torch.cuda.is_available():
        argv = _translate_args(marian, texts, "--devices", "2", "--device", "cuda", *job)
        cases.append((argv, "mmseq: error: --devices 2 --num-nodes 1: "))
    for argv, message in cases:
        code, out, err = _one_process_job(argv, capsys)
        assert code == 2 and out == "", argv
        assert message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


def test_a_failing_process_stops_the_job(marian: Path, texts: list[Path], tmp_path: Path) -> None:
    argv = [*_translate_args(marian, texts), "--devices", "2", "--job-dir", str(tmp_path / "j")]
    failed = _job(argv, tmp_path, _driver(tmp_path, _RANK1_FAILS))
    assert failed.returncode != 0 and failed.stdout == ""
    assert "rank one cannot read its share" in failed.stderr


def test_two_processes_transcribe_as_one_does(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """tiny.en on the bundled clips and a file that is not audio: the same stdout, errors,
    exit status and transcript files (json and srt with word timestamps)."""
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n")
    clips = sorted(str(p) for p in CLIPS.glob("*.flac"))[:4]
    flags = ["--word-timestamps", "--output-format", "all", "--batch-size", "2"]

    def argv(out: str) -> list[str]:
        return ["transcribe", *clips, str(bad), *flags, "--output-dir", str(tmp_path / out)]

    code, expected, err = _one_process(argv("one"), capsys)
    assert code == 1 and "notes.wav" in err
    job = _job([*argv("two"), "--devices", "2", "--job-dir", "job"], cwd=tmp_path)
    assert job.returncode == 1, job.stderr[-3000:]
    assert job.stdout == expected
    assert [line for line in job.stderr.splitlines() if "error" in line] == [
        line for line in err.splitlines() if "error" in line
    ]
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert len(one) == 4 * 5 and one == two


def test_caption_job_as_one_process_does(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The job path in this process (--resume alone makes a job): a random ViT + GPT-2
    folder, batches of 2 images and a file that is not an image: the command's stdout,
    error line and exit status; run again, nothing is redone."""
    import importlib.util

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "memory_inputs", root / "benchmarks/memory_inputs.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = bench.build_captioner(tmp_path / "vit-gpt2")
    images = tmp_path / "images"
    images.mkdir()
    for i, color in enumerate(["red", "blue", "green", "white"]):
        Image.new("RGB", (40 + 8 * i, 32), color).save(images / f"{i}.png")
    (images / "2b.png").write_text("not an image")
    argv = ["caption", "--model", str(model), str(images), "--batch-size", "2"]
    argv += ["--beam-size", "1", "--max-new-tokens", "6"]
    code, expected, err = _one_process(argv, capsys)
    assert code == 1 and len(expected.splitlines()) == 4 and "2b.png" in err
    job = ["--resume", "--job-dir", str(tmp_path / "job")]
    for runs in (3, 3):  # 5 images in 3 units; the second run finds them done
        assert _one_process_job([*argv, *job], capsys) == (1, expected, err)
        assert len(_processed(tmp_path / "job")) == runs

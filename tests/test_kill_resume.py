"""No lost work: `mmseq fit` killed at random moments (between batches, and before, during or
after writing a checkpoint, the kernel stopping it mid-write with the file half written) and
resumed with `--ckpt_path last`, as often as it is killed, ends bit-identical to an
uninterrupted run of the same seed: same weights, same batch at each step, no step lost or
trained twice (CPU, deterministic mode). `make test` runs 5 seeds, `make fuzz` 20 more."""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from training_helpers import (
    make_tiny_demo,
    read_metrics,
    resume_config,
    run_cli,
    with_callbacks,
    write_config,
)

from mmseq.cli import main
from mmseq.serialization import atomic_open, write_bytes_atomic

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 14  # 2 epochs of 7 batches, a checkpoint and last.ckpt every 2 steps
PHASES = ("batch", "before", "during", "after")


def _config(demo: Path, out: Path, log: str) -> dict:
    """test_resume's run with a checkpoint every 2 steps (written by `mmseq fit`'s default
    AtomicCheckpointIO), each batch and save logged to `log`."""
    log_run = {"class_path": "training_helpers.LogRun", "init_args": {"path": str(out / log)}}
    return resume_config(demo, out, 2, "mmseq.training.callbacks.ModelCheckpoint", log_run)


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Reference:
    demo: Path
    ids: list[list[str]]  # the batch at each step
    saves: list[tuple[int, int]]  # (step, nth checkpoint of that step)
    checkpoint_size: int
    weights: dict[str, torch.Tensor]
    val: dict[str, str]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The uninterrupted run, which every kill point is compared with."""
    root = tmp_path_factory.mktemp("kill_resume")
    demo = make_tiny_demo(root / "demo", shapes=24)
    out = root / "whole"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = write_config(root / "whole.yaml", _config(demo, out, "log.jsonl"))
        assert main(["fit", "--config", config]) == 0
    finally:
        torch.set_num_threads(threads)
    log = _log(out / "log.jsonl")
    ids = [row["ids"] for row in log if "batch" in row]
    assert [row["batch"] for row in log if "batch" in row] == list(range(STEPS))
    saves, counts = [], {}
    for row in log:
        if "save" in row:
            counts[row["save"]] = counts.get(row["save"], 0) + 1
            saves.append((row["save"], counts[row["save"]]))
    val = [row for row in read_metrics(out) if "val/loss" in row][-1]
    return Reference(
        demo,
        ids,
        saves,
        (out / "checkpoints" / "last.ckpt").stat().st_size,
        torch.load(out / "record" / "rank0.pt", weights_only=True),
        val,
    )


@dataclass(frozen=True)
class KillPoint:
    phase: str  # "batch": SIGKILL as the batch of `step` starts; else see KillAtSave
    step: int
    nth: int = 1
    size: int = 0  # "during": bytes written when the kernel stops the process

    def callback(self) -> dict:
        if self.phase == "batch":
            return {"class_path": "training_helpers.KillAtStep", "init_args": {"step": self.step}}
        args = {"step": self.step, "nth": self.nth, "phase": self.phase, "size": self.size}
        return {"class_path": "training_helpers.KillAtSave", "init_args": args}

    def stops_with(self) -> int:
        return signal.SIGXFSZ if self.phase == "during" else signal.SIGKILL


def kill_points(seed: int, ref: Reference) -> list[KillPoint]:
    """One or two kill points at increasing steps (each resumed run is killed again at the
    next), chosen among every batch and every checkpoint before the last step."""
    rng = random.Random(seed)
    chosen: list[KillPoint] = []
    for _ in range(rng.choice((1, 2))):
        after = chosen[-1].step if chosen else 0
        phase = rng.choice(PHASES)
        if phase == "batch":
            candidates = [(step, 1) for step in range(after + 1, STEPS)]
        else:
            candidates = [(step, nth) for step, nth in ref.saves if after < step < STEPS]
        if not candidates:
            break
        step, nth = rng.choice(candidates)
        size = rng.randrange(1, ref.checkpoint_size * 9 // 10) if phase == "during" else 0
        chosen.append(KillPoint(phase, step, nth, size))
    return chosen


def _resumed_from(out: Path) -> int:
    """The step `--ckpt_path last` resumes from (0: no last.ckpt yet, a fresh start)."""
    last = out / "checkpoints" / "last.ckpt"
    return torch.load(last, weights_only=True)["global_step"] if last.exists() else 0


def check_kill_and_resume(seed: int, ref: Reference, tmp_path: Path) -> None:
    points = kill_points(seed, ref)
    out = tmp_path / "run"
    env = {"OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # Lightning's own temp files
    starts = [0]
    for i, point in enumerate(points):
        config = with_callbacks(_config(ref.demo, out, f"log{i}.jsonl"), point.callback())
        args = ["fit", "--config", write_config(tmp_path / f"killed{i}.yaml", config)]
        if i > 0:
            args += ["--ckpt_path", "last"]
        assert run_cli(args, env=env) == -point.stops_with(), point
        if point.phase == "during":  # the half-written file is a temporary one, beside
            assert list((out / "checkpoints").glob(".*.ckpt.*.tmp")), point
        starts.append(_resumed_from(out))
    config = write_config(tmp_path / "last.yaml", _config(ref.demo, out, f"log{len(points)}.jsonl"))
    assert main(["fit", "--config", config, "--ckpt_path", "last"]) == 0

    # each run trained from where the checkpoint it resumed from left off, the same batches
    # as the uninterrupted run at each step; up to where the next run resumed, it counts
    trained: list[list[str]] = []
    for i, start in enumerate(starts):
        batches = [row for row in _log(out / f"log{i}.jsonl") if "batch" in row]
        steps = [row["batch"] for row in batches]
        assert steps == list(range(start, start + len(steps))), (points, i)
        assert [row["ids"] for row in batches] == ref.ids[start : start + len(steps)], points
        end = starts[i + 1] if i + 1 < len(starts) else STEPS
        assert start + len(steps) >= end, (points, i)
        trained += [row["ids"] for row in batches][: end - start]
    assert trained == ref.ids
    weights = torch.load(out / "record" / "rank0.pt", weights_only=True)
    assert weights.keys() == ref.weights.keys()
    for name, value in ref.weights.items():
        assert torch.equal(weights[name], value), (points, name)
    assert [row for row in read_metrics(out) if "val/loss" in row][-1] == ref.val


@pytest.mark.parametrize("seed", range(5))
def test_killed_and_resumed_runs_end_as_the_uninterrupted_one(
    seed: int, reference: Reference, tmp_path: Path
) -> None:
    check_kill_and_resume(seed, reference, tmp_path)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(5, 25))
def test_fuzz_kill_and_resume(seed: int, reference: Reference, tmp_path: Path) -> None:
    check_kill_and_resume(seed, reference, tmp_path)


def test_a_write_cut_short_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    write_bytes_atomic(path, b"old")
    with pytest.raises(RuntimeError), atomic_open(path, "wb") as f:
        f.write(b"half of the new")
        raise RuntimeError("cut short")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

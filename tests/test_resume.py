"""A run killed mid-epoch and resumed with `--ckpt_path last` ends exactly where an
uninterrupted run of the same seed ends: same batches, same weights, same metrics (CPU,
deterministic mode). The killed run is a subprocess that SIGKILLs itself right after a
mid-epoch checkpoint, so nothing gets a chance to clean up."""

from __future__ import annotations

import json
import signal
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

pytestmark = pytest.mark.usefixtures("one_thread")

KILL_AT = 9  # optimizer steps; an epoch has 7 batches, so this is 2 batches into epoch 1


def _config(demo: Path, out: Path) -> dict:
    """A checkpoint every 3 steps (Lightning's ModelCheckpoint)."""
    return resume_config(demo, out, 3, "lightning.pytorch.callbacks.ModelCheckpoint")


def _record(out: Path) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    weights = torch.load(out / "record" / "rank0.pt", weights_only=True)
    ids = json.loads((out / "record" / "rank0.json").read_text())["ids"]
    return weights, ids


def test_killed_run_resumed_from_last_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    demo = make_tiny_demo(tmp_path / "demo", shapes=24)
    whole = _config(demo, tmp_path / "whole")
    assert main(["fit", "--config", write_config(tmp_path / "whole.yaml", whole)]) == 0

    out = tmp_path / "resumed"
    config = _config(demo, out)
    kill = {"class_path": "training_helpers.KillAtStep", "init_args": {"step": KILL_AT}}
    killed = write_config(tmp_path / "killed.yaml", with_callbacks(config, kill))
    assert run_cli(["fit", "--config", killed], env={"OMP_NUM_THREADS": "1"}) == -signal.SIGKILL
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == KILL_AT
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_yielded"] == 2

    resumed = write_config(tmp_path / "resumed.yaml", config)
    assert main(["fit", "--config", resumed, "--ckpt_path", "last"]) == 0

    weights, ids = _record(tmp_path / "whole")
    weights_after, ids_after = _record(out)
    assert len(ids) == 14 and ids_after == ids[KILL_AT:]  # the rest of the run, no batch twice
    assert weights_after.keys() == weights.keys()
    for name, value in weights.items():
        assert torch.equal(weights_after[name], value), name
    val = [row for row in read_metrics(tmp_path / "whole") if "val/loss" in row][-1]
    val_after = [row for row in read_metrics(out) if "val/loss" in row][-1]
    assert val_after == val

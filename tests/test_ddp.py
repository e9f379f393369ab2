"""Two-process DDP on the CPU (gloo) through `mmseq fit`: both ranks end with the same
weights, each trains on its own disjoint shard of every epoch, and validation metrics cover
the whole validation set (the ranks' predictions are gathered), as one process computes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_helpers import caption_config, make_tiny_demo, read_metrics, run_cli, write_config

from mmseq.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_cpu_processes_train_one_model_on_disjoint_shards(tmp_path: Path) -> None:
    demo = make_tiny_demo(tmp_path / "demo", shapes=8)
    out = tmp_path / "ddp"
    # one example per batch: 8 training batches, 4 per rank; 4 validation batches, 2 per rank
    config = caption_config(demo, out, strategy="ddp", devices=2)
    config["data"]["init_args"]["batch_size"] = 1
    record = {"class_path": "training_helpers.RecordRank", "init_args": {"out": str(out / "rec")}}
    config["trainer"]["callbacks"].append(record)
    path = write_config(tmp_path / "ddp.yaml", config)
    assert run_cli(["fit", "--config", path], env={"OMP_NUM_THREADS": "1"}, timeout=300) == 0

    ranks = [json.loads((out / "rec" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [[i for batch in r["ids"] for i in batch] for r in ranks]
    assert [len(s) for s in seen] == [4, 4]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == [f"images/train_{i:05d}.png" for i in range(8)]

    weights = [torch.load(out / "rec" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], weights[0][k]) for k in saved)

    # the same checkpoint validated by one process gives the metrics the two ranks logged
    ddp_val = [row for row in read_metrics(out) if "val/loss" in row][-1]
    single = caption_config(demo, tmp_path / "single")
    single["data"]["init_args"]["batch_size"] = 1
    path = write_config(tmp_path / "single.yaml", single)
    assert (
        main(["validate", "--config", path, "--ckpt_path", str(out / "checkpoints/last.ckpt")]) == 0
    )
    one_val = [row for row in read_metrics(tmp_path / "single") if "val/loss" in row][-1]
    for metric in ("val/exact_match", "val/cider", "val/bleu4", "val/loss"):
        assert float(ddp_val[metric]) == pytest.approx(float(one_val[metric]), abs=1e-5), metric

"""Non-finite losses and gradients in training (`model.nonfinite`). With `skip`, a step with a
NaN sample or an infinite gradient leaves the weights exactly where a run without that step
ends (AdamW's moments and the learning-rate schedule included) and is counted in the metrics;
with `stop`, `mmseq fit` ends with one line naming the step and the batch's samples."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader
from training_helpers import (
    BLOCK,
    caption_config,
    make_tiny_demo,
    read_metrics,
    with_callbacks,
    write_config,
)

from mmseq.cli import main
from mmseq.data.collate import Batch
from mmseq.data.modules import CaptionDataModule
from mmseq.errors import NonFiniteError
from mmseq.training.module import Seq2SeqModule
from mmseq.training.optim import OptimizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "image": {"image_size": [16, 16], "patch_size": 8, "n_layers": 1, "block": BLOCK},
    "decoder": {"n_ctx": 64, "n_layers": 1, "block": BLOCK},
}
# warmup over every step: a schedule that moved on at a skipped step gives other weights
OPTIMIZER = OptimizerConfig(lr=1e-2, warmup_steps=8, schedule="constant")


class PoisonInputs(pl.Callback):
    """Sets one sample's encoder input to NaN in the batch of optimizer step `step` (the
    first such batch; on rank `rank` only, when given); writes that batch's ids to `out` (a
    JSON list) when given."""

    def __init__(
        self, step: int, sample: int = 1, out: str | None = None, rank: int | None = None
    ) -> None:
        self.step, self.sample, self.out, self.rank, self.done = step, sample, out, rank, False

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, *_: Any) -> None:
        if self.rank not in (None, trainer.global_rank):
            return
        if trainer.global_step == self.step and not self.done:
            self.done = True
            one = next(iter(batch.values())) if isinstance(batch, dict) else batch
            one.inputs[self.sample] = float("nan")
            if self.out is not None:
                Path(self.out).write_text(json.dumps(one.ids))


class InfGradient(pl.Callback):
    """Sets one gradient entry to inf after the backward pass of optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer: pl.Trainer, module: Any) -> None:
        if trainer.global_step == self.step:
            module.model.decoder.token_embedding.weight.grad[3, 0] = float("inf")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_demo(tmp_path_factory.mktemp("demo"), shapes=12)


@pytest.fixture(scope="module")
def batches(demo: Path) -> list[Batch]:
    """Six caption batches of two, fixed (so that two runs can see the same ones)."""
    dm = CaptionDataModule(
        str(demo / "tokenizer.json"), train=str(demo / "shapes" / "train.jsonl"), image_size=16
    )
    # plain batches of two (the module's own loader groups by caption length: sizes vary)
    return list(DataLoader(dm.dataset("train"), batch_size=2, collate_fn=dm._collator()))[:6]


def _train(
    demo: Path,
    data: list,
    out: Path | None = None,
    accumulate: int = 1,
    callbacks: tuple[pl.Callback, ...] = (),
    **options: Any,
) -> Seq2SeqModule:
    """One epoch over `data` (batches, or dicts of them), from the same initial weights."""
    torch.manual_seed(0)
    module = Seq2SeqModule(
        str(demo / "tokenizer.json"), model=TINY, optimizer=OPTIMIZER, log_examples=0, **options
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=CSVLogger(out / "logs", name="run") if out else False,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        accumulate_grad_batches=accumulate,
        callbacks=list(callbacks),
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None, collate_fn=_as_is))
    return module


def _as_is(item: Any) -> Any:
    return item


def _copy(batch: Batch) -> Batch:
    return dataclasses.replace(batch, inputs=batch.inputs.clone())


def _poison(batch: Batch, sample: int = 1) -> Batch:
    """A copy of `batch` whose `sample` has a NaN input (its image)."""
    batch = _copy(batch)
    batch.inputs[sample] = float("nan")
    return batch


@pytest.mark.parametrize(
    ("fault", "accumulate"),
    [("nan_sample", 1), ("inf_gradient", 1), ("nan_sample", 2)],
    ids=["nan-sample", "inf-gradient", "nan-sample-accumulating"],
)
def test_a_skipped_step_ends_where_a_run_without_it_ends(
    demo: Path,
    batches: list[Batch],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    accumulate: int,
) -> None:
    data = [_copy(b) for b in batches[: 3 * accumulate]]  # 3 optimizer steps
    step = slice(accumulate, 2 * accumulate)  # the batches of step 1
    callbacks = ()
    if fault == "nan_sample":
        data[step.start] = _poison(data[step.start])
    else:
        callbacks = (InfGradient(step=1),)
    with caplog.at_level(logging.WARNING, logger="mmseq.training.nonfinite"):
        skipped = _train(demo, data, tmp_path, accumulate=accumulate, callbacks=callbacks)
    without = _train(demo, data[: step.start] + data[step.stop :], accumulate=accumulate)

    assert skipped.nonfinite_guard.skipped == 1
    weights = skipped.state_dict()
    assert all(v.isfinite().all() for v in weights.values())
    for name, value in without.state_dict().items():
        assert torch.equal(weights[name], value), name
    values = [
        float(r["train/skipped_nonfinite"])
        for r in read_metrics(tmp_path)
        if "train/skipped_nonfinite" in r
    ]
    assert values == [0.0, 1.0, 1.0]
    if fault == "nan_sample":  # the batch with the NaN loss
        ids = data[step.start].ids
        expected = f"step 1: non-finite loss on samples {', '.join(ids)} (non-finite input: "
        expected += f"{ids[1]}); step skipped (1 so far)"
    else:  # every batch of the step
        ids = ", ".join(i for b in data[step] for i in b.ids)
        expected = f"step 1: non-finite gradient from samples {ids}; step skipped (1 so far)"
    warned = [r.getMessage() for r in caplog.records if r.name == "mmseq.training.nonfinite"]
    assert warned == [expected]


@pytest.mark.parametrize("multitask", [False, True], ids=["inf-gradient", "nan-in-one-task"])
def test_stop_raises_naming_the_step_and_the_samples(
    demo: Path, batches: list[Batch], multitask: bool
) -> None:
    if multitask:  # two tasks per step; a NaN sample in task `b` of step 1
        data = [
            {"a": _copy(x), "b": _copy(y)} for x, y in zip(batches[:3], batches[3:6], strict=True)
        ]
        data[1]["b"] = _poison(data[1]["b"])
        ids = data[1]["b"].ids
        expected = f"step 1: non-finite loss on task b: samples {', '.join(ids)} "
        expected += f"(non-finite input: {ids[1]}) (model.nonfinite: stop)"
        callbacks = ()
    else:
        data = [_copy(b) for b in batches[:3]]
        expected = f"step 1: non-finite gradient from samples {', '.join(data[1].ids)} "
        expected += "(model.nonfinite: stop)"
        callbacks = (InfGradient(step=1),)
    with pytest.raises(NonFiniteError) as raised:
        _train(demo, data, nonfinite="stop", callbacks=callbacks)
    assert str(raised.value) == expected


def test_fit_stops_with_one_line_naming_the_nan_sample(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    config = caption_config(demo, out, max_steps=3, limit_val_batches=0, num_sanity_val_steps=0)
    config["model"]["model"]["decoder"]["n_ctx"] = 64
    poison = {
        "class_path": "test_nonfinite.PoisonInputs",
        "init_args": {"step": 1, "out": str(tmp_path / "ids.json")},
    }
    path = write_config(tmp_path / "run.yaml", with_callbacks(config, poison))
    assert main(["fit", "--config", path, "--model.nonfinite", "stop"]) == 2
    err = capsys.readouterr().err
    ids = json.loads((tmp_path / "ids.json").read_text())
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"mmseq fit: error: step 1: non-finite loss on samples {', '.join(ids)} "
        f"(non-finite input: {ids[1]}) (model.nonfinite: stop)"
    )


def test_a_bad_choice_is_an_error_naming_the_option(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ValueError, match=r"^model.nonfinite: expected one of skip, stop, got 'x'"):
        Seq2SeqModule(str(demo / "tokenizer.json"), model=TINY, nonfinite="x")
    path = write_config(tmp_path / "run.yaml", caption_config(demo, tmp_path / "run"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", path, "--model.nonfinite", "ignore"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "mmseq fit: error: model.nonfinite: Expected a typing.Literal['skip', 'stop']" in err


def test_the_count_of_skipped_steps_survives_a_resume(demo: Path) -> None:
    saved, resumed = (Seq2SeqModule(str(demo / "tokenizer.json"), model=TINY) for _ in range(2))
    saved.nonfinite_guard.skipped = 3
    checkpoint: dict[str, Any] = {}
    saved.on_save_checkpoint(checkpoint)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.nonfinite_guard.skipped == 3


def test_skipping_stops_once_too_many_steps_in_a_row_are_non_finite(
    demo: Path, batches: list[Batch]
) -> None:
    """A diverged run (every batch NaN from step 2 on) ends at the limit instead of skipping
    forever; a good step in between starts the count again."""
    data = [_copy(batches[0]), _copy(batches[1])] + [_poison(b) for b in batches[2:6]]
    with pytest.raises(NonFiniteError, match=r"step 4: .*3 steps in a row .*nonfinite_limit: 3"):
        _train(demo, data, nonfinite_limit=3)
    data[3] = _copy(batches[3])  # NaN, good, NaN, NaN: never 3 in a row
    module = _train(demo, data, nonfinite_limit=3)
    assert module.nonfinite_guard.skipped == 3
    with pytest.raises(ValueError, match="model.nonfinite_limit: expected a number >= 1"):
        _train(demo, data, nonfinite_limit=0)

"""Lightning callbacks that mmseq's configs use."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, where `save_last` keeps `last.ckpt` the latest state.

    Since Lightning 2.6, `last.ckpt` is written only when a top-k checkpoint is written in the
    same step. With `monitor` and `save_top_k: 1`, it is then a copy of the best epoch, and
    `--ckpt_path last` quietly resumes from there, losing every epoch trained since. Here it is
    also rewritten at each validation (or training-epoch end) that wrote nothing else.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        # skipped when this step already saved (then `last.ckpt` is current), in sanity checks
        # and in fast_dev_run
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class EarlyStopping(LightningEarlyStopping):
    """Lightning's EarlyStopping, checked after each validation only.

    Lightning checks at the end of each training epoch when validation runs once per epoch,
    and fails there if the monitored validation metric does not exist yet: a run stopped
    before its first validation (`--trainer.max_steps 2`) ended in a traceback. A metric that
    is missing after a validation is still an error (a typo in `monitor`)."""

    def __init__(self, *args: Any, check_on_train_epoch_end: bool | None = False, **kwargs: Any):
        super().__init__(*args, check_on_train_epoch_end=check_on_train_epoch_end, **kwargs)


class ModelSummary(LightningModelSummary):
    """Lightning's model summary without its FLOPs column and total when they are all zero
    (Lightning counts FLOPs only when the module defines an `example_input_array`)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops == 0:
            summary_data = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *summary_data,
        )
        if total_flops == 0:
            table = table.rsplit("\n", 1)[0]  # its last line is "0  Total Flops"
        rank_zero_info("\n" + table)

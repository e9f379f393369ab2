"""Lightning callbacks that mmseq's configs use."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


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

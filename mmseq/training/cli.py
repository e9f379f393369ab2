"""`mmseq fit|validate|test|predict --config configs/X.yaml`, on LightningCLI.

YAML maps one to one onto `Trainer`, `Seq2SeqModule` (`model:`) and a DataModule from
`mmseq.data.modules` (`data: {class_path: ..., init_args: ...}`). The module's tokenizer is
passed on to the DataModule, so it is named once (`model.tokenizer`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mmseq.training.module import Seq2SeqModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes `{"id": ..., "prediction": ...}` lines to `output` (stdout when None)."""

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._stream = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.output is not None:
            Path(self.output).parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.output, "w", encoding="utf-8")  # noqa: SIM115

    def write_on_batch_end(self, trainer, pl_module, prediction, *args: Any) -> None:  # noqa: ANN001
        stream = self._stream or sys.stdout
        for row in prediction:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        stream.flush()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class LearningRateLogger(LearningRateMonitor):
    """LearningRateMonitor that stays quiet (instead of failing) when logging is off."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class MMSeqCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.tokenizer", "data.init_args.tokenizer")


def trainer_defaults() -> dict[str, Any]:
    return {
        # BucketBatchSampler shards itself across ranks; Lightning must not wrap it.
        "use_distributed_sampler": False,
        "logger": [
            {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "runs", "name": "mmseq"},
            },
            # metrics.csv in runs/mmseq/csv/version_N; checkpoints in runs/mmseq/version_N
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": "runs/mmseq", "name": "csv"},
            },
        ],
        "callbacks": [LearningRateLogger(logging_interval="step"), JsonlPredictionWriter()],
    }


def run(argv: Sequence[str]) -> MMSeqCLI:
    """Run one LightningCLI subcommand; argv starts with it (e.g. ["fit", "--config", ...]).
    The returned CLI holds the trainer (e.g. `cli.trainer.checkpoint_callback`)."""
    return MMSeqCLI(
        Seq2SeqModule,
        pl.LightningDataModule,
        subclass_mode_data=True,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        # from the console, LightningCLI reads sys.argv itself (and warns if given it twice)
        args=None if list(argv) == sys.argv[1:] else list(argv),
        auto_configure_optimizers=False,
        # no prefix matching: `--trainer.max_epoch 3` is a typo, not `max_epochs`
        parser_kwargs={"allow_abbrev": False}
        | {name: {"allow_abbrev": False} for name in SUBCOMMANDS},
    )


SUBCOMMANDS = ("fit", "validate", "test", "predict")

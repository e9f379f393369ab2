"""`mmseq fit|validate|test|predict --config configs/X.yaml`, on LightningCLI.

YAML maps one to one onto `Trainer`, `Seq2SeqModule` (`model:`) and a DataModule from
`mmseq.data.modules` (`data: {class_path: ..., init_args: ...}`). The module's tokenizer is
passed on to the DataModule, so it is named once (`model.tokenizer`). `model.model` is typed
field by field (mmseq.training.architecture), so that `--help` lists the architecture and a
typo in it fails when the config is parsed. A mistake in the config is one short error naming
its dotted path; `fit` says where it writes (under `--trainer.default_root_dir`, runs/ by
default) at its start and end.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, LearningRateMonitor
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

# imported for its DataModules: `mmseq fit --help` lists the subclasses that are imported
import mmseq.data.modules  # noqa: F401
from mmseq.serialization import atomic_open
from mmseq.training.callbacks import ModelSummary
from mmseq.training.checkpoint_io import AtomicCheckpointIO
from mmseq.training.module import Seq2SeqModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULT_ROOT_DIR = "runs"  # `--trainer.default_root_dir` when not given


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes `{"id": ..., "prediction": ...}` lines to `output` (stdout when None)."""

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._file: ExitStack | None = None
        self._stream = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.output is not None:
            Path(self.output).parent.mkdir(parents=True, exist_ok=True)
            # the file appears complete when prediction ends; an error discards it
            self._file = ExitStack()
            self._stream = self._file.enter_context(atomic_open(self.output, "w", encoding="utf-8"))

    def write_on_batch_end(self, trainer, pl_module, prediction, *args: Any) -> None:  # noqa: ANN001
        stream = self._stream or sys.stdout
        for row in prediction:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        stream.flush()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._stream = None

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        if self._file is not None:  # the error passes through atomic_open: nothing is written
            self._file.__exit__(type(exception), exception, exception.__traceback__)
            self._file = self._stream = None


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


class RunReport(pl.Callback):
    """Says where a `fit` goes: the run folder, the checkpoints and the TensorBoard command at
    the start, the best and last checkpoints at the end."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lines = [f"mmseq fit: run folder {trainer.log_dir}"]
        if trainer.checkpoint_callback is not None:
            lines.append(f"  checkpoints: {trainer.checkpoint_callback.dirpath}")
        rank_zero_info("\n".join([*lines, *_tensorboard(trainer)]))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lines = [f"mmseq fit: done, run folder {trainer.log_dir}"]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None:
            best = getattr(ckpt, "best_model_path", "")
            score = getattr(ckpt, "best_model_score", None)
            if best and score is not None:
                best += f" ({ckpt.monitor} {float(score):.4g})"
            lines.append(f"  best checkpoint: {best or 'none (no validation finished)'}")
            lines.append(f"  last checkpoint: {getattr(ckpt, 'last_model_path', '') or 'none'}")
        rank_zero_info("\n".join([*lines, *_tensorboard(trainer)]))


def _tensorboard(trainer: pl.Trainer) -> list[str]:
    """The command that shows this run's TensorBoard logs (none without a TensorBoardLogger)."""
    return [
        f"  tensorboard --logdir {logger.root_dir}"
        for logger in trainer.loggers
        if isinstance(logger, TensorBoardLogger)
    ][:1]


def default_loggers(root: str | Path) -> list[Logger]:
    """TensorBoard events and checkpoints in ROOT/mmseq/version_N, metrics.csv in
    ROOT/mmseq/csv/version_N (ROOT is `--trainer.default_root_dir`)."""
    return [
        TensorBoardLogger(save_dir=root, name="mmseq"),
        CSVLogger(save_dir=Path(root) / "mmseq", name="csv"),
    ]


class MMSeqArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are a short message naming the option, instead of
    the whole usage (some 60 lines) and jsonargparse's account of every type it tried."""

    command: str = ""  # the subcommand being parsed, set on the main parser

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        # subcommand parsers are "mmseq [options] fit"; the main one reports errors found in
        # the whole config (unknown keys), which belong to the subcommand too
        prog = " ".join(filter(None, [parser.prog.replace(" [options]", ""), parser.command]))
        sys.stderr.write(f"{prog}: error: {short_error(message)}\n")
        sys.stderr.write(f"({prog} --help lists every option)\n")
        self.exit(2)


_KEY = re.compile(r'^Parser key "([^"]+)":$')
_UNKNOWN = (
    re.compile(r"^Group '([^']+)' does not accept (?:option|nested key) '([^']+)'$"),
    re.compile(r"^()Option '([^']+)' is not accepted$"),
    re.compile(r"^Subcommand '[^']+' does not accept (?:option|nested key) '()([^']+)'$"),
)
_EXPECTED = re.compile(r"^Expected a <class '([\w.]+)'>\.?(?: Got value: (.*))?$")
_GIVEN = re.compile(r"^Given value: (.{1,60})$")
_SKIP = re.compile(
    r"^(Does not validate against any of the|Subtypes:|Errors:|Given value|"
    r"Expected a <class 'NoneType'>)"
)


def short_error(message: str) -> str:
    """jsonargparse's nested account of a bad value, as `dotted.path: what was expected`.

    It nests one `Parser key "k":` per level (and `Problem with given class_path` where a
    class's `init_args` begin) and lists each type of a Union that was tried; the first
    failure that is not the `null` alternative is the one to report."""
    lines = [line.strip().removeprefix("- ") for line in message.splitlines()]
    given = next((m.group(1) for line in lines if (m := _GIVEN.match(line))), None)
    path: list[str] = []
    for line in lines:
        if not line or _SKIP.match(line):
            continue
        if key := _KEY.match(line):
            path.append(key.group(1))
        elif line.startswith("Problem with given class_path"):
            path.append("init_args")
        elif unknown := next((m for r in _UNKNOWN if (m := r.match(line))), None):
            key = ".".join(filter(None, [*path, *unknown.groups()]))
            return f"{key}: unknown option (a typo?)"
        else:
            if expected := _EXPECTED.match(line):
                value = expected.group(2) or given
                line = f"expected {expected.group(1)}" + (f", got {value!r}" if value else "")
            return f"{'.'.join(path)}: {line}" if path else line
    return message.splitlines()[0] if message else "invalid arguments"


class MMSeqCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        argv = sys.argv[1:] if args is None else args
        parser.command = argv[0] if isinstance(argv, list) and argv else ""
        self._model_flags = _model_flags(argv if isinstance(argv, list) else [])
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path`, Lightning replaces the parsed `model` with the hyperparameters
        saved in the checkpoint, silently dropping the `--model.*` flags given with it
        (`mmseq test --ckpt_path C --model.num_beams 4` would decode greedily): those flags
        are put back, as they are honoured without --ckpt_path. The config file's values
        still yield to the checkpoint's (the run's own config, as a rule)."""
        given = self.config.clone()
        super()._parse_ckpt_path()
        subcommand = self.config.get("subcommand")
        for key in self._model_flags:
            self.config[f"{subcommand}.{key}"] = given[f"{subcommand}.{key}"]

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.tokenizer", "data.init_args.tokenizer")

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, OSError) as err:  # a config that parses but cannot be built
            self._parser(self.subcommand).error(str(err))

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True) and "logger" not in kwargs:
            # the default loggers follow `--trainer.default_root_dir` (Lightning's own would
            # write to lightning_logs/; loggers fixed in the defaults would ignore the flag)
            kwargs["logger"] = default_loggers(config.get("default_root_dir") or DEFAULT_ROOT_DIR)
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one of the user's
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        # Lightning's summary has a FLOPs column, all zeros unless the module defines an
        # example_input_array (mmseq's inputs vary by modality): the same summary, without it
        trainer.callbacks = [
            ModelSummary(max_depth=cb._max_depth) if _is_lightning_summary(cb) else cb
            for cb in trainer.callbacks
        ]
        return trainer


def _model_flags(argv: Sequence[str]) -> list[str]:
    """The `model.*` keys given as flags in argv: `--model.num_beams 4` or `--model.num_beams=4`
    -> "model.num_beams"."""
    keys = []
    for token in argv:
        if token.startswith("--model."):
            keys.append(token[2:].split("=", 1)[0])
    return keys


def _is_lightning_summary(callback: pl.Callback) -> bool:
    return isinstance(callback, LightningModelSummary) and not isinstance(callback, ModelSummary)


def trainer_defaults() -> dict[str, Any]:
    return {
        # BucketBatchSampler shards itself across ranks; Lightning must not wrap it.
        "use_distributed_sampler": False,
        "default_root_dir": DEFAULT_ROOT_DIR,
        "callbacks": [
            LearningRateLogger(logging_interval="step"),
            JsonlPredictionWriter(),
            RunReport(),
        ],
    }


class _DropTips(logging.Filter):
    """Lightning's advertisements ("💡 Tip: ... try installing litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Keep Lightning's noise off the console: its tips, and the deprecation warnings that its
    own code triggers (e.g. torch's LeafSpec, from lightning/pytorch/utilities/_pytree.py),
    which a user can do nothing about. Other warnings are kept."""
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(pytorch_)?lightning\.")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())


def run(argv: Sequence[str]) -> MMSeqCLI:
    """Run one LightningCLI subcommand; argv starts with it (e.g. ["fit", "--config", ...]).
    The returned CLI holds the trainer (e.g. `cli.trainer.checkpoint_callback`)."""
    quiet_lightning()
    return MMSeqCLI(
        Seq2SeqModule,
        pl.LightningDataModule,
        subclass_mode_data=True,
        parser_class=MMSeqArgumentParser,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        # from the console, LightningCLI reads sys.argv itself (and warns if given it twice)
        args=None if list(argv) == sys.argv[1:] else list(argv),
        auto_configure_optimizers=False,
        # no prefix matching: `--trainer.max_epoch 3` is a typo, not `max_epochs`
        parser_kwargs={"allow_abbrev": False, "prog": "mmseq"}
        | {name: {"allow_abbrev": False} for name in SUBCOMMANDS},
    )

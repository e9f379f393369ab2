"""Tiny training runs for the tests: demo data, YAML configs for `mmseq fit`, and callbacks that
the configs name by class path (subprocess runs import them with tests/ on PYTHONPATH)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

TESTS = Path(__file__).resolve().parent
BLOCK = {"d_model": 32, "n_heads": 2, "d_ff": 64}


def make_tiny_demo(root: Path, shapes: int = 12, speech: int = 0) -> Path:
    """Shapes scenes (and `speech` espeak-ng clips when > 0) with a 300-token BPE under root."""
    from mmseq.data.demo import make_demo

    make_demo(
        root,
        n_shapes_train=shapes,
        n_shapes_val=4,
        n_shapes_test=4,
        speech=speech > 0,
        n_speech_train=max(speech, 1),
        n_speech_val=2,
        n_speech_test=2,
        digits=False,
        vocab_size=300,
        progress=False,
    )
    return root


def caption_config(demo: Path, out: Path, **trainer: Any) -> dict:
    """configs/caption_shapes.yaml shrunk: 16x16 images, d_model 32, one layer each side."""
    shapes = demo / "shapes"
    return {
        "seed_everything": 0,
        "trainer": _trainer(out, "val/exact_match", "max", trainer),
        "model": {
            "tokenizer": str(demo / "tokenizer.json"),
            "model": {
                "image": {"image_size": [16, 16], "patch_size": 8, "n_layers": 1, "block": BLOCK},
                "decoder": {"n_ctx": 32, "n_layers": 1, "block": BLOCK},
            },
            "optimizer": {"lr": 1.0e-3, "warmup_steps": 1},
            "max_new_tokens": 6,
        },
        "data": {
            "class_path": "mmseq.data.modules.CaptionDataModule",
            "init_args": {
                **_splits(shapes),
                "batch_size": 6,
            },
        },
    }


def speech_config(demo: Path, out: Path, **trainer: Any) -> dict:
    """configs/asr_tiny.yaml shrunk: d_model 32, one layer each side, SpecAugment on."""
    speech = demo / "speech"
    return {
        "seed_everything": 0,
        "trainer": _trainer(out, "val/wer", "min", trainer),
        "model": {
            "tokenizer": str(demo / "tokenizer.json"),
            "model": {
                "audio": {"n_mels": 80, "n_layers": 1, "pad_to_30s": False, "block": BLOCK},
                "decoder": {"n_ctx": 64, "n_layers": 1, "block": BLOCK},
            },
            "optimizer": {"lr": 1.0e-3, "warmup_steps": 1},
            "spec_augment": {"freq_masks": 2, "freq_width": 15, "time_masks": 2},
            "max_new_tokens": 6,
        },
        "data": {
            "class_path": "mmseq.data.modules.SpeechDataModule",
            "init_args": {
                **_splits(speech),
                "max_batch_seconds": 15.0,
                "max_batch_size": 3,
            },
        },
    }


def _splits(folder: Path) -> dict[str, str]:
    """The DataModule's split manifests in a tiny demo folder; predict reads the test split."""
    return {split: str(folder / f"{split}.jsonl") for split in ("train", "val", "test")} | {
        "predict": str(folder / "test.jsonl")
    }


def _trainer(out: Path, monitor: str, mode: str, overrides: dict) -> dict:
    trainer = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "devices": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(out),
        "logger": [
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(out / "logs"), "name": "run"},
            }
        ],
        "callbacks": [
            {
                "class_path": "mmseq.training.callbacks.ModelCheckpoint",
                "init_args": {
                    "dirpath": str(out / "checkpoints"),
                    "monitor": monitor,
                    "mode": mode,
                    "save_last": True,
                    "filename": "best-{epoch}-{step}",
                },
            }
        ],
    }
    trainer.update(overrides)
    return trainer


def write_config(path: Path, config: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def with_callbacks(config: dict, *callbacks: dict) -> dict:
    """A copy of `config` with `callbacks` ({"class_path", "init_args"}) added to the trainer's."""
    config = copy.deepcopy(config)
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"] + list(callbacks)
    return config


def read_metrics(out: Path) -> list[dict[str, str]]:
    """Rows of the CSVLogger's metrics.csv (latest version), empty cells dropped."""
    import csv

    path = sorted((out / "logs" / "run").glob("version_*/metrics.csv"))[-1]
    with path.open() as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> int:
    """`python -m mmseq.cli ARGS` in a subprocess with tests/ importable; its return code."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "mmseq.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode not in (0, -signal.SIGKILL):
        sys.stderr.write(done.stderr[-5000:])
    return done.returncode


# -- callbacks named by class path in the configs ------------------------------------------


class KillAtStep(pl.Callback):
    """SIGKILLs its own process when training reaches optimizer step `step` (the checkpoint
    of the step before has been written by then): a crash with no chance to clean up."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordRank(pl.Callback):
    """Writes `<out>/rank<r>.json` (the ids of every training example the rank saw, per step)
    and `<out>/rank<r>.pt` (its weights once training ends)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.ids: list[list[str]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, *_: Any) -> None:
        self.ids.append(list(batch.ids))

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        torch.save(state, self.out / f"rank{rank}.pt")
        info = {"rank": rank, "world_size": trainer.world_size, "ids": self.ids}
        (self.out / f"rank{rank}.json").write_text(json.dumps(info))


# -- kill-and-resume (tests/test_kill_resume.py) -------------------------------------------


class LogRun(pl.Callback):
    """Appends to the JSON lines file `path`, as they happen (so a killed run leaves them):
    `{"batch": global_step, "ids": [...]}` at each training batch, `{"save": global_step}`
    each time a checkpoint is put together."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _log(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, *_: Any) -> None:
        self._log({"batch": trainer.global_step, "ids": list(batch.ids)})

    def on_save_checkpoint(self, trainer: pl.Trainer, *_: Any) -> None:
        self._log({"save": trainer.global_step})


class KillAtSave(pl.Callback):
    """Kills its own process at the `nth` checkpoint saved at optimizer step `step` (1-based):
    `phase` "before" SIGKILLs once the checkpoint is put together, before a byte is written;
    "after" SIGKILLs at the next hook once it is written (the next save, batch or validation);
    "during" lets the kernel stop the process at the write that passes `size` bytes (a file
    size limit, whose signal, SIGXFSZ, like SIGKILL ends the process with nothing run after),
    so a partly written file is left behind."""

    def __init__(self, step: int, nth: int = 1, phase: str = "before", size: int = 0) -> None:
        if phase not in ("before", "during", "after") or (phase == "during") != (size > 0):
            raise ValueError(f"phase {phase!r} with size {size}")
        self.step, self.nth, self.phase, self.size = step, nth, phase, size
        self.seen = 0
        self.armed = False

    def on_save_checkpoint(self, trainer: pl.Trainer, *_: Any) -> None:
        self._kill_if_armed()
        if trainer.global_step != self.step:
            return
        self.seen += 1
        if self.seen != self.nth:
            return
        if self.phase == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.phase == "after":
            self.armed = True
        else:
            import resource

            resource.setrlimit(
                resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1])
            )
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.size, hard))

    def _kill_if_armed(self, *_: Any) -> None:
        if self.armed:
            os.kill(os.getpid(), signal.SIGKILL)

    on_train_batch_start = on_validation_start = on_train_epoch_end = _kill_if_armed


def resume_config(
    demo: Path, out: Path, every_n_steps: int, checkpoint: str, *callbacks: dict
) -> dict:
    """The resume tests' run: 2 epochs of 7 batches, random crops and dropout (so generator
    states matter), a checkpoint (class path `checkpoint`) and last.ckpt every `every_n_steps`,
    RecordRank recording each batch and the final weights, then `callbacks`."""
    config = caption_config(demo, out, max_epochs=2, deterministic=True)
    config["model"]["model"]["decoder"]["block"] = {
        **config["model"]["model"]["decoder"]["block"],
        "dropout": 0.1,
    }
    config["data"]["init_args"]["batch_size"] = 4
    config["trainer"]["callbacks"] = [
        {
            "class_path": checkpoint,
            "init_args": {
                "dirpath": str(out / "checkpoints"),
                "every_n_train_steps": every_n_steps,
                "save_last": True,
            },
        },
        {"class_path": "training_helpers.RecordRank", "init_args": {"out": str(out / "record")}},
        *callbacks,
    ]
    return config

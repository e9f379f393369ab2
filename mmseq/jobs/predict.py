"""`run_job`: a command's inputs processed by Lightning's `Trainer.predict` on one or many
processes (`--devices`, `--num-nodes`), each writing its units' results into the job folder
(`mmseq.jobs.writer`), then merged by rank 0 into the command's own outputs, in input order.

Rank 0 plans the run (which units are done, with these options) and broadcasts the plan;
each rank takes every world-size-th pending unit (no padding, no unit twice), loads the model
only if it has work, and reports done or failed. Rank 0 waits for every rank's report and
merges. A rank that raises reports it (rank 0 then stops with its error); one that dies is
found by Lightning's process observer (processes it started), torchrun's agent, or its
silent heartbeat (`writer.DEAD_AFTER_S`)."""

from __future__ import annotations

import argparse
import logging
import os
import uuid
import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from mmseq.jobs.options import (
    changed_flags,
    check_job_options,
    fingerprint,
    job_dir,
    job_options,
)
from mmseq.jobs.tasks import Task, make_task
from mmseq.jobs.writer import JobDir
from mmseq.terminal import escape_controls

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)  # the plan's broadcast: every rank is loading


def run_job(
    command: str,
    args: argparse.Namespace,
    inputs: list[str],
    *,
    callbacks: Sequence[pl.Callback] = (),
) -> int:
    """Run `command` ("transcribe", "caption", "translate", "summarize") on `inputs` as a
    job; the exit status of the command (0; 1 when an input failed) on rank 0, 0 on the
    others, which print nothing. Bad options raise ValueError naming the flag, before any
    process starts. callbacks: extra Lightning callbacks (tests)."""
    check_job_options(args)
    several = args.devices * args.num_nodes > 1
    if several and str(getattr(args, "device", "auto")).startswith("cuda:"):
        raise ValueError(
            f"--device {args.device} with --devices: each process takes its own GPU; choose "
            "them with CUDA_VISIBLE_DEVICES and give --device cuda"
        )
    task = make_task(command, args, inputs)
    options = job_options(command, args, task.decides)
    folder = JobDir(job_dir(command, args), fingerprint(options))
    folder.create()
    _quiet_lightning()
    job = PredictJob(task, folder, options, resume=bool(args.resume))
    trainer = _trainer(args, [PartWriter(), *callbacks])
    try:
        trainer.predict(job, return_predictions=False)
    except BaseException as err:
        if job.run is not None:
            folder.report(trainer.global_rank, job.run, "failed", _one_line(err))
        _stop_children(trainer)
        raise
    finally:
        job.stop_heartbeat()
    folder.report(trainer.global_rank, job.run, "done")
    if trainer.global_rank != 0:
        return 0
    try:
        folder.wait_for(trainer.world_size, job.run, _children_alive(trainer))
    except BaseException:
        _stop_children(trainer)
        raise
    _wait_children(trainer)
    return task.emit(folder.records(task.units))


def _trainer(args: argparse.Namespace, callbacks: list[pl.Callback]) -> pl.Trainer:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return pl.Trainer(
            accelerator=_accelerator(args),
            devices=_devices(args),
            num_nodes=args.num_nodes,
            strategy=_strategy(args),
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            use_distributed_sampler=False,
            callbacks=callbacks,
        )
    except (MisconfigurationException, RuntimeError) as err:  # more GPUs than there are, ...
        flags = f"--devices {args.devices} --num-nodes {args.num_nodes}"
        raise ValueError(f"{flags}: {_one_line(err)}") from None


class PredictJob(pl.LightningModule):
    """The task's units as a predict loop; the model the task loads is not a submodule (no
    DDP wrapping, no moves: it is loaded on this rank's device)."""

    def __init__(self, task: Task, folder: JobDir, options: dict, resume: bool) -> None:
        super().__init__()
        self.task, self.folder, self.options, self.resume = task, folder, options, resume
        self.run: str | None = None
        self.mine: list[int] = []
        self._beat: Any = None
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        plan = self._plan() if trainer.global_rank == 0 else None
        self.run, pending = trainer.strategy.broadcast(plan, src=0)
        self.mine = pending[trainer.global_rank :: trainer.world_size]
        self._beat = self.folder.heartbeat(trainer.global_rank, self.run)
        if self.mine:
            _set_threads(self.task.args, trainer)
            self.task.load(str(trainer.strategy.root_device))

    def _plan(self) -> tuple[str, list[int]]:
        folder, units = self.folder, self.task.units
        if not self.resume:
            folder.clear()
        previous = folder.previous_options()
        pending, other_options, other_inputs = folder.pending(units)
        if other_options:
            changes = changed_flags(previous or {}, self.options) or ["unknown options"]
            _warn(
                f"--resume: {other_options} of {len(units)} unit(s) in {folder.path} were "
                f"made with other options ({'; '.join(changes)}): processing them again"
            )
        if other_inputs:
            _warn(
                f"--resume: {other_inputs} of {len(units)} unit(s) in {folder.path} were made "
                "from other inputs (files changed, added or removed, or another --window or "
                "--batch-size): processing them again"
            )
        folder.write_job(self.options, len(units))
        return uuid.uuid4().hex[:12], pending

    def stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat.set()

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        # transcribe decodes --batch-size files' windows together; the others a unit a step
        step = max(1, int(self.task.args.batch_size)) if hasattr(self.task, "run_many") else 1
        return torch.utils.data.DataLoader(self.mine, batch_size=step, collate_fn=list)

    def predict_step(self, batch: list[int], batch_idx: int) -> list[tuple[int, list[dict]]]:
        units = [self.task.units[n] for n in batch]
        run_many = getattr(self.task, "run_many", None)
        records = run_many(units) if run_many else [self.task.run(u) for u in units]
        return list(zip(batch, records, strict=True))


class PartWriter(BasePredictionWriter):
    """Each step's units written to the job folder (atomically) as soon as they are done."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: PredictJob,
        prediction: list[tuple[int, list[dict]]],
        batch_indices: Sequence[int] | None,
        batch: Any,  # noqa: ANN401
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        for number, records in prediction:
            unit = pl_module.task.units[number]
            pl_module.folder.write_part(number, unit, records, pl_module.run, trainer.global_rank)


def _accelerator(args: argparse.Namespace) -> str:
    device = str(getattr(args, "device", "auto"))
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "gpu"
    return "auto"


def _devices(args: argparse.Namespace) -> int | list[int]:
    """--devices; one process on --device cuda:N: that GPU."""
    device = str(getattr(args, "device", "auto"))
    if args.devices == 1 and args.num_nodes == 1 and device.startswith("cuda:"):
        return [int(device.split(":", 1)[1])]
    return args.devices


def _strategy(args: argparse.Namespace) -> Any:  # noqa: ANN401
    if args.devices * args.num_nodes == 1 and "WORLD_SIZE" not in os.environ:
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    gpu = _accelerator(args) == "gpu" or (
        _accelerator(args) == "auto" and torch.cuda.is_available()
    )
    return DDPStrategy(process_group_backend=None if gpu else "gloo", timeout=PROCESS_GROUP_TIMEOUT)


def _set_threads(args: argparse.Namespace, trainer: pl.Trainer) -> None:
    """--threads when given; else what OMP_NUM_THREADS says (torchrun sets 1); else the
    cores shared among this node's processes."""
    threads = getattr(args, "threads", None)
    if threads:
        if threads < 0:
            raise ValueError(f"--threads: expected a positive number, got {threads}")
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ and trainer.world_size > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        per_node = max(1, trainer.world_size // max(1, trainer.num_nodes))
        torch.set_num_threads(max(1, (cores or os.cpu_count() or 1) // per_node))


def _launcher_procs(trainer: pl.Trainer) -> list:
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    return launcher.procs if isinstance(launcher, _SubprocessScriptLauncher) else []


def _children_alive(trainer: pl.Trainer) -> Any:  # noqa: ANN401
    procs = _launcher_procs(trainer)
    return lambda: all(p.poll() in (None, 0) for p in procs)


def _stop_children(trainer: pl.Trainer) -> None:
    for proc in _launcher_procs(trainer):
        if proc.poll() is None:
            proc.kill()


def _wait_children(trainer: pl.Trainer) -> None:
    for proc in _launcher_procs(trainer):
        proc.wait()


def _quiet_lightning() -> None:
    """Results on stdout, errors on stderr: none of Lightning's set-up chatter."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        r".*does not have many workers",
        r".*GPU available but not used",
        r".*Total length of .* across ranks is zero",
        r".*predict_dataloader.*",
        r".*Tensor Cores.*",
        r".*LeafSpec.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def _warn(message: str) -> None:
    import sys

    print(escape_controls(f"mmseq: warning: {message}"), file=sys.stderr, flush=True)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

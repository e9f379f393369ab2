"""Non-finite losses and gradients in training, caught at every optimizer step.

Seq2SeqModule shows each training batch and its loss to a `NonFiniteGuard` (`watch`), and the
optimizer to `check` once the step's gradients are complete (`on_before_optimizer_step`: after
every micro-batch of a gradient-accumulation window and, with several ranks, after DDP has
averaged them). A non-finite loss in any of the step's batches, or a non-finite gradient, then

- `skip` (the default): drops the gradients (set to None, so AdamW moves neither the weights
  nor its moments, and counts no step), keeps the learning-rate schedule where it was, adds
  one to `train/skipped_nonfinite` and logs a warning naming the step and its samples;
- `stop`: raises NonFiniteError naming the step and the samples (`mmseq fit` prints it as one
  line).

A skipped step still counts as a step of the trainer (`global_step`, `max_steps`): its batches
were used up. The check costs one device sync per optimizer step (and, with several ranks, an
all-reduce, so that every rank skips the same steps). Under fp16 mixed precision the gradient
scaler skips steps with infinite gradients itself (that is how it finds its scale), so only the
losses are checked there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.utils import get_total_norm

from mmseq.data.collate import Batch
from mmseq.errors import NonFiniteError

log = logging.getLogger(__name__)

CHOICES = ("skip", "stop")


@dataclass
class _Seen:
    """A training batch of the current step. The flags stay on the device until the step."""

    task: str  # "" for a single-task run
    ids: list[str]
    loss_ok: Tensor  # [] bool
    inputs_ok: Tensor  # [B] bool: each sample's encoder input is finite

    def describe(self) -> str:
        text = f"samples {', '.join(self.ids)}"
        bad = [i for i, ok in zip(self.ids, self.inputs_ok.tolist(), strict=True) if not ok]
        if bad:
            text += f" (non-finite input: {', '.join(bad)})"
        return f"task {self.task}: {text}" if self.task else text


class NonFiniteGuard:
    """mode: `skip` or `stop` (Seq2SeqModule's `nonfinite`); limit: with `skip`, the run stops
    after this many skipped steps in a row (it has diverged: skipping would only burn time)."""

    def __init__(self, mode: str, limit: int = 100) -> None:
        if mode not in CHOICES:
            raise ValueError(f"model.nonfinite: expected one of {', '.join(CHOICES)}, got {mode!r}")
        if limit < 1:
            raise ValueError(f"model.nonfinite_limit: expected a number >= 1, got {limit}")
        self.mode, self.limit = mode, limit
        self.in_a_row = 0  # skipped steps since the last good one
        self.skipped = 0  # optimizer steps skipped so far (kept in checkpoints)
        self.last_skipped = False  # whether the latest optimizer step was skipped
        self._seen: list[_Seen] = []

    def watch(self, task: str, batch: Batch, loss: Tensor) -> None:
        """Note a training batch and its loss (read at the step: no sync here)."""
        inputs = batch.inputs
        if inputs.is_floating_point():
            inputs_ok = torch.isfinite(inputs).flatten(1).all(1)
        else:  # token ids
            inputs_ok = torch.ones(len(batch), dtype=torch.bool, device=inputs.device)
        self._seen.append(_Seen(task, list(batch.ids), torch.isfinite(loss.detach()), inputs_ok))

    def check(self, module: Any, optimizer: torch.optim.Optimizer) -> None:
        """Before the optimizer step: skip it (drop the gradients) or stop if the step's losses
        or gradients are not all finite. Logs `train/skipped_nonfinite`."""
        seen, self._seen = self._seen, []
        trainer = module.trainer
        fault = _fault(seen, optimizer, scaled=_has_scaler(trainer))
        skip = fault is not None
        if trainer.world_size > 1:  # every rank skips the same steps
            skip = trainer.strategy.reduce_boolean_decision(skip, all=False)
        self.last_skipped = skip
        if not skip:
            self.in_a_row = 0
        if skip:
            message = f"step {trainer.global_step}: {_gathered(fault, trainer.world_size)}"
            if self.mode == "stop":
                raise NonFiniteError(f"{message} (model.nonfinite: stop)")
            self.in_a_row += 1
            if self.in_a_row >= self.limit:
                raise NonFiniteError(
                    f"{message}: {self.in_a_row} steps in a row were non-finite and skipped "
                    f"(model.nonfinite_limit: {self.limit}); the run has diverged: lower the "
                    "learning rate, or check the data with `mmseq data check`"
                )
            optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            if trainer.is_global_zero:
                log.warning(f"{message}; step skipped ({self.skipped} so far)")
        module.log("train/skipped_nonfinite", float(self.skipped))


def _fault(seen: list[_Seen], optimizer: torch.optim.Optimizer, scaled: bool) -> str | None:
    """What was non-finite in this step and on which samples, or None."""
    checks = [s.loss_ok for s in seen]
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if grads and not scaled:
        # the largest |gradient|: NaN if any is NaN, inf if any is infinite
        checks.append(torch.isfinite(get_total_norm(grads, float("inf"))))
    if not checks:
        return None
    ok = torch.stack([c.to(checks[0].device) for c in checks]).tolist()  # the one sync
    if all(ok):
        return None
    bad_loss = [s for s, good in zip(seen, ok, strict=False) if not good]  # ok[-1]: gradients
    if bad_loss:
        return "non-finite loss on " + "; ".join(s.describe() for s in bad_loss)
    return "non-finite gradient from " + "; ".join(s.describe() for s in seen)


def _gathered(fault: str | None, world_size: int) -> str:
    """Every rank's fault (with several ranks, only some of them may have seen one)."""
    if world_size == 1 or not dist.is_initialized():
        return fault or "non-finite values"
    faults: list[Any] = [None] * world_size
    dist.all_gather_object(faults, fault)
    found = [(rank, f) for rank, f in enumerate(faults) if f]
    # a NaN loss on one rank makes every rank's averaged gradients NaN: name its samples only
    losses = [(rank, f) for rank, f in found if f.startswith("non-finite loss")]
    return "; ".join(f"rank {rank}: {f}" for rank, f in losses or found)


def _has_scaler(trainer: Any) -> bool:
    return getattr(trainer.precision_plugin, "scaler", None) is not None

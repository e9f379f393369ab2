"""AdamW with linear warmup then cosine, inverse-square-root or constant learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class OptimizerConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01  # not applied to biases, norms and embeddings' positions
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 200
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    # Optimizer steps the cosine decays over; None: the trainer's estimate (max_epochs/max_steps).
    total_steps: int | None = None
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr: expected > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optimizer.warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.schedule not in ("cosine", "inverse_sqrt", "constant"):
            raise ValueError(
                f"optimizer.schedule: expected cosine, inverse_sqrt or constant, "
                f"got {self.schedule!r}"
            )
        self.betas = tuple(self.betas)


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; matrices decay, vectors (biases, norms) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("optimizer: every parameter is frozen; nothing to train")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def lr_factor(step: int, cfg: OptimizerConfig, total_steps: int) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based)."""
    warmup = cfg.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "inverse_sqrt":
        return math.sqrt(max(warmup, 1) / (step + 1))
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = cfg.min_lr_ratio
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: OptimizerConfig,
    total_steps: int | Callable[[], int],
) -> LambdaLR:
    """total_steps: the number, or a function giving it that is first called when the cosine
    needs it (after warmup), so it can ask the trainer once training has started."""
    if not callable(total_steps):
        return LambdaLR(optimizer, lambda step: lr_factor(step, cfg, total_steps))

    def factor(step: int) -> float:
        # up to the end of warmup (and for the other schedules) the total does not matter
        if cfg.schedule != "cosine" or step <= cfg.warmup_steps:
            return lr_factor(step, cfg, 1)
        return lr_factor(step, cfg, total_steps())

    return LambdaLR(optimizer, factor)

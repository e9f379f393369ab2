"""Learning-rate schedules and parameter groups of mmseq.training.optim."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmseq.training.optim import OptimizerConfig, build_optimizer, build_scheduler, lr_factor


def test_warmup_is_linear_then_cosine_reaches_the_floor() -> None:
    cfg = OptimizerConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down
    assert lr_factor(110, cfg, 110) == pytest.approx(0.1)
    assert lr_factor(500, cfg, 110) == pytest.approx(0.1)  # stays at the floor


def test_inverse_sqrt_and_constant() -> None:
    inv = OptimizerConfig(warmup_steps=100, schedule="inverse_sqrt")
    assert lr_factor(99, inv, 0) == pytest.approx(1.0)
    assert lr_factor(399, inv, 0) == pytest.approx(math.sqrt(100 / 400))
    const = OptimizerConfig(warmup_steps=0, schedule="constant")
    assert lr_factor(1000, const, 10) == 1.0


def test_scheduler_drives_the_optimizer_lr() -> None:
    model = nn.Linear(4, 4)
    cfg = OptimizerConfig(lr=0.5, warmup_steps=4, schedule="constant")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5])


def test_vectors_are_not_decayed_and_frozen_parameters_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.1))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight)}
    assert len(plain["params"]) == 4  # two biases, norm weight and bias
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        build_optimizer(model, OptimizerConfig())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", 0.0, "optimizer.lr"),
        ("warmup_steps", -1, "warmup_steps"),
        ("schedule", "x", "cosine"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**{field: value})


def test_betas_from_yaml_lists_become_tuples() -> None:
    assert OptimizerConfig(betas=[0.9, 0.95]).betas == (0.9, 0.95)
    assert isinstance(build_optimizer(nn.Linear(2, 2), OptimizerConfig()), torch.optim.AdamW)

"""Random-number generator states saved in checkpoints, so a resumed run draws what the
interrupted run would have drawn next: SpecAugment masks, random crops, caption picks, dropout.

Lightning's checkpoints leave them out (a resumed run starts again from `seed_everything`). They
are kept as tensors and plain values, so checkpoints still load with `weights_only=True`. With
several devices the checkpoint holds rank 0's states, which every rank resumes with (all ranks
start from the same seed anyway).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """The generators of torch (CPU and CUDA), Python's `random` and NumPy's global one."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": [version, torch.tensor(state, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` returned (generators it does not name are left alone)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "python" in states:
        version, state, gauss = states["python"]
        random.setstate((version, tuple(state.tolist()), gauss))
    if "numpy" in states:
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

"""Building a module whose every weight is about to be loaded, without initialising it first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

# torch.nn.init's in-place initialisers: what nn.Linear, nn.Embedding, nn.Conv1d and mmseq's
# own modules call from their constructors
_INITIALISERS = (
    "normal_",
    "uniform_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "zeros_",
    "ones_",
    "constant_",
)
_lock = threading.RLock()  # nested uses are harmless


def _keep(tensor: Tensor, *args: object, **kwargs: object) -> Tensor:
    return tensor


@contextmanager
def skip_init() -> Iterator[None]:
    """Modules built inside keep their weights as allocated instead of drawing random values
    that a checkpoint overwrites next (0.3-0.5 s of loading tiny.en: its 20M-entry embedding is
    drawn twice). Only for a model loaded with a strict `load_state_dict` right after, so that
    no weight keeps its uninitialised memory. As transformers' `no_init_weights`, it swaps
    torch.nn.init's initialisers for no-ops while inside, for the whole process: a lock keeps
    two loads from interleaving, but a module built by another thread meanwhile would also
    skip its initialisation."""
    with _lock:
        saved = {name: getattr(nn.init, name) for name in _INITIALISERS}
        try:
            for name in _INITIALISERS:
                setattr(nn.init, name, _keep)
            yield
        finally:
            for name, function in saved.items():
                setattr(nn.init, name, function)

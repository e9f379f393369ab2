"""How `mmseq fit` writes checkpoints: never half a file under a checkpoint's name."""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mmseq.checkpoint import write_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, writing local checkpoints with `mmseq.checkpoint.
    write_checkpoint`: a temporary file beside the target, fsync'ed and renamed into place.
    Lightning's own writes to the system's temp folder, without fsync, and moves the file into
    place, a copy when that folder is on another file system: a run killed during the copy
    left a truncated `last.ckpt` (tests/test_kill_resume.py). Remote paths (s3://, ...) keep
    Lightning's writer."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            write_checkpoint(checkpoint, path)

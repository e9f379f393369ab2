"""`mmseq export`: a checkpoint fine-tuned from a Hugging Face folder, written back as one.

The result is what the model was imported from (config.json, generation_config.json,
model.safetensors, the tokenizer files) with the fine-tuned weights, so transformers, mmseq's
`TextGenerator` and CTranslate2's converter read it as they read the original.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmseq.checkpoint import load_trained
from mmseq.errors import CheckpointError
from mmseq.text.hf import HFModel, family_of, save_hf


def export_hf(checkpoint: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write the `.ckpt` written by `mmseq fit` (fine-tuned from a Hugging Face T5 / BART /
    MarianMT / Pegasus folder) as a Hugging Face folder. Returns the folder."""
    trained = load_trained(checkpoint)
    if trained.hf is None:
        raise CheckpointError(
            f"{checkpoint}: this model was not fine-tuned from a Hugging Face folder, so there is "
            "no Hugging Face architecture to write it as (mmseq fit checkpoints load directly "
            "in mmseq translate / summarize / TextGenerator)"
        )
    config = trained.hf["config"]
    family = family_of(config, Path(checkpoint))
    imported = HFModel(trained.model, family, config, trained.hf["generation"], Path(checkpoint))
    out = save_hf(imported, folder)
    trained.tokenizer.save(out)
    return out

"""`mmseq export --format hf`: a checkpoint written back as a Hugging Face folder.

- fine-tuned from a Hugging Face folder (T5, BART, MarianMT, Pegasus): what the model was
  imported from (config.json, generation_config.json, model.safetensors, the tokenizer files)
  with the fine-tuned weights, so transformers, mmseq's `TextGenerator` and CTranslate2's
  converter read it as they read the original;
- a fine-tuned Whisper: a `WhisperForConditionalGeneration` folder (mmseq.whisper.export).

The folder is built beside `folder` and renamed into place: it is complete or absent.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmseq.checkpoint import TrainedModel, load_trained
from mmseq.data.tokenizer import WhisperTextTokenizer
from mmseq.errors import CheckpointError
from mmseq.serialization import staged_folder
from mmseq.text.hf import HFModel, family_of, save_hf


def export_hf(checkpoint: str | os.PathLike | TrainedModel, folder: str | os.PathLike) -> Path:
    """Write the `.ckpt` written by `mmseq fit` (fine-tuned from a Hugging Face T5 / BART /
    MarianMT / Pegasus folder, or from Whisper) as a Hugging Face folder. `folder` must not
    exist, or be empty. Returns the folder."""
    trained = checkpoint if isinstance(checkpoint, TrainedModel) else load_trained(checkpoint)
    is_speech = trained.modalities == ["audio"]
    if trained.hf is None and is_speech and isinstance(trained.tokenizer, WhisperTextTokenizer):
        from mmseq.whisper.export import export_hf_whisper

        return export_hf_whisper(trained, folder)
    if trained.hf is None:
        from mmseq.whisper.export import describe

        raise CheckpointError(
            f"{trained.source}: {describe(trained)}, not fine-tuned from a Hugging Face folder "
            "nor from Whisper, so there is no Hugging Face architecture to write it as "
            "(--format mmseq writes any model, for every mmseq command)"
        )
    config = trained.hf["config"]
    family = family_of(config, trained.source)
    imported = HFModel(trained.model, family, config, trained.hf["generation"], trained.source)
    with staged_folder(folder) as staging:
        save_hf(imported, staging)
        trained.tokenizer.save(staging)
    return Path(folder)

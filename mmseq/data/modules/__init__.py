"""LightningDataModules, one per modality and one mixing them, built from YAML by LightningCLI:

    data:
      class_path: mmseq.data.modules.SpeechDataModule
      init_args: {train: data/demo/speech/train.jsonl, val: data/demo/speech/val.jsonl}

Each split arg (`train`, `val`, `test`, `predict`) takes a manifest path, or a split name under
`root` for folder formats (LibriSpeech, COCO), or a list of them joined into one split. A split
that a Trainer entry point needs but that is not set is an error naming the arg; `fit` without
`val` runs without validation. `tokenizer` (a tokenizer.json path or "whisper") is linked from
the model's by mmseq's CLI. Loaders shard themselves across ranks: train with
``Trainer(use_distributed_sampler=False)``.
"""

from mmseq.data.modules.base import Seq2SeqDataModule
from mmseq.data.modules.caption import CaptionDataModule
from mmseq.data.modules.multitask import MultiTaskDataModule
from mmseq.data.modules.speech import SpeechDataModule
from mmseq.data.modules.text import SummarizationDataModule, TextDataModule

__all__ = [
    "CaptionDataModule",
    "MultiTaskDataModule",
    "Seq2SeqDataModule",
    "SpeechDataModule",
    "SummarizationDataModule",
    "TextDataModule",
]

"""MultiTaskDataModule: speech, caption and text data trained together by one model.

    data:
      class_path: mmseq.data.modules.MultiTaskDataModule
      init_args:
        speech: {train: data/demo/speech/train.jsonl, val: data/demo/speech/val.jsonl}
        caption: {train: data/demo/shapes/train.jsonl, val: data/demo/shapes/val.jsonl,
                  batch_size: 32}

Each part is a full `SpeechDataModule` / `CaptionDataModule` / `TextDataModule` (its YAML
block holds that module's init args) with its own task token, batching and workers; the
tokenizer is given once, here (mmseq's CLI links it from the model's).
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.combined_loader import CombinedLoader

from mmseq.data.modules.base import Seq2SeqDataModule, fitting
from mmseq.data.modules.caption import CaptionDataModule
from mmseq.data.modules.speech import SpeechDataModule
from mmseq.data.modules.splits import STAGE_SPLITS
from mmseq.data.modules.text import TextDataModule
from mmseq.data.sampler import ResumableDataLoader
from mmseq.data.tokenizer import TextTokenizer, load_tokenizer


class MultiTaskDataModule(LightningDataModule):
    """Training steps get ``dict[name, Batch]`` with one batch per part that has `train` data
    (names "speech", "caption", "text"), from ``CombinedLoader(mode="max_size_cycle")``: an
    epoch lasts as long as the longest part, shorter parts start over meanwhile.
    Validation, test and predict get one loader per part that has that split, in that order;
    `names(split)` names them (index = dataloader_idx).

    Attributes: `parts` (name -> DataModule), `tokenizer`, `tasks` (name -> task token),
    `modalities` (name -> Batch.modality), `skipped` ("name/split" -> entries skipped).
    """

    def __init__(
        self,
        tokenizer: str | None = None,
        speech: SpeechDataModule | None = None,
        caption: CaptionDataModule | None = None,
        text: TextDataModule | None = None,
    ) -> None:
        super().__init__()
        named = {"speech": speech, "caption": caption, "text": text}
        self.parts: dict[str, Seq2SeqDataModule] = {n: p for n, p in named.items() if p is not None}
        if not self.parts:
            raise ValueError("MultiTaskDataModule: set at least one of speech, caption, text")
        self.tokenizer = self._shared_tokenizer(tokenizer)
        self.tasks = {name: part.task for name, part in self.parts.items()}
        self.modalities = {name: part.modality for name, part in self.parts.items()}
        hparams = {
            name: {k: v for k, v in part.hparams.items() if k != "tokenizer"}
            for name, part in self.parts.items()
        }
        self.save_hyperparameters({"tokenizer": tokenizer, **hparams})

    def _shared_tokenizer(self, spec: str | None) -> TextTokenizer:
        given = [("tokenizer", load_tokenizer(spec))] if spec is not None else []
        given += [(f"{n}.tokenizer", p.tokenizer) for n, p in self.parts.items() if p.tokenizer]
        if not given:
            raise ValueError(
                "MultiTaskDataModule: tokenizer is not set; give `tokenizer` (mmseq's CLI "
                "links it from model.tokenizer)"
            )
        (first_name, shared), *others = given
        for name, tokenizer in others:
            if tokenizer.to_json() != shared.to_json():
                raise ValueError(
                    f"MultiTaskDataModule: {name} ({tokenizer.source}) differs from "
                    f"{first_name} ({shared.source}); every part must use one tokenizer"
                )
        for part in self.parts.values():
            part.set_tokenizer(shared)
        return shared

    @property
    def skipped(self) -> dict[str, int]:
        return {f"{n}/{split}": k for n, p in self.parts.items() for split, k in p.skipped.items()}

    def setup(self, stage: str) -> None:
        splits = STAGE_SPLITS[stage]
        if not self.names(splits[0]):
            raise ValueError(self._missing(splits[0]))
        for part in self.parts.values():
            part.trainer = self.trainer  # parts read the model's config through it
            for split in splits:
                if part.has(split):
                    part.dataset(split)

    def names(self, split: str) -> list[str]:
        """The parts that have `split`, in loader order."""
        return [name for name, part in self.parts.items() if part.has(split)]

    def train_dataloader(self) -> CombinedLoader:
        loaders = dict(zip(self.names("train"), self._loaders("train"), strict=True))
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> list[ResumableDataLoader]:
        if not self.names("val") and fitting(self.trainer):
            return []  # fit without validation
        return self._loaders("val")

    def test_dataloader(self) -> list[ResumableDataLoader]:
        return self._loaders("test")

    def predict_dataloader(self) -> list[ResumableDataLoader]:
        return self._loaders("predict")

    def _loaders(self, split: str) -> list[ResumableDataLoader]:
        if not self.names(split):
            raise ValueError(self._missing(split))
        for part in self.parts.values():
            part.trainer = self.trainer
        return [self.parts[name].loader(split) for name in self.names(split)]

    def _missing(self, split: str) -> str:
        args = " or ".join(f"{name}.{split}" for name in self.parts)
        return f"MultiTaskDataModule: no part has '{split}' data; set {args}"

"""CaptionDataModule: image -> caption, from JSON-lines manifests or a COCO folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from mmseq.data.captions import CocoCaptionsDataset, ImageCaptionDataset
from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.images import Augment, check_augment, image_transforms
from mmseq.data.modules.base import Seq2SeqDataModule
from mmseq.data.modules.splits import Source, check_positive, folder_root
from mmseq.encoders.image import ImageEncoderConfig


class CaptionDataModule(Seq2SeqDataModule):
    """Image -> caption.

    format="jsonl": split args are JSON-lines manifests (`ImageCaptionDataset`).
    format="coco": `root` is a COCO folder and split args name its splits (e.g. train2017),
    read as images in `root/<split>/` and captions in `root/annotations/captions_<split>.json`.

    Images are resized to the model's image encoder size and normalised with its mean and std
    (`ImageEncoderConfig`); without a model, `image_size` (and optionally `image_mean`,
    `image_std`; default 0.5 each) say it. Given with a model, they must agree with it.
    `augment`: the training augmentation of `image_transforms`: "crop" (a random crop of
    85-100% of the area) or "none", for captions that depend on the image's edges (digit
    strings).
    Batches hold `batch_size` images, grouped by caption length; targets are cut at
    `max_target_tokens`, by default the decoder's n_ctx.
    """

    name, modality = "caption", "image"

    def __init__(
        self,
        tokenizer: str | None = None,
        train: Source = None,
        val: Source = None,
        test: Source = None,
        predict: Source = None,
        format: Literal["jsonl", "coco"] = "jsonl",
        root: str | None = None,
        task: str | None = "caption",
        batch_size: int = 64,
        image_size: int | list[int] | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        max_target_tokens: int | None = None,
        augment: Augment = "crop",
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        sources = {"train": train, "val": val, "test": test, "predict": predict}
        super().__init__(tokenizer, sources, task, num_workers, skip_bad, seed)
        self.save_hyperparameters()
        self.format, self.root = format, folder_root(format, root, "coco")
        check_positive("batch_size", batch_size)
        self.batch_size, self.max_target_tokens = batch_size, max_target_tokens
        check_augment(augment)
        self.augment = augment
        given = {"image_size": image_size, "image_mean": image_mean, "image_std": image_std}
        self.image_args = {k: v for k, v in given.items() if v is not None}
        # patch_size 1: any size is valid here; only size, mean and std are used
        self._given = ImageEncoderConfig(**self.image_args, patch_size=1)

    def image_settings(self) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
        """(height, width), mean, std the images get: the model's, else the init args'."""
        encoder = self.encoder_config()
        if encoder is None:
            if "image_size" not in self.image_args:
                raise ValueError(
                    "CaptionDataModule: image_size is not set and no model with an image "
                    "encoder is attached; set image_size (and image_mean, image_std)"
                )
            encoder = self._given
        for key in self.image_args:
            if getattr(self._given, key) != getattr(encoder, key):
                raise ValueError(
                    f"CaptionDataModule {key}: {self.image_args[key]} differs from the model's "
                    f"image encoder ({getattr(encoder, key)}); leave it unset to use the model's"
                )
        return tuple(encoder.image_size), tuple(encoder.image_mean), tuple(encoder.image_std)

    def _build_key(self) -> tuple:
        return self.image_settings()

    def _build(self, source: str, train: bool) -> Dataset:
        transform = image_transforms(*self.image_settings(), train=train, augment=self.augment)
        if self.format == "coco":
            root = Path(self.root)
            annotations = root / "annotations" / f"captions_{source}.json"
            return CocoCaptionsDataset(root / source, annotations, transform, train, self.skip_bad)
        return ImageCaptionDataset(source, transform, train, self.skip_bad)

    def _batching(self, dataset: Dataset) -> tuple[Sequence[float], float, int | None]:
        # Every bucket gets `batch_size` images (an image costs the same whatever its caption);
        # bucketing only groups captions of similar length, so targets carry less padding.
        costs = dataset.costs()
        return costs, self.batch_size * max(costs), self.batch_size

    def _collator(self) -> Seq2SeqCollator:
        return Seq2SeqCollator(
            self.require_tokenizer(),
            "image",
            self.task,
            max_target_tokens=self.target_limit(),
        )

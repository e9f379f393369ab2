"""What every modality's LightningDataModule shares.

A subclass says how one split's dataset is built from its init arg (`_build`), how it is
batched (`_batching`) and collated (`_collator`). This base class loads the tokenizer, builds
the splits a stage needs (once), makes the loaders, reports skipped entries, and reads what
the data must match (mel bins, image size, context lengths) from the model of the trainer's
LightningModule (``trainer.lightning_module.model.config``, a `ModelConfig`) when there is one.

Loaders are `ResumableDataLoader`s over a `BucketBatchSampler` that shards itself across
ranks: train with ``Trainer(use_distributed_sampler=False)``. Evaluation is sharded the same
way; like Lightning's DistributedSampler, it repeats a few batches so that every rank gets as
many (with several devices, metrics then count those examples twice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Dataset

from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.modules.splits import (
    ENTRY_POINT,
    SPLITS,
    STAGE_SPLITS,
    Joined,
    Source,
    as_list,
)
from mmseq.data.sampler import BucketBatchSampler, ResumableDataLoader
from mmseq.data.tokenizer import TextTokenizer, load_tokenizer

log = logging.getLogger(__name__)


class Seq2SeqDataModule(LightningDataModule):
    """Base class; see the module docstring.

    Attributes: `tokenizer` (None until set when built inside `MultiTaskDataModule`),
    `modality` (`Batch.modality`), `task` (the task token, or None), `datasets` (built
    splits), `skipped` (split -> bad entries skipped with ``skip_bad=True``).
    """

    name: ClassVar[str]  # the stream's name in a multi-task run ("speech", ...)
    modality: ClassVar[str]  # "audio" | "image" | "text"
    max_target_tokens: int | None = None  # init arg of every subclass

    def __init__(
        self,
        tokenizer: str | None,
        sources: dict[str, Source],
        task: str | None,
        num_workers: int,
        skip_bad: bool,
        seed: int,
    ) -> None:
        super().__init__()
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        self.sources = {split: as_list(split, sources[split]) for split in SPLITS}
        self.task = task
        self.num_workers, self.skip_bad, self.seed = num_workers, skip_bad, seed
        self.tokenizer: TextTokenizer | None = None
        if tokenizer is not None:
            self.set_tokenizer(load_tokenizer(tokenizer))
        self.datasets: dict[str, Dataset] = {}
        self.skipped: dict[str, int] = {}
        self._keys: dict[str, Any] = {}  # what each built split depends on besides its args
        self._checked: int | None = None  # id of the LightningModule whose tokenizer matched

    def set_tokenizer(self, tokenizer: TextTokenizer) -> None:
        """Use `tokenizer` (`MultiTaskDataModule` shares its own); checks that it has `task`."""
        try:
            tokenizer.prefix(self.task)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} task: {exc}") from None
        self.tokenizer = tokenizer

    # -- what subclasses provide ---------------------------------------------------------

    def _build(self, source: str, train: bool) -> Dataset:
        """The dataset of one manifest (or split name) in `sources`."""
        raise NotImplementedError

    def _batching(self, dataset: Dataset) -> tuple[Sequence[float], float, int | None]:
        """(costs per item, max padded cost per batch, max batch size) for the sampler."""
        raise NotImplementedError

    def _collator(self) -> Seq2SeqCollator:
        raise NotImplementedError

    def _build_key(self) -> Any:
        """What datasets depend on besides init args (e.g. the model's image size): a split
        built under another key is built again."""
        return None

    # -- splits --------------------------------------------------------------------------

    def has(self, split: str) -> bool:
        return bool(self.sources[split])

    def setup(self, stage: str) -> None:
        """Build the splits `stage` uses: its first split must be configured."""
        splits = STAGE_SPLITS[stage]
        for split in splits:
            if split == splits[0] or self.has(split):
                self.dataset(split)

    def dataset(self, split: str) -> Dataset:
        """The split's dataset, built on first use (and again if `_build_key` changed)."""
        key = self._build_key()
        if split not in self.datasets or self._keys[split] != key:
            if not self.has(split):
                raise ValueError(self.missing(split))
            parts = [self._build(s, train=split == "train") for s in self.sources[split]]
            dataset = parts[0] if len(parts) == 1 else Joined(parts)
            self.datasets[split], self._keys[split] = dataset, key
            self.skipped[split] = len(dataset.skipped)
            if self.skipped[split]:
                _log_skipped(type(self).__name__, split, len(dataset), self.skipped[split])
        return self.datasets[split]

    def missing(self, split: str) -> str:
        """Why `split` cannot be loaded, naming the init arg to set."""
        return (
            f"{type(self).__name__}: no '{split}' data; set `{split}` (data.init_args.{split} in "
            f"the YAML config) to use {ENTRY_POINT[split]}"
        )

    # -- loaders -------------------------------------------------------------------------

    def train_dataloader(self) -> ResumableDataLoader:
        return self.loader("train")

    def val_dataloader(self) -> ResumableDataLoader | list:
        if not self.has("val") and fitting(self.trainer):
            log.info("%s: no `val` split, so fit runs without validation", type(self).__name__)
            return []  # Lightning skips validation for an empty list
        return self.loader("val")

    def test_dataloader(self) -> ResumableDataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> ResumableDataLoader:
        return self.loader("predict")

    def loader(self, split: str) -> ResumableDataLoader:
        """Batches of `split`: shuffled by seed + epoch for train, in cost order otherwise."""
        dataset = self.dataset(split)
        costs, max_cost, max_batch_size = self._batching(dataset)
        train = split == "train"
        trainer = self.trainer
        sampler = BucketBatchSampler(
            costs,
            max_cost,
            max_batch_size,
            shuffle=train,
            seed=self.seed,
            num_replicas=getattr(trainer, "world_size", None),
            rank=getattr(trainer, "global_rank", None),
        )
        return ResumableDataLoader(
            dataset,
            batch_sampler=sampler,  # by keyword, as Lightning's predict loop re-passes it
            # Its own generator: a DataLoader draws a seed from torch's global one when it starts
            # iterating, which would shift every later random crop after a resume.
            generator=torch.Generator().manual_seed(torch.initial_seed()),
            collate_fn=self._collator(),
            num_workers=self.num_workers,
            pin_memory=_on_cuda(trainer),
            persistent_workers=train and self.num_workers > 0,
        )

    def names(self, split: str) -> list[str]:
        return [self.name] if self.has(split) else []

    # -- what the model asks for ---------------------------------------------------------

    def model_config(self) -> Any | None:
        """``trainer.lightning_module.model.config`` (a `ModelConfig`), or None."""
        module = getattr(self.trainer, "lightning_module", None)
        config = getattr(getattr(module, "model", None), "config", None)
        if config is not None:
            self._check_tokenizer(module)
        return config

    def encoder_config(self) -> Any | None:
        """The model's encoder config for this modality; None without a model."""
        config = self.model_config()
        if config is None:
            return None
        encoder = getattr(config, self.modality, None)
        if encoder is None:
            raise ValueError(
                f"{type(self).__name__}: the model has no {self.modality} encoder "
                f"(model.config.{self.modality} is None); add one to the model config"
            )
        return encoder

    def target_limit(self) -> int | None:
        """Longest target (`max_target_tokens`, else the decoder's n_ctx)."""
        config = self.model_config()
        n_ctx = None if config is None else config.decoder.n_ctx
        return self.context_limit("max_target_tokens", self.max_target_tokens, n_ctx)

    def context_limit(self, name: str, given: int | None, n_ctx: int | None) -> int | None:
        """`given` (init arg `name`), else the model's `n_ctx`; more than `n_ctx` is an error."""
        if given is not None and n_ctx is not None and given > n_ctx:
            raise ValueError(f"{name}: {given} is more than the model's n_ctx={n_ctx}")
        return n_ctx if given is None else given

    def require_tokenizer(self) -> TextTokenizer:
        if self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__}: tokenizer is not set; give `tokenizer` (mmseq's CLI "
                "links it from model.tokenizer)"
            )
        return self.tokenizer

    def _check_tokenizer(self, module: Any) -> None:
        if self._checked == id(module):
            return
        theirs = getattr(module, "tokenizer", None)
        ours = self.require_tokenizer()
        if isinstance(theirs, TextTokenizer) and theirs.to_json() != ours.to_json():
            raise ValueError(
                f"{type(self).__name__}: tokenizer {ours.source} differs from the model's "
                f"{theirs.source}; the data must be tokenised as the model is"
            )
        self._checked = id(module)


def fitting(trainer: Any) -> bool:
    return getattr(getattr(trainer, "state", None), "fn", None) == "fit"


def _on_cuda(trainer: Any) -> bool:
    device = getattr(getattr(trainer, "strategy", None), "root_device", None)
    return getattr(device, "type", None) == "cuda" and torch.cuda.is_available()


@rank_zero_only
def _log_skipped(owner: str, split: str, kept: int, skipped: int) -> None:
    # The datasets log each bad entry on every rank; this is the one-line account per split.
    log.warning(
        "%s: '%s' split: %d bad entr%s skipped (skip_bad=True), %d kept",
        owner,
        split,
        skipped,
        "y" if skipped == 1 else "ies",
        kept,
    )

"""TextDataModule: source text -> target text, from JSON-lines or TSV pair files."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.modules.base import Seq2SeqDataModule
from mmseq.data.modules.splits import Source, check_positive
from mmseq.data.text_pairs import TextPairDataset
from mmseq.data.tokenizer import load_tokenizer


class TextDataModule(Seq2SeqDataModule):
    """Source text -> target text (translation and other text-to-text tasks).

    Split args are JSON-lines (``{"source", "target"}``) or TSV (``source<TAB>target``) files,
    told apart by suffix (`TextPairDataset`). Sources are tokenised with `source_tokenizer`
    (default: `tokenizer`). Batches hold at most `max_batch_words` padded source words (words
    stand in for tokens, see `TextPairDataset.costs`) and `max_batch_size` pairs. Sources are
    cut at `max_source_tokens` (default: the text encoder's n_ctx), targets at
    `max_target_tokens` (default: the decoder's n_ctx).
    """

    name, modality = "text", "text"

    def __init__(
        self,
        tokenizer: str | None = None,
        train: Source = None,
        val: Source = None,
        test: Source = None,
        predict: Source = None,
        source_tokenizer: str | None = None,
        task: str | None = "translate",
        max_batch_words: float = 4000.0,
        max_batch_size: int | None = 128,
        max_source_tokens: int | None = None,
        max_target_tokens: int | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        sources = {"train": train, "val": val, "test": test, "predict": predict}
        super().__init__(tokenizer, sources, task, num_workers, skip_bad, seed)
        self.save_hyperparameters()
        check_positive("max_batch_words", max_batch_words)
        self.source_tokenizer = (
            None if source_tokenizer is None else load_tokenizer(source_tokenizer)
        )
        self.max_batch_words, self.max_batch_size = max_batch_words, max_batch_size
        self.max_source_tokens, self.max_target_tokens = max_source_tokens, max_target_tokens

    def _build(self, source: str, train: bool) -> Dataset:
        return TextPairDataset(source, self.skip_bad)

    def _batching(self, dataset: Dataset) -> tuple[Sequence[float], float, int | None]:
        return dataset.costs(), self.max_batch_words, self.max_batch_size

    def _collator(self) -> Seq2SeqCollator:
        encoder = self.encoder_config()
        tokenizer = self.require_tokenizer()
        source_tokenizer = self.source_tokenizer or tokenizer
        if encoder is not None and source_tokenizer.vocab_size > encoder.vocab_size:
            raise ValueError(
                f"TextDataModule: the source tokenizer has {source_tokenizer.vocab_size} ids, "
                f"more than the text encoder's vocab_size={encoder.vocab_size}"
            )
        source_limit = getattr(encoder, "n_ctx", None)
        return Seq2SeqCollator(
            tokenizer,
            "text",
            self.task,
            max_target_tokens=self.target_limit(),
            source_tokenizer=source_tokenizer,
            max_source_tokens=self.context_limit(
                "max_source_tokens", self.max_source_tokens, source_limit
            ),
        )

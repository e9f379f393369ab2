"""Text-to-text DataModules: source text -> target text (translation), document -> summary."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.modules.base import Seq2SeqDataModule
from mmseq.data.modules.splits import Source, check_positive
from mmseq.data.text_pairs import TextPairDataset
from mmseq.data.tokenizer import TextTokenizer, load_tokenizer

METRICS = ("translation", "summarization")  # the metric sets of mmseq.training.metrics


class TextDataModule(Seq2SeqDataModule):
    """Source text -> target text (translation and other text-to-text tasks).

    Split args are JSON-lines (``{"source", "target"}``) or TSV (``source<TAB>target``) files,
    told apart by suffix (`TextPairDataset`). Sources are tokenised with `source_tokenizer`
    (default: `tokenizer`'s source side: the same vocabulary, or a Hugging Face folder's source
    tokenizer). Batches are bucketed by length in tokens: a batch holds at most
    `max_batch_tokens` padded tokens (source + target of its longest pair, times its size) and
    `max_batch_size` pairs. Sources are cut at `max_source_tokens` (default: the text encoder's
    n_ctx), targets at `max_target_tokens` (default: the decoder's n_ctx), with a warning.
    `metrics`: what validation reports, "translation" (sacreBLEU BLEU and chrF) or
    "summarization" (ROUGE-1/2/L). `task`: the task token the decoder starts with (None for
    a Hugging Face model's tokenizer, which has none).
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
        metrics: str = "translation",
        max_batch_tokens: float = 8000.0,
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
        check_positive("max_batch_tokens", max_batch_tokens)
        if metrics not in METRICS:
            raise ValueError(f"metrics: expected one of {METRICS}, got {metrics!r}")
        self.metrics = metrics
        self.source_tokenizer = (
            None if source_tokenizer is None else load_tokenizer(source_tokenizer)
        )
        self.max_batch_tokens, self.max_batch_size = max_batch_tokens, max_batch_size
        self.max_source_tokens, self.max_target_tokens = max_source_tokens, max_target_tokens

    def _build(self, source: str, train: bool) -> Dataset:
        return TextPairDataset(source, self.skip_bad)

    def source_texts(self, split: str, ids: Sequence[str]) -> list[str]:
        """The source texts of the items `ids` of `split` (for baselines such as the lead)."""
        dataset = self.dataset(split)
        by_id = {}
        for i in range(len(dataset)):
            item = dataset[i]
            by_id[item["id"]] = item["source"]
        return [by_id[i] for i in ids]

    def _source_tokenizer(self) -> TextTokenizer:
        return self.source_tokenizer or self.require_tokenizer().for_source()

    def _batching(self, dataset: Dataset) -> tuple[Sequence[float], float, int | None]:
        """Costs are token counts (source + target, each as the collator will cut it)."""
        items = [dataset[i] for i in range(len(dataset))]
        tokenizer = self.require_tokenizer()
        sources = self._source_tokenizer().encode_batch([item["source"] for item in items])
        targets = tokenizer.encode_batch([item["text"] for item in items])
        source_cap, target_cap = self._limits()
        n_prefix = len(tokenizer.prefix(self.task))
        costs = [
            _capped(len(s) + 1, source_cap) + _capped(len(t) + n_prefix, target_cap)
            for s, t in zip(sources, targets, strict=True)
        ]
        return costs, self.max_batch_tokens, self.max_batch_size

    def _limits(self) -> tuple[int | None, int | None]:
        """(longest source, longest target) in tokens."""
        encoder = self.encoder_config()
        source_limit = getattr(encoder, "n_ctx", None)
        return (
            self.context_limit("max_source_tokens", self.max_source_tokens, source_limit),
            self.target_limit(),
        )

    def _collator(self) -> Seq2SeqCollator:
        encoder = self.encoder_config()
        tokenizer = self.require_tokenizer()
        source_tokenizer = self._source_tokenizer()
        if encoder is not None and source_tokenizer.vocab_size > encoder.vocab_size:
            raise ValueError(
                f"{type(self).__name__}: the source tokenizer has {source_tokenizer.vocab_size} "
                f"ids, more than the text encoder's vocab_size={encoder.vocab_size}"
            )
        source_cap, target_cap = self._limits()
        return Seq2SeqCollator(
            tokenizer,
            "text",
            self.task,
            max_target_tokens=target_cap,
            source_tokenizer=source_tokenizer,
            max_source_tokens=source_cap,
        )


class SummarizationDataModule(TextDataModule):
    """Document -> summary: a `TextDataModule` (``{"source": document, "target": summary}``
    files, as `mmseq data make-summarization` writes them) whose validation reports ROUGE, with
    defaults for long sources and short targets. `task` defaults to "summarize" (the tokenizer
    needs that task token: `mmseq tokenizer train --tasks summarize`)."""

    name = "summary"

    # The signature is restated, not **kwargs, so that LightningCLI shows and checks these
    # defaults (`mmseq fit --help`, --print_config).
    def __init__(
        self,
        tokenizer: str | None = None,
        train: Source = None,
        val: Source = None,
        test: Source = None,
        predict: Source = None,
        source_tokenizer: str | None = None,
        task: str | None = "summarize",
        metrics: str = "summarization",
        max_batch_tokens: float = 16000.0,
        max_batch_size: int | None = 64,
        max_source_tokens: int | None = None,
        max_target_tokens: int | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            tokenizer,
            train,
            val,
            test,
            predict,
            source_tokenizer,
            task,
            metrics,
            max_batch_tokens,
            max_batch_size,
            max_source_tokens,
            max_target_tokens,
            num_workers,
            skip_bad,
            seed,
        )


def _capped(length: int, cap: int | None) -> int:
    return length if cap is None else min(length, cap)

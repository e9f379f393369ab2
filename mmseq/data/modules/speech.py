"""SpeechDataModule: speech -> text, from NeMo-style manifests or a LibriSpeech folder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch.utils.data import Dataset

from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.modules.base import Seq2SeqDataModule
from mmseq.data.modules.splits import Source, check_positive, folder_root
from mmseq.data.speech import LibriSpeechDataset, SpeechManifestDataset

DEFAULT_N_MELS = 80  # Whisper's, used when no model says otherwise
SAMPLE_RATE = 16000


class SpeechDataModule(Seq2SeqDataModule):
    """Speech -> text (transcription, or speech translation with another `task`).

    format="manifest": split args are NeMo-style JSON-lines manifests (`SpeechManifestDataset`).
    format="librispeech": `root` is a LibriSpeech folder and split args name its splits, e.g.
    ``train: [train-clean-100, train-clean-360, train-other-500]``, ``val: dev-clean``.

    Batches hold at most `max_batch_seconds` of padded audio and `max_batch_size` clips.
    `max_duration` leaves longer utterances out of *training* (evaluation keeps every one).
    Log-mels have the model's `n_mels` (80 without a model); targets are cut at
    `max_target_tokens`, by default the decoder's n_ctx.
    """

    name, modality = "speech", "audio"

    def __init__(
        self,
        tokenizer: str | None = None,
        train: Source = None,
        val: Source = None,
        test: Source = None,
        predict: Source = None,
        format: Literal["manifest", "librispeech"] = "manifest",
        root: str | None = None,
        task: str | None = "transcribe",
        max_batch_seconds: float = 120.0,
        max_batch_size: int | None = 32,
        max_duration: float | None = 30.0,
        max_target_tokens: int | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        sources = {"train": train, "val": val, "test": test, "predict": predict}
        super().__init__(tokenizer, sources, task, num_workers, skip_bad, seed)
        self.save_hyperparameters()
        self.format, self.root = format, folder_root(format, root, "librispeech")
        check_positive("max_batch_seconds", max_batch_seconds)
        if max_duration is not None:
            check_positive("max_duration", max_duration)
        self.max_batch_seconds, self.max_batch_size = max_batch_seconds, max_batch_size
        self.max_duration, self.max_target_tokens = max_duration, max_target_tokens

    def _build(self, source: str, train: bool) -> Dataset:
        max_duration = self.max_duration if train else None
        if self.format == "librispeech":
            return LibriSpeechDataset(self.root, source, SAMPLE_RATE, self.skip_bad, max_duration)
        return SpeechManifestDataset(source, SAMPLE_RATE, self.skip_bad, max_duration)

    def _batching(self, dataset: Dataset) -> tuple[Sequence[float], float, int | None]:
        return dataset.costs(), self.max_batch_seconds, self.max_batch_size

    def _collator(self) -> Seq2SeqCollator:
        audio = self.encoder_config()
        return Seq2SeqCollator(
            self.require_tokenizer(),
            "audio",
            self.task,
            n_mels=DEFAULT_N_MELS if audio is None else audio.n_mels,
            max_target_tokens=self.target_limit(),
        )

"""Seq2SeqModule: one LightningModule for every encoder mix (audio, image, text -> text).

Training is teacher-forced cross-entropy (label smoothing) on `Batch`es from mmseq.data; a
multitask DataModule hands each step a dict of batches, one per task, whose losses are summed.
Validation decodes and reports the task's metrics (speech: WER/CER; captions: BLEU-4, CIDEr-D,
exact match, word accuracy; text streams as their DataModule's `metrics` say: translation
sacreBLEU and chrF, summarization ROUGE-1/2/L beside the lead baseline's) and a table of sample
predictions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import statistics
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from mmseq.checkpoint import checkpoint_entry, hf_origin, load_trained
from mmseq.config import to_dict
from mmseq.data.augment import SpecAugment
from mmseq.data.collate import Batch
from mmseq.data.hf_tokenizer import HFTextTokenizer, is_hf_text_folder
from mmseq.data.tokenizer import TextTokenizer, load_tokenizer
from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig, generate
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.training.architecture import NO_OVERRIDES, ModelOverrides, set_fields
from mmseq.training.metrics import lead_baseline, metric_signatures, text_metrics
from mmseq.training.nonfinite import NonFiniteGuard
from mmseq.training.optim import OptimizerConfig, build_optimizer, build_scheduler
from mmseq.training.rng import rng_states, set_rng_states

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64  # validation decodes of untrained models never stop: cap their cost
METRIC_TASK = {"audio": "speech", "image": "caption", "text": "text"}  # modality -> metric set


class Seq2SeqModule(pl.LightningModule):
    """Args:
    model: the architecture fields to set (ModelConfig's: `decoder`, `audio`, `image`, `text`,
        `share_embeddings`); unset ones keep their defaults. From Python also a dict of them or
        a model YAML path (configs/models/*.yaml). Left out when `pretrained` gives the
        architecture (then `model` fields override it, e.g. `audio.pad_to_30s`).
        `decoder.vocab_size` (and `text.vocab_size`) default to the tokenizer's.
    tokenizer: a tokenizer.json (`mmseq tokenizer train` or `mmseq data make-demo` write one),
        `whisper` for tiny.en's, or a Hugging Face model folder (its own tokenizer).
    pretrained: start from these weights: `tiny.en`, a Whisper checkpoint path, a `.ckpt`
        written by `mmseq fit`, or a Hugging Face T5 / BART / MarianMT / Pegasus folder (then
        give the same folder as `tokenizer`; `mmseq export --format hf` writes the result back
        as one).
    freeze: parameter-name prefixes to keep fixed, e.g. `encoders.audio`.
    spec_augment: time/frequency masks on training log-mels (audio batches only).
    num_beams, max_new_tokens, no_repeat_ngram_size: decoding in validation, test and predict
        (max_new_tokens None: DEFAULT_MAX_NEW_TOKENS, or what the decoder's n_ctx holds after
        the start tokens if fewer;
        no_repeat_ngram_size > 0: no n-gram of that size twice in an output, which keeps a
        briefly trained summariser from looping).
    nonfinite: what a non-finite loss or gradient does to a training step (checked at every
        step): `skip` drops its update (counted in `train/skipped_nonfinite`, with a warning
        naming the step and its samples), `stop` ends the run with an error naming them (see
        mmseq.training.nonfinite).
    nonfinite_limit: with `skip`, the run ends (an error, as `stop`) after this many skipped
        steps in a row: it has diverged.
    """

    def __init__(
        self,
        tokenizer: str,
        model: ModelOverrides = NO_OVERRIDES,
        pretrained: str | None = None,
        optimizer: OptimizerConfig | None = None,
        label_smoothing: float = 0.1,
        freeze: list[str] | None = None,
        spec_augment: SpecAugment | None = None,
        num_beams: int = 1,
        max_new_tokens: int | None = None,
        no_repeat_ngram_size: int = 0,
        log_examples: int = 6,
        nonfinite: Literal["skip", "stop"] = "skip",
        nonfinite_limit: int = 100,
    ) -> None:
        super().__init__()
        self.nonfinite_guard = NonFiniteGuard(nonfinite, nonfinite_limit)  # checks them first
        model = _set_fields(model)
        # Plain values only (dataclasses as dicts): checkpoints stay loadable with weights_only.
        self.save_hyperparameters(
            {
                "tokenizer": tokenizer,
                "model": model,
                "pretrained": pretrained,
                "optimizer": to_dict(optimizer or OptimizerConfig()),
                "label_smoothing": label_smoothing,
                "freeze": list(freeze or []),
                "spec_augment": None if spec_augment is None else to_dict(spec_augment),
                "num_beams": num_beams,
                "max_new_tokens": max_new_tokens,
                "no_repeat_ngram_size": no_repeat_ngram_size,
                "log_examples": log_examples,
                "nonfinite": nonfinite,
                "nonfinite_limit": nonfinite_limit,
            }
        )
        self.tokenizer: TextTokenizer = load_tokenizer(tokenizer)
        self.hf_origin: dict[str, Any] | None = None  # set when `pretrained` is an HF folder
        self.model = self._build_model(model, pretrained)
        room = _decoding_room(self.tokenizer, self.model.config.decoder.n_ctx, max_new_tokens)
        if max_new_tokens is None:
            max_new_tokens = min(DEFAULT_MAX_NEW_TOKENS, room)
        self.optim_config = optimizer or OptimizerConfig()
        self.label_smoothing = label_smoothing
        self.spec_augment = spec_augment
        self.generation = GenerationConfig(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            no_repeat_ngram_size=no_repeat_ngram_size,
            eos_token_id=self.tokenizer.eos_id,
            pad_token_id=self.tokenizer.pad_id,
        )
        self.log_examples = log_examples
        self._freeze(freeze or [])
        self.tasks: dict[str, str | None] = {}  # modality -> task token, seen in training data
        self._outputs: dict[str, list[tuple[str, str, list[str]]]] = {}

    # -- construction --------------------------------------------------------------------

    def _build_model(self, model: str | dict | None, pretrained: str | None) -> EncoderDecoder:
        if model is None and pretrained is None:
            raise ValueError("model: give a model config (YAML path or dict) or `pretrained`")
        data = {}
        if model is not None:
            data = ModelConfig.from_yaml(model).to_dict() if isinstance(model, str) else model
        if pretrained is not None:
            # `model` fields override the pretrained architecture (e.g. audio.pad_to_30s)
            base = self._load_pretrained(pretrained)
            net = EncoderDecoder(ModelConfig.from_dict(_merge(base.config.to_dict(), data)))
            try:
                net.load_state_dict(base.state_dict())
            except RuntimeError as err:
                raise ValueError(
                    f"model: these overrides change the shapes of the pretrained weights: {err}"
                ) from None
        else:
            # vocabularies default to the tokenizer's (the text encoder reads the same ids)
            sizes = {"decoder": {"vocab_size": self.tokenizer.vocab_size}}
            if data.get("text") is not None:
                sizes["text"] = {"vocab_size": self.tokenizer.vocab_size}
            data = _merge(sizes, data)
            net = EncoderDecoder(ModelConfig.from_dict(data))
        vocab = net.config.decoder.vocab_size
        if vocab < self.tokenizer.vocab_size:
            raise ValueError(
                f"model.decoder.vocab_size: {vocab} is smaller than the tokenizer's "
                f"{self.tokenizer.vocab_size} ids ({self.hparams.tokenizer})"
            )
        return net

    def _load_pretrained(self, spec: str) -> EncoderDecoder:
        """tiny.en / a Whisper checkpoint (any format) / an mmseq `.ckpt` / a Hugging Face text
        model folder (T5, BART, MarianMT, Pegasus)."""
        if Path(spec).suffix == ".ckpt":
            trained = load_trained(spec)
            self.hf_origin = trained.hf
            return trained.model.train()
        if is_hf_text_folder(spec):
            from mmseq.text.hf import load_hf

            if not isinstance(self.tokenizer, HFTextTokenizer):
                raise ValueError(
                    f"tokenizer: {self.hparams.tokenizer!r} is not the tokenizer of the pretrained "
                    f"model; give its folder ({spec}) as `tokenizer` too"
                )
            imported = load_hf(spec)
            self.hf_origin = hf_origin(imported)
            return imported.model.train()
        from mmseq.whisper.loading import load_whisper

        try:
            return load_whisper(spec).model.train()
        except CheckpointError as err:
            raise CheckpointError(f"pretrained: {err}") from None

    def _freeze(self, prefixes: list[str]) -> None:
        names = [n for n, _ in self.model.named_parameters()]
        for prefix in prefixes:
            matched = [n for n in names if n.startswith(prefix)]
            if not matched:
                raise ValueError(
                    f"freeze: {prefix!r} matches no parameter; top-level modules are "
                    f"{sorted({n.split('.')[0] + '.' + n.split('.')[1] for n in names})}"
                )
            for name, p in self.model.named_parameters():
                if name.startswith(prefix):
                    p.requires_grad_(False)

    # -- training ------------------------------------------------------------------------

    def _loss(self, batch: Batch, train: bool) -> Tensor:
        inputs = batch.inputs
        if train and batch.modality == "audio" and self.spec_augment is not None:
            inputs = self.spec_augment(inputs, batch.lengths)
        out = self.model(
            batch.modality,
            inputs,
            batch.tokens,
            batch.lengths,
            batch.labels,
            self.label_smoothing if train else 0.0,
        )
        return out.loss

    def training_step(self, batch: Batch | dict[str, Batch], batch_idx: int) -> Tensor:
        batches = batch if isinstance(batch, dict) else {"": batch}
        total = 0.0
        for name, b in batches.items():
            if b is None:  # a task whose loader is exhausted in this combined step
                continue
            self.tasks[b.modality] = _task_of(b, self.tokenizer)
            loss = self._loss(b, train=True)
            self.nonfinite_guard.watch(name, b, loss)
            if name:
                self.log(f"train/{name}_loss", loss, batch_size=len(b))
            total = total + loss
        self.log("train/loss", total, prog_bar=True, batch_size=_size(batches))
        return total

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.nonfinite_guard.check(self, optimizer)  # may drop this step's gradients

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if not self.nonfinite_guard.last_skipped:  # a skipped step leaves the schedule alone
            super().lr_scheduler_step(scheduler, metric)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optim_config)
        # The schedule asks the trainer for its length only after training has started: asked
        # here, `estimated_stepping_batches` sets up the train loader before a resumed run has
        # restored its loops, and Lightning then never loads the loader's saved state, so a
        # mid-epoch resume would replay the epoch from its start (Lightning issue #20550).
        total = self.optim_config.total_steps or functools.cache(self._estimated_steps)
        scheduler = build_scheduler(optimizer, self.optim_config, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _estimated_steps(self) -> int:
        return int(self.trainer.estimated_stepping_batches)

    # -- evaluation ----------------------------------------------------------------------

    def decode_batch(self, batch: Batch) -> list[str]:
        out = generate(
            self.model,
            batch.modality,
            batch.inputs,
            batch.prefix,
            self.generation,
            lengths=batch.lengths,
        )
        prefix_len = batch.prefix.shape[1]
        return [self.tokenizer.decode(seq[0, prefix_len:].tolist()) for seq in out.sequences]

    def _eval_step(self, stage: str, batch: Batch, dataloader_idx: int) -> None:
        name = self._stream_name(stage, dataloader_idx, batch)
        loss = self._loss(batch, train=False)
        self.log(
            f"{stage}/{name + '/' if name else ''}loss",
            loss,
            batch_size=len(batch),
            add_dataloader_idx=False,
            sync_dist=True,
        )
        predictions = self.decode_batch(batch)
        rows = self._outputs.setdefault(f"{name}|{batch.modality}", [])
        rows.extend(zip(batch.ids, predictions, batch.references, strict=True))

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def _report(self, stage: str) -> None:
        for key, rows in self._gathered_outputs().items():
            name, modality = key.split("|")
            predictions = [p for _, p, _ in rows]
            references = [r for _, _, r in rows]
            part = self._stream_module(stage, name)
            kind = getattr(part, "metrics", None) or METRIC_TASK[modality]
            metrics = text_metrics(predictions, references, kind)
            if kind == "summarization" and hasattr(part, "source_texts"):
                documents = part.source_texts(stage, [i for i, _, _ in rows])
                metrics |= _lead_baseline(documents, references)
            prefix = f"{stage}/{name + '/' if name else ''}"
            for metric, value in metrics.items():
                # the same value on every rank (rows are gathered); sync_dist keeps it so and
                # quiets Lightning's warning about unsynced epoch-level metrics
                self.log(
                    prefix + metric, value, prog_bar=True, add_dataloader_idx=False, sync_dist=True
                )
            if not self.trainer.sanity_checking:
                signatures = metric_signatures(kind, references)
                self._show_examples(f"{stage} {name}".strip(), rows, metrics, signatures)
        self._outputs = {}

    def _gathered_outputs(self) -> dict[str, list[tuple[str, str, list[str]]]]:
        """Every rank's decoded rows, so that each computes the metrics of the whole split
        (BLEU and CIDEr are not means over examples: per-rank values cannot be averaged)."""
        if self.trainer.world_size == 1 or not dist.is_initialized():
            return self._outputs
        everyone: list[Any] = [None] * self.trainer.world_size
        dist.all_gather_object(everyone, self._outputs)
        merged: dict[str, dict] = {}
        for outputs in everyone:
            for key, rows in outputs.items():
                # by id: the sampler repeats a few items so that every rank gets equal batches
                merged.setdefault(key, {}).update((row[0], row) for row in rows)
        return {key: list(rows.values()) for key, rows in merged.items()}

    def _stream_module(self, stage: str, name: str) -> Any:
        """The DataModule of a stream (a part of a multi-task one: by name, or the only part
        with this split), or None. Its `metrics` (text streams: translation or summarization)
        picks the metric set."""
        datamodule = getattr(self.trainer, "datamodule", None)
        parts = getattr(datamodule, "parts", None)
        if not parts:
            return datamodule
        names = [name] if name else datamodule.names(stage)
        return parts[names[0]] if len(names) == 1 else None

    def _show_examples(
        self, title: str, rows: list, metrics: dict[str, float], signatures: dict[str, str]
    ) -> None:
        """A table of predictions vs references (and the metrics' signatures, as sacreBLEU
        asks papers to print them): on the console, and in TensorBoard."""
        if not rows or self.global_rank != 0 or self.log_examples < 1:
            return
        # spread over the split: evaluation runs in length order, and its first rows are the
        # shortest, least telling examples
        step = max(1, len(rows) // self.log_examples)
        rows = rows[step // 2 :: step][: self.log_examples]
        figures = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        figures += "".join(f"\n{k} signature: {v}" for k, v in signatures.items())
        lines = ["| id | prediction | reference |", "|---|---|---|"]
        lines += [f"| {i} | {p} | {r[0]} |" for i, p, r in rows]
        table = "\n".join(lines)
        rank_zero_info(f"\n{title} (epoch {self.current_epoch}): {figures}\n{table}")
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_text"):
            experiment.add_text(f"{title}/examples", table, self.global_step)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        predictions = self.decode_batch(batch)
        return [{"id": i, "prediction": p} for i, p in zip(batch.ids, predictions, strict=True)]

    def _stream_name(self, stage: str, dataloader_idx: int, batch: Batch) -> str:
        names_of = getattr(self.trainer.datamodule, "names", None)  # mmseq's DataModules
        names = names_of(stage) if names_of is not None else None
        if names and len(names) > 1:
            return names[dataloader_idx]
        return ""

    # -- checkpoints ---------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mmseq"] = checkpoint_entry(
            self.model.config, self.tokenizer, self.tasks, self.hf_origin
        )
        checkpoint["rng_states"] = rng_states()
        checkpoint["nonfinite_skipped"] = self.nonfinite_guard.skipped

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("mmseq", {}).get("tokenizer")
        if saved is not None and not same_vocabulary(saved, self.tokenizer.to_json()):
            # the ids would mean other words: every prediction and loss would be garbage
            raise CheckpointError(
                f"model.tokenizer {self.hparams.tokenizer}: not the tokenizer this checkpoint "
                "was trained with (their ids differ); pass the tokenizer.json it was trained "
                "with (`mmseq caption`/`transcribe` use the one inside the checkpoint)"
            )
        self.tasks = dict(checkpoint.get("mmseq", {}).get("tasks", {}))
        self.nonfinite_guard.skipped = checkpoint.get("nonfinite_skipped", 0)
        resuming = getattr(getattr(self._trainer, "state", None), "fn", None) == "fit"
        if resuming and "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


def _task_of(batch: Batch, tokenizer: TextTokenizer) -> str | None:
    """The task token a batch's prefix carries (None: the prefix is only the start token)."""
    ids = batch.prefix[0].tolist()
    by_id = {i: t for t, i in tokenizer.tasks.items()}
    found = [by_id[i] for i in ids if i in by_id]
    return found[-1] if found else None


def _decoding_room(tokenizer: TextTokenizer, n_ctx: int, max_new_tokens: int | None) -> int:
    """The most new tokens the decoder holds after the longest prefix (decoding fills prefix +
    max_new_tokens - 1 positions). A larger `max_new_tokens` fails now, not in the first
    validation."""
    lengths = [len(tokenizer.prefix(None))]
    for task in tokenizer.tasks:
        try:
            lengths.append(len(tokenizer.prefix(task)))
        except ValueError:  # a task this tokenizer names but cannot start (English-only)
            continue
    room = n_ctx - max(lengths) + 1
    if max_new_tokens is not None and max_new_tokens > room:
        raise ValueError(
            f"max_new_tokens: {max_new_tokens} does not fit the decoder: its n_ctx={n_ctx} "
            f"holds a {max(lengths)}-token prefix and at most {room} new tokens"
        )
    return room


def _lead_baseline(documents: list[str], references: list[list[str]]) -> dict[str, float]:
    """ROUGE of the lead baseline on the same examples (`lead_rouge1`, ...): each document's
    first sentence cut to the median reference length in words. A summariser should beat it."""
    n_words = max(1, int(statistics.median(len(refs[0].split()) for refs in references)))
    lead = text_metrics(lead_baseline(documents, n_words), references, "summarization")
    return {f"lead_{metric}": value for metric, value in lead.items()}


def _set_fields(model: Any) -> str | dict | None:
    """`model` as the module keeps it (plain values, for the hyperparameters): a YAML path, a
    dict of the fields set, or None when it sets none."""
    if dataclasses.is_dataclass(model):
        return set_fields(model) or None
    return model


def _size(batches: dict[str, Batch]) -> int:
    return sum(len(b) for b in batches.values() if b is not None)


def _merge(base: dict, override: dict) -> dict:
    """Nested dicts: `override`'s values win, key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def same_vocabulary(a: str, b: str) -> bool:
    """Whether two serialised tokenizers map text to the same ids: the same model (vocabulary,
    merges or pieces) and added tokens. Serialisations that are not tokenizer.json documents
    are compared as they are."""
    try:
        first, second = json.loads(a), json.loads(b)
    except ValueError:
        return a == b
    if not (isinstance(first, dict) and isinstance(second, dict)):
        return first == second
    keys = ("model", "added_tokens")
    return all(first.get(key) == second.get(key) for key in keys)

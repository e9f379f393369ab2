"""TextGenerator: text in, text out, for imported T5 / BART / Marian / Pegasus folders and for
text-to-text models trained with `mmseq fit`.

Inputs are read a window at a time (4096 by default), sorted by length within it, batched,
decoded and put back in order, so a batch pads little and memory does not grow with the input.
An empty (or whitespace-only) input gives an empty output without running the model, and an
input longer than the encoder's positions is cut to them with one warning per call (at its end).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from mmseq.checkpoint import TrainedModel, is_mmseq_folder, load_trained
from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig, decode
from mmseq.model import EncoderDecoder
from mmseq.precision import apply_compute_type, check_device

# Without max_length/max_new_tokens in the model's generation config, transformers stops at 20
# tokens in all, which cuts most sentences short; mmseq allows this many (within n_ctx).
DEFAULT_MAX_NEW_TOKENS = 256
# inputs read, sorted by length and decoded together before the next are read: enough for
# batches of similar lengths, few enough that a million lines need no more memory than a few
WINDOW = 4096


@dataclass
class Generated:
    """One input's result: the best sequence's text and ids (no prefix, no EOS), its score
    (beam search: length-penalised log-probability; greedy: log-probability), whether the
    input was cut to fit the encoder, and every returned sequence's text when several."""

    text: str
    tokens: list[int]
    score: float
    truncated: bool = False
    alternatives: list[str] | None = None


class TextGenerator:
    """Generate text from text with a seq2seq model.

    model: a Hugging Face folder (config.json + model.safetensors or pytorch_model.bin, and its
    tokenizer files) of type t5, mt5, bart, mbart, marian or pegasus; or a `.ckpt` written by
    `mmseq fit` (or the folder `mmseq export` makes of it) for a model with a text encoder.
    compute_type: float32, bfloat16, float16 (GPU) or int8 (CPU), see mmseq.precision.
    device: "auto" (the default) is CUDA when present, else the CPU (int8: the CPU).
    source_lang / target_lang: for multilingual models: Marian's `>>xx<<` target prefix,
    mBART's forced target-language token, T5's task prefix from its `task_specific_params`.
    task: a key of T5's `task_specific_params` ("summarization", "translation_en_to_de", ...):
    its prefix (T5's "summarize: ") and generation settings apply.
    compile: decode through `torch.compile` (`TextDecoder.compile_decoding`): 20-60 s to
    compile on the first batches, then faster steps, most at small batches and in bfloat16.
    Not with int8 (the dynamic int8 layers do not compile).
    """

    def __init__(
        self,
        model: str | os.PathLike | TrainedModel,
        device: str | torch.device = "auto",
        compute_type: str = "float32",
        source_lang: str | None = None,
        target_lang: str | None = None,
        task: str | None = None,
        compile: bool = False,
    ) -> None:
        if compile and compute_type == "int8":
            raise ValueError("compile: not with compute_type int8; use float32 or bfloat16")
        device = check_device(device, compute_type)  # "auto": CUDA when present, else the CPU
        if isinstance(model, TrainedModel):  # loaded already (mmseq.load)
            self._use_trained(model)
            path = model.source
        elif (path := Path(model)).is_dir() and not is_mmseq_folder(path):
            self._load_hf(path)
        elif path.exists():
            self._use_trained(load_trained(path))
        else:
            raise CheckpointError(
                f"{path}: no such model: expected a Hugging Face folder (config.json, "
                "model.safetensors or pytorch_model.bin, tokenizer files), a .ckpt written by "
                "mmseq fit or a folder written by mmseq export"
            )
        self.source = path
        self.model = apply_compute_type(self.model.to(device), compute_type).eval()
        if compile:
            self.model.decoder.compile_decoding()
        self.text_prefix = ""
        self._languages(source_lang, target_lang)
        if task is not None:
            self.use_task(task)

    # -- loading ---------------------------------------------------------------------------

    def _load_hf(self, folder: Path) -> None:
        from mmseq.text.hf import load_hf
        from mmseq.text.tokenizer import Seq2SeqTokenizer

        imported = load_hf(folder)
        self.imported = imported
        self.model: EncoderDecoder = imported.model
        self.family = imported.family.name
        self.tokenizer = Seq2SeqTokenizer.from_folder(folder)
        self.prefix = [imported.decoder_start_token_id]
        self.hf_generation: dict[str, Any] = dict(imported.generation)
        self.task_params: dict[str, Any] = imported.config.get("task_specific_params") or {}
        tok = self.tokenizer
        # (text, max_length) -> ids; truncation as the tokenizer's reference does it (special
        # tokens such as </s> and mBART's language code kept at the end)
        self._encode: Callable[[str, int | None], list[int]] = tok.encode
        self._decode: Callable[[list[int]], str] = tok.decode
        self.eos_id = _first(self.hf_generation.get("eos_token_id", tok.eos_id))
        self.pad_id = self.hf_generation.get("pad_token_id", tok.pad_id)
        self._token_id = _vocab_lookup(tok)

    def _use_trained(self, trained: TrainedModel) -> None:
        if trained.model.config.text is None:
            raise CheckpointError(
                f"{trained.source}: this model has no text encoder (it has {trained.modalities})"
            )
        self.imported = None
        self.model = trained.model
        self.family = "mmseq"
        tok = trained.tokenizer
        self.tokenizer = tok
        self.prefix = tok.prefix(trained.tasks.get("text"))
        # fine-tuned from a Hugging Face folder: decode with that folder's settings
        hf = trained.hf or {}
        self.hf_generation = dict(hf.get("generation", {}))
        self.task_params = hf.get("config", {}).get("task_specific_params") or {}
        self._encode = partial(_encode_with_eos, tok.for_source())
        self._decode = tok.decode
        self.eos_id, self.pad_id = tok.eos_id, tok.pad_id
        self._token_id = _vocab_lookup(tok)

    def _languages(self, source_lang: str | None, target_lang: str | None) -> None:
        """Marian: a >>xx<< target prefix; mBART: the target code forced as the first token
        (the source code comes from the tokenizer's src_lang); T5: the translation task of
        its task_specific_params. Anything else is refused rather than ignored."""
        self.forced_bos: int | None = None
        if source_lang is None and target_lang is None:
            return
        if self.family == "t5":
            if not (source_lang and target_lang):
                raise ValueError("T5 translates with both --source-lang and --target-lang")
            self.use_task(f"translation_{source_lang}_to_{target_lang}")
            return
        if source_lang is not None:
            raise ValueError(
                f"--source-lang: {self.source} ({self.family}) reads the source language from "
                "the text itself (Marian) or from its tokenizer's src_lang (mBART)"
            )
        if self.family == "marian":
            code = f">>{target_lang}<<"
            if self._token_id(code) is None:
                raise ValueError(
                    f"--target-lang {target_lang}: {self.source} has no {code} token "
                    "(only multilingual Marian models take a target language)"
                )
            self.text_prefix = code + " "
        elif self.family == "bart":  # mBART's language codes are tokens
            code = self._token_id(target_lang)
            if code is None:
                raise ValueError(f"--target-lang {target_lang}: not a token of {self.source}")
            self.forced_bos = code
        else:
            raise ValueError(
                f"--target-lang: {self.source} ({self.family}) takes no language options"
            )

    def use_task(self, task: str) -> None:
        """Apply T5-style `task_specific_params[task]`: its input prefix and its settings."""
        params = self.task_params.get(task)
        if params is None:
            raise ValueError(
                f"task {task!r}: {self.source} has task_specific_params for "
                f"{sorted(self.task_params) or 'no task'}"
            )
        self.text_prefix = params.get("prefix", "") or ""
        settings = {k: v for k, v in params.items() if k != "prefix"}
        self.hf_generation = {**self.hf_generation, **settings}

    # -- generation ------------------------------------------------------------------------

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        """The model's generation defaults (generation_config.json) with `overrides`."""
        base = dict(self.hf_generation)
        if "max_length" not in base and "max_new_tokens" not in base:
            base["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
        if self.forced_bos is not None:
            base["forced_bos_token_id"] = self.forced_bos
        base["eos_token_id"] = self.eos_id
        base["pad_token_id"] = self.pad_id
        config = GenerationConfig.from_hf(base, prefix_len=len(self.prefix))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if overrides:
            config = replace(config, **overrides)
        room = self.model.config.decoder.n_ctx - len(self.prefix) + 1
        if config.max_new_tokens > room:
            config = replace(config, max_new_tokens=room)
        return config

    def encode(self, text: str) -> tuple[list[int], bool]:
        """Source ids of `text` (with the model's prefix and special tokens), cut to the
        encoder's n_ctx with the closing special tokens kept; and whether it was cut."""
        text = self.text_prefix + text
        ids = self._encode(text, None)
        limit = self.model.config.text.n_ctx
        if len(ids) <= limit:
            return ids, False
        return self._encode(text, limit), True

    def generate(self, texts: Iterable[str], **options: Any) -> list[str]:
        """Texts -> generated texts, in order. options: see `results`."""
        return [r.text for r in self.results(texts, **options)]

    def results(
        self,
        texts: Iterable[str],
        batch_size: int = 32,
        **overrides: Any,
    ) -> list[Generated]:
        """Texts -> one Generated per text, in order. overrides: GenerationConfig fields
        (num_beams, max_new_tokens, length_penalty, ...); None keeps the model's default."""
        return list(self.iter_results(texts, batch_size, **overrides))

    def iter_results(
        self,
        texts: Iterable[str],
        batch_size: int = 32,
        window: int = WINDOW,
        **overrides: Any,
    ) -> Iterator[Generated]:
        """As `results`, yielded in input order as soon as each and all before it are known.

        `texts` is read lazily, `window` inputs at a time (a list, a file's lines, a
        generator): each window is sorted by length, decoded and yielded before the next is
        read, so memory stays bounded however many inputs come."""
        if isinstance(texts, str):
            texts = [texts]
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        config = self.generation_config(**overrides)
        inputs = iter(texts)
        cut = 0
        while chunk := list(islice(inputs, window)):
            encoded = [self.encode(t) if t.strip() else ([], False) for t in chunk]
            cut += sum(truncated for _, truncated in encoded)
            yield from self._window_results(encoded, batch_size, config)
        if cut:  # once per call, when the inputs are done
            warnings.warn(
                f"{cut} input(s) longer than the model's {self.model.config.text.n_ctx} "
                "source tokens were truncated",
                stacklevel=2,
            )

    def _window_results(
        self, encoded: list[tuple[list[int], bool]], batch_size: int, config: GenerationConfig
    ) -> Iterator[Generated]:
        """One window's (ids, truncated) inputs -> results in order, batched by length."""
        # longest first, so the first batch shows the memory peak at once
        order = sorted(
            (i for i, (ids, _) in enumerate(encoded) if ids), key=lambda i: -len(encoded[i][0])
        )
        done: dict[int, Generated] = {}
        following = 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            outputs = self._generate_ids([encoded[i][0] for i in batch], config)
            for i, result in zip(batch, outputs, strict=True):
                result.truncated = encoded[i][1]
                done[i] = result
            while following < len(encoded) and (following in done or not encoded[following][0]):
                yield done.pop(following, Generated("", [], 0.0))
                following += 1
        while following < len(encoded):
            yield done.pop(following, Generated("", [], 0.0))
            following += 1

    @torch.inference_mode()
    def _generate_ids(self, rows: list[list[int]], config: GenerationConfig) -> list[Generated]:
        device = next(self.model.parameters()).device
        lengths = torch.tensor([len(r) for r in rows])
        pad = self.pad_id if self.pad_id is not None else 0
        ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        encoded = self.model.encode("text", ids.to(device), lengths.to(device))
        prefix = torch.tensor([self.prefix] * len(rows), device=device)
        out = decode(self.model.decoder, encoded.states, encoded.mask, prefix, config)
        results = []
        n = len(self.prefix)
        for b in range(len(rows)):
            texts, best = [], None
            for j in range(out.sequences.shape[1]):
                length = int(out.lengths[b, j])
                tokens = out.sequences[b, j, n : n + length].tolist()
                if tokens and tokens[-1] == config.eos_token_id:
                    tokens = tokens[:-1]
                texts.append(self._decode(tokens))
                if best is None:
                    best = Generated(texts[0], tokens, float(out.scores[b, j]))
            best.alternatives = texts if len(texts) > 1 else None
            results.append(best)
        return results


def _encode_with_eos(tokenizer: Any, text: str, max_length: int | None) -> list[int]:
    """Source ids as `mmseq fit`'s collator makes them: the text's ids, then EOS."""
    ids = tokenizer.encode(text)
    if max_length is not None:
        ids = ids[: max_length - 1]
    return ids + [tokenizer.eos_id]


def _first(value: Any) -> Any:
    """transformers allows a list of EOS ids; mmseq stops on the first."""
    return value[0] if isinstance(value, list) and value else value


def _vocab_lookup(tokenizer: Any) -> Callable[[str], int | None]:
    """token text -> id (None if absent): Seq2SeqTokenizer's own, or that of the `tokenizers`
    object inside a training TextTokenizer."""
    if hasattr(tokenizer, "token_to_id"):
        return tokenizer.token_to_id
    return tokenizer._tokenizer.token_to_id

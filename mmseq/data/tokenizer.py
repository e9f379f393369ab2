"""Target-text tokenizers for training: a byte-level BPE or a SentencePiece-style unigram model
trained with `tokenizers`, or Whisper's.

Both sit behind one small interface (`TextTokenizer`) that the collator, the LightningModule
and the checkpoints use: ids of the special tokens, `encode`/`decode` of plain text, the forced
decoder `prefix` for a task, and a JSON form that a checkpoint embeds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from mmseq.serialization import write_text_atomic
from mmseq.whisper.embedded import embedded_model_dir
from mmseq.whisper.tokenizer import WhisperTokenizer

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
DEFAULT_TASKS = ("transcribe", "caption", "translate")


def task_token(task: str) -> str:
    return f"<|{task}|>"


class TextTokenizer:
    """Plain text <-> ids, plus the special ids a seq2seq decoder needs.

    `prefix(task)` is what decoding starts from: `[bos]`, or `[bos, <|task|>]` when the
    tokenizer knows the task (one decoder can then serve several tasks).
    """

    def __init__(self, tokenizer: Tokenizer, source: str = "<tokenizer>") -> None:
        specials = {t: tokenizer.token_to_id(t) for t in (PAD, BOS, EOS)}
        missing = [t for t, i in specials.items() if i is None]
        if missing:
            raise ValueError(f"{source}: tokenizer lacks the special tokens {missing}")
        self._setup(tokenizer, source, specials[BOS], specials[EOS], specials[PAD])
        added = tokenizer.get_added_tokens_decoder()
        self.tasks = {
            tok.content[2:-2]: i
            for i, tok in added.items()
            if tok.content.startswith("<|") and tok.content.endswith("|>")
        }

    def _setup(
        self, tokenizer: Tokenizer, source: str, bos_id: int, eos_id: int, pad_id: int
    ) -> None:
        """The state every tokenizer of this interface holds, but `tasks` (set by the caller)."""
        self._tokenizer = tokenizer
        # Text such as "</s>" inside a transcript stays text: users must not inject control ids.
        self._tokenizer.encode_special_tokens = True
        self.source = source
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        added = tokenizer.get_added_tokens_decoder()
        self._special_ids = {i for i, tok in added.items() if tok.special}

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def for_source(self) -> TextTokenizer:
        """The tokenizer of text sources (itself: one vocabulary for both sides)."""
        return self

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special ids (pad, bos, eos, tasks) are dropped."""
        return self._tokenizer.decode([i for i in ids if i not in self._special_ids]).strip()

    def prefix(self, task: str | None = None) -> list[int]:
        if task is None:
            return [self.bos_id]
        if task not in self.tasks:
            raise ValueError(f"{self.source}: no task token for {task!r}; has {sorted(self.tasks)}")
        return [self.bos_id, self.tasks[task]]

    def to_json(self) -> str:
        return self._tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str, source: str = "<embedded tokenizer>") -> TextTokenizer:
        return cls(Tokenizer.from_str(text), source)

    def save(self, path: str | os.PathLike) -> None:
        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer.json not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"{path}: not a valid tokenizer.json ({exc})") from exc
        if tokenizer.token_to_id(PAD) is None and tokenizer.token_to_id("<|endoftext|>"):
            return WhisperTextTokenizer(WhisperTokenizer(tokenizer, str(path)))  # type: ignore
        return cls(tokenizer, str(path))


class WhisperTextTokenizer(TextTokenizer):
    """Whisper's tokenizer behind the same interface: prefix `<|startoftranscript|>` (+ task for
    multilingual models) + `<|notimestamps|>`; eos and pad are `<|endoftext|>`."""

    def __init__(self, whisper: WhisperTokenizer) -> None:
        self.whisper = whisper
        self._tokenizer = whisper._tokenizer
        self.source = "whisper"
        self.pad_id = self.eos_id = whisper.eot
        self.bos_id = whisper.sot
        self.tasks = {"transcribe": whisper.transcribe, "translate": whisper.translate}

    @property
    def vocab_size(self) -> int:
        return self.whisper.vocab_size

    def decode(self, ids: Sequence[int]) -> str:
        return self.whisper.decode(list(ids)).strip()

    def prefix(self, task: str | None = None) -> list[int]:
        task = "transcribe" if task in (None, "caption") else task
        return self.whisper.sot_sequence(without_timestamps=True, task=task)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> WhisperTextTokenizer:
        return cls(WhisperTokenizer.from_file(path))


class PretrainedTextTokenizer(TextTokenizer):
    """A Hugging Face model folder's tokenizer (`tokenizer.json`, or GPT-2's `vocab.json` +
    `merges.txt`) with the special ids its model config names: for GPT-2 captioners,
    `<|endoftext|>` starts, ends and pads. It has no task tokens."""

    def __init__(
        self, tokenizer: Tokenizer, bos_id: int, eos_id: int, pad_id: int, source: str
    ) -> None:
        self._setup(tokenizer, source, bos_id, eos_id, pad_id)
        self._special_ids |= {bos_id, eos_id}  # the config's ids, whether marked special or not
        self.tasks = {}  # GPT-2's "<|endoftext|>" is not a task token

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, bos_id: int, eos_id: int, pad_id: int
    ) -> PretrainedTextTokenizer:
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            try:
                tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
                raise ValueError(
                    f"{folder / 'tokenizer.json'}: not a valid tokenizer ({exc})"
                ) from exc
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            # GPT-2's slow-tokenizer files: byte-level BPE without a prefix space
            try:
                bpe = models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
            except Exception as exc:
                raise ValueError(f"{folder}: unreadable vocab.json / merges.txt ({exc})") from exc
            tokenizer = Tokenizer(bpe)
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
        else:
            raise FileNotFoundError(
                f"{folder}: no tokenizer.json (or vocab.json and merges.txt) beside the model"
            )
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        for name, value in (("bos", bos_id), ("eos", eos_id), ("pad", pad_id)):
            if not 0 <= value < size:
                raise ValueError(f"{folder}: {name} id {value} is outside the {size}-token vocab")
        return cls(tokenizer, bos_id, eos_id, pad_id, str(folder))


def train_bpe(
    texts: Iterable[str], vocab_size: int, tasks: Sequence[str] = DEFAULT_TASKS
) -> TextTokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation) on `texts`.

    Ids: <pad>=0, <s>=1, </s>=2, then one `<|task|>` per task, then the merges. The result may
    hold fewer than `vocab_size` tokens when the texts are small.
    """
    if vocab_size < 256 + 3 + len(tasks):
        raise ValueError(
            f"vocab_size: {vocab_size} is too small for byte-level BPE "
            f"(needs at least {256 + 3 + len(tasks)}: 256 bytes + specials)"
        )
    specials = [PAD, BOS, EOS] + [task_token(t) for t in tasks]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("train_bpe: no text to train on")
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer, "<trained BPE>")


# SentencePiece's byte pieces: a character outside the vocabulary becomes its UTF-8 bytes
_BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]
# Far below any learned piece's log-probability: the model vocabulary holds the special and byte
# pieces (for their ids), but text must never be segmented into them ("</s>" in text stays text)
_UNREACHABLE = -1e6


def train_unigram(
    texts: Iterable[str], vocab_size: int, tasks: Sequence[str] = DEFAULT_TASKS
) -> TextTokenizer:
    """Train a SentencePiece-style unigram model on `texts`.

    As SentencePiece does: NFKC, runs of spaces collapsed to one, words marked by a leading "▁"
    (Metaspace, prepended to the text always), byte fallback (a character the vocabulary lacks
    is encoded as its UTF-8 bytes `<0x..>`, so any text round-trips but for NFKC and spaces).

    Ids: <pad>=0, <s>=1, </s>=2, <unk>=3 (which byte fallback makes unused), then one `<|task|>`
    per task, then the 256 byte pieces, then the learned pieces. The result may hold fewer than
    `vocab_size` tokens when the texts are small.
    """
    specials = [PAD, BOS, EOS, UNK] + [task_token(t) for t in tasks]
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("train_unigram: no text to train on")
    tokenizer = _unigram_pipeline(Tokenizer(models.Unigram()))
    # every character the special and byte pieces spell, so that their text is segmented into
    # ordinary characters rather than into the (unreachable) special and byte pieces
    alphabet = sorted(set("".join(specials + _BYTE_PIECES)))
    characters = {"▁", *alphabet}
    for text in texts:
        characters.update(tokenizer.normalizer.normalize_str(text).replace(" ", "▁"))
    # the trainer keeps every character, and below one piece more it ignores vocab_size
    needed = len(_BYTE_PIECES) + len(specials) + len(characters) + 1
    if vocab_size < needed:
        raise ValueError(
            f"vocab_size: {vocab_size} is too small for a unigram model of these texts (needs "
            f"at least {needed}: 256 byte pieces + {len(specials)} specials + "
            f"{len(characters)} distinct characters + 1)"
        )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - len(_BYTE_PIECES),
        special_tokens=specials,
        unk_token=UNK,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # the trainer lays out specials + learned pieces and cannot add byte pieces: rebuild the
    # model with the byte pieces after the specials, and specials and bytes unreachable
    learned = json.loads(tokenizer.to_str())["model"]["vocab"][len(specials) :]
    vocab = [(t, _UNREACHABLE) for t in specials + _BYTE_PIECES] + [(p, s) for p, s in learned]
    model = models.Unigram(vocab, unk_id=specials.index(UNK), byte_fallback=True)
    tokenizer = _unigram_pipeline(Tokenizer(model))
    tokenizer.add_special_tokens(specials)
    return TextTokenizer(tokenizer, "<trained unigram>")


def _unigram_pipeline(tokenizer: Tokenizer) -> Tokenizer:
    """SentencePiece's text handling around a unigram model (see `train_unigram`)."""
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    return tokenizer


TOKENIZER_KINDS = {"bpe": train_bpe, "unigram": train_unigram}


def load_tokenizer(spec: str | os.PathLike) -> TextTokenizer:
    """A `tokenizer.json` path (BPE, unigram or Whisper's), `whisper` for tiny.en's tokenizer,
    or a Hugging Face T5 / BART / Marian / Pegasus folder (`HFTextTokenizer`)."""
    if str(spec) in ("whisper", "whisper:tiny.en"):
        return WhisperTextTokenizer.from_file(embedded_model_dir("tiny.en") / "tokenizer.json")
    if Path(spec).is_dir():
        from mmseq.data.hf_tokenizer import HFTextTokenizer

        return HFTextTokenizer.from_folder(spec)
    return TextTokenizer.from_file(spec)


def read_texts(
    manifests: Iterable[str | os.PathLike], field: str | Sequence[str] = "text"
) -> list[str]:
    """The text of every JSON line in `manifests`: its `field`, or each of several fields (say
    `("source", "target")`, for a vocabulary shared by both sides of text pairs), in order.

    Each line gives the named fields it has (so one call reads speech manifests' `text` and
    text pairs' `source` and `target` for a multi-task vocabulary), or, with none of them, its
    `caption` or `captions`; a line with neither is an error. A field holds a string or a list
    of strings.
    """
    fields = [field] if isinstance(field, str) else list(field)
    texts: list[str] = []
    for manifest in manifests:
        with open(manifest, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{manifest}, line {n}: not JSON ({exc.msg})") from exc
                for value in _row_texts(row, fields, f"{manifest}, line {n}"):
                    texts.extend([value] if isinstance(value, str) else value)
    return texts


def _row_texts(row: dict, fields: list[str], where: str) -> list:
    present = [f for f in fields if row.get(f) is not None]
    if present:
        return [row[f] for f in present]
    caption = row.get("caption", row.get("captions"))
    if caption is None:
        names = " / ".join(repr(f) for f in fields)
        raise ValueError(f"{where}: no {names} or 'caption' field")
    return [caption]

"""Tokenizers of Hugging Face text seq2seq model folders, read without transformers.

Two layouts are read:

- **tokenizer.json** (T5, flan-t5, mT5, BART, mBART, Pegasus, and any other folder whose
  tokenizer transformers loads from that file): the `tokenizers` library runs it.
- **Marian** (opus-mt): `source.spm` / `target.spm` (SentencePiece) + `vocab.json` (+
  `target_vocab.json` when `separate_vocabs`), no tokenizer.json. Source ids are
  `vocab.json[piece]` for each piece of the source model (pieces missing from vocab.json give
  `<unk>`), then `</s>`. A `>>fr<<`-style code at the start of the text stays one token.

The ids and texts are those of transformers 5 (checked against 5.24): `encode(text)` ==
`tokenizer(text).input_ids`, `decode(ids)` == `tokenizer.decode(ids, skip_special_tokens=True)`.
Where transformers 5 does not use tokenizer.json as written, neither does this module: its
tokenizer classes rebuild the pipeline around the file's vocabulary, and so does
`_apply_family_pipeline` for the classes named in tokenizer_config.json:

- `T5Tokenizer`: normalizer = only the file's SentencePiece `Precompiled` map (a following
  `Replace` is dropped), pre-tokenizer = whitespace split + Metaspace, `$A </s>`.
- `PegasusTokenizer`: `Precompiled` + collapse runs of spaces (without a map: newline -> space
  and collapse), Metaspace, `$A </s>`.
- `MBartTokenizer`: **no normalizer** (the file's NFKC map is dropped), whitespace split +
  Metaspace, `$A </s> src_lang` (targets: `$A </s> tgt_lang`).
- `BartTokenizer` (= `RobertaTokenizer`): byte-level with the config's `add_prefix_space`,
  `<s> $A </s>`.

Other classes use tokenizer.json as written, as transformers' generic backend does (with a
warning for a named class other than PreTrainedTokenizerFast: transformers 5 may rebuild it).

Special-token text inside the input ("</s>", "<pad>", "<extra_id_0>", "<mask>", "en_XX" for
mBART...) is matched as that special token, as transformers does by default
(`split_special_tokens=False`; a config with `split_special_tokens: true` is honoured).
For Marian the input is split at its special tokens (`</s>`, `<unk>`, `<pad>`) first, and a
language code is recognised at the start of each part.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)

from mmseq.errors import CheckpointError
from mmseq.serialization import atomic_path

__all__ = ["Seq2SeqTokenizer", "TokenizerFolderError"]

TOKENIZER_JSON = "tokenizer.json"
MARIAN_FILES = ("source.spm", "target.spm", "vocab.json")
# Everything `save` copies when present: what AutoTokenizer reads for these families.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "source.spm",
    "target.spm",
    "vocab.json",
    "target_vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
# transformers' AutoTokenizer class per config.json model_type, when tokenizer_config.json
# does not name one.
_CLASS_BY_MODEL_TYPE = {
    "t5": "T5Tokenizer",
    "mt5": "T5Tokenizer",
    "bart": "RobertaTokenizer",
    "mbart": "MBartTokenizer",
    "pegasus": "PegasusTokenizer",
    "marian": "MarianTokenizer",
}
_CLASS_ALIASES = {"BartTokenizer": "RobertaTokenizer", "MT5Tokenizer": "T5Tokenizer"}
# Default special tokens of the transformers 5 classes (bos, eos, unk, pad).
_DEFAULT_SPECIALS: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    "T5Tokenizer": (None, "</s>", "<unk>", "<pad>"),
    "PegasusTokenizer": (None, "</s>", "<unk>", "<pad>"),
    "MBartTokenizer": ("<s>", "</s>", "<unk>", "<pad>"),
    "RobertaTokenizer": ("<s>", "</s>", "<unk>", "<pad>"),
    "MarianTokenizer": (None, "</s>", "<unk>", "<pad>"),
}
# Classes whose pipeline transformers 5 rebuilds around the file's vocabulary (mirrored by
# `_apply_family_pipeline`), and those for which it runs tokenizer.json as written.
_REBUILT_CLASSES = ("T5Tokenizer", "PegasusTokenizer", "MBartTokenizer", "RobertaTokenizer")
_FILE_AS_WRITTEN_CLASSES = ("", "PreTrainedTokenizer", "TokenizersBackend")
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_OTHER_SPECIAL_KEYS = ("sep_token", "cls_token", "mask_token")
_SPIECE_UNDERLINE = "\u2581"
_FORCE_BPE_CLEAN_UP = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"


class TokenizerFolderError(CheckpointError):
    """A model folder has no tokenizer files mmseq can read, or they are malformed.

    The message names the folder and the files that were expected.
    """


class Seq2SeqTokenizer:
    """The tokenizer of a Hugging Face text seq2seq model folder (see the module docstring).

    Ids are plain Python ints; a sequence of ids is a `list[int]` of any length (no padding:
    batch padding belongs to the collator, with `pad_id`). `family` is the transformers
    tokenizer class the folder is read as ("T5Tokenizer", "MarianTokenizer", ...).
    """

    def __init__(self, backend: _FastBackend | _MarianBackend, folder: Path, family: str) -> None:
        """Use `from_folder`."""
        self._backend = backend
        self._folder = folder
        self.family = family

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_folder(cls, path: str | Path) -> Seq2SeqTokenizer:
        """Reads the tokenizer files of a model folder: tokenizer.json (+ tokenizer_config.json,
        special_tokens_map.json), or Marian's source.spm, target.spm and vocab.json.

        Raises TokenizerFolderError (a CheckpointError, so a ValueError) naming the folder and
        the expected files when neither layout is there.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise TokenizerFolderError(f"{folder} is not a folder; expected a model folder")
        config = _read_json_object(folder / "tokenizer_config.json", default={})
        family = _family(folder, config)
        has_json = (folder / TOKENIZER_JSON).is_file()
        has_marian = all((folder / name).is_file() for name in MARIAN_FILES)
        if has_marian and (family == "MarianTokenizer" or not has_json):
            return cls(_MarianBackend.load(folder, config), folder, "MarianTokenizer")
        if has_json:
            return cls(_FastBackend.load(folder, config, family), folder, family)
        present = sorted(p.name for p in folder.iterdir())
        hint = ""
        if any(name in present for name in ("spiece.model", "sentencepiece.bpe.model")):
            hint = (
                " (a SentencePiece model alone is not read: load and save it once with "
                "transformers to write tokenizer.json)"
            )
        raise TokenizerFolderError(
            f"{folder} holds no tokenizer mmseq can read: expected {TOKENIZER_JSON} (T5, BART, "
            f"mBART, Pegasus) or {', '.join(MARIAN_FILES)} (MarianMT){hint}; found "
            f"{', '.join(present) or 'nothing'}"
        )

    # ---------------------------------------------------------------------------- encoding
    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Source ids of `text` with the special tokens the model expects (T5, Pegasus,
        Marian: `... </s>`; BART: `<s> ... </s>`; mBART: `... </s> src_lang`), as
        transformers' `tokenizer(text).input_ids`.

        `max_length` truncates as `tokenizer(text, truncation=True, max_length=max_length)`:
        text tokens are cut (on the config's `truncation_side`, right by default) so that the
        result, special tokens included, has at most `max_length` ids; the final `</s>` stays.
        It must leave room for the special tokens.
        """
        return self._backend.encode_batch([text], max_length, target=False)[0]

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """`[encode(t, max_length) for t in texts]`, unpadded (faster for many texts)."""
        return self._backend.encode_batch(list(texts), max_length, target=False)

    def encode_target(self, text: str, max_length: int | None = None) -> list[int]:
        """Label ids of `text`, as transformers' `tokenizer(text_target=text).input_ids`.

        The same as `encode` except for Marian (target.spm, and target_vocab.json when the
        vocabularies are separate) and mBART (`... </s> tgt_lang`).
        """
        return self._backend.encode_batch([text], max_length, target=True)[0]

    # ---------------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The text of `ids`, as transformers' `tokenizer.decode(ids, skip_special_tokens=...)`
        (with the config's `clean_up_tokenization_spaces`, false unless the folder says so).

        Ids the tokenizer lacks (T5's embedding has 28 rows more than its 32100 ids) are
        dropped, as transformers drops them; Marian raises ValueError for ids beyond vocab.json
        and its SentencePiece models (transformers raises IndexError).
        """
        return self._backend.decode([int(i) for i in ids], skip_special_tokens)

    def decode_batch(
        self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = True
    ) -> list[str]:
        """`[decode(ids, skip_special_tokens) for ids in sequences]`."""
        return [self.decode(ids, skip_special_tokens) for ids in sequences]

    def token_to_id(self, token: str) -> int | None:
        """The id of one token of the (source) vocabulary, e.g. mBART's "fr_XX" or Marian's
        ">>fr<<"; None when the vocabulary lacks it."""
        return self._backend.token_to_id(token)

    # ----------------------------------------------------------------------------- special
    @property
    def pad_id(self) -> int | None:
        """Id of the padding token (T5, Pegasus: 0; BART, mBART: 1; Marian: the last id)."""
        return self._backend.special_ids["pad_token"]

    @property
    def eos_id(self) -> int | None:
        """Id of `</s>`, which ends every encoded source and label sequence."""
        return self._backend.special_ids["eos_token"]

    @property
    def bos_id(self) -> int | None:
        """Id of `<s>` (BART, mBART); None for tokenizers without one (T5, Pegasus, Marian)."""
        return self._backend.special_ids["bos_token"]

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown token."""
        return self._backend.special_ids["unk_token"]

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer knows, added tokens included: every id it produces is
        below it. Equals `len(tokenizer)` in transformers (for these families also its
        `vocab_size`). A model's embedding may have more rows (T5: 32128 for 32100 ids)."""
        return self._backend.vocab_size

    # ------------------------------------------------------------------------------ saving
    def save(self, folder: str | Path) -> Path:
        """Copies the tokenizer files this tokenizer was read from into `folder` (created if
        needed), so that transformers' `AutoTokenizer.from_pretrained(folder)` loads the same
        tokenizer. Returns `folder`."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            src = self._folder / name
            if src.is_file() and not ((out / name).exists() and (out / name).samefile(src)):
                with atomic_path(out / name) as tmp:  # never half a tokenizer file
                    shutil.copyfile(src, tmp)
        return out

    def __repr__(self) -> str:
        return f"Seq2SeqTokenizer({self.family}, vocab_size={self.vocab_size}, {self._folder})"


# --------------------------------------------------------------------------------- helpers
def _read_json_object(path: Path, default: dict[str, Any] | None = None) -> dict[str, Any]:
    if not path.is_file():
        if default is None:
            raise TokenizerFolderError(f"{path} is missing")
        return default
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerFolderError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenizerFolderError(f"{path} should hold a JSON object, not {type(data).__name__}")
    return data


def _family(folder: Path, config: dict[str, Any]) -> str:
    """transformers' tokenizer class for the folder: tokenizer_config.json's tokenizer_class,
    else the one AutoTokenizer picks from config.json's model_type; "" when unknown."""
    name = config.get("tokenizer_class")
    if not isinstance(name, str) or not name:
        model_type = _read_json_object(folder / "config.json", default={}).get("model_type")
        name = _CLASS_BY_MODEL_TYPE.get(str(model_type), "")
    name = name.removesuffix("Fast")
    return _CLASS_ALIASES.get(name, name)


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _special_tokens(
    folder: Path, config: dict[str, Any], family: str
) -> tuple[dict[str, str | None], list[str]]:
    """The named special tokens (bos/eos/unk/pad, and sep/cls/mask where given) and the list
    of extra special tokens, from tokenizer_config.json, else special_tokens_map.json, else
    the defaults of transformers' class."""
    token_map = _read_json_object(folder / "special_tokens_map.json", default={})
    defaults = dict(zip(_SPECIAL_KEYS, _DEFAULT_SPECIALS.get(family, (None,) * 4), strict=True))
    named: dict[str, str | None] = {}
    for key in _SPECIAL_KEYS + _OTHER_SPECIAL_KEYS:
        if key in config:
            named[key] = _token_text(config[key])
        elif key in token_map:
            named[key] = _token_text(token_map[key])
        else:
            named[key] = defaults.get(key)
    extra: list[str] = []
    for source in (config, token_map):
        for key in ("extra_special_tokens", "additional_special_tokens"):
            values = source.get(key)
            if isinstance(values, dict):  # model-specific named tokens
                values = list(values.values())
            for value in values if isinstance(values, list) else []:
                token = _token_text(value)
                if token is not None and token not in extra:
                    extra.append(token)
    return named, extra


def _check_max_length(max_length: int | None, n_special: int) -> None:
    if max_length is not None and max_length < max(n_special, 1):
        raise ValueError(
            f"max_length={max_length} leaves no room for the {n_special} special token(s) this "
            "tokenizer adds"
        )


def _clean_up_tokenization(text: str) -> str:
    """transformers' `clean_up_tokenization` (spaces before punctuation and contractions)."""
    for before, after in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
        (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):  # fmt: skip
        text = text.replace(before, after)
    return text


# ---------------------------------------------------------------------- tokenizer.json layout
class _FastBackend:
    """tokenizer.json through the `tokenizers` library."""

    def __init__(
        self,
        source: Tokenizer,
        target: Tokenizer,
        special_ids: dict[str, int | None],
        clean_up: bool,
        truncation_side: str,
    ) -> None:
        self.source, self.target = source, target
        self.special_ids = special_ids
        self.clean_up = clean_up
        self.truncation_side = truncation_side
        self.vocab_size = source.get_vocab_size(with_added_tokens=True)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any], family: str) -> _FastBackend:
        path = folder / TOKENIZER_JSON
        spec = _read_json_object(path)
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise TokenizerFolderError(f"{path} is not a tokenizers file: {exc}") from exc
        tok.no_truncation()  # transformers ignores truncation and padding baked into the file
        tok.no_padding()
        named, extra = _special_tokens(folder, config, family)
        # Special tokens the config names but the file lacks are added, as transformers does.
        missing = [
            t for t in [*named.values(), *extra] if t is not None and tok.token_to_id(t) is None
        ]
        if missing:
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        special_ids = {key: None if t is None else tok.token_to_id(t) for key, t in named.items()}
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
        if family not in _REBUILT_CLASSES and family not in _FILE_AS_WRITTEN_CLASSES:
            warnings.warn(
                f"{folder}: tokenizer class {family!r} is read from {TOKENIZER_JSON} as written; "
                "transformers 5 may rebuild its pipeline, so ids are not verified to match",
                stacklevel=3,
            )
        target = _apply_family_pipeline(tok, spec, config, family, named)
        # transformers ignores clean_up_tokenization_spaces for BPE models unless forced
        clean_up = bool(config.get("clean_up_tokenization_spaces", False)) and (
            spec.get("model", {}).get("type") != "BPE"
            or bool(config.get(_FORCE_BPE_CLEAN_UP, False))
        )
        return cls(
            tok,
            target,
            special_ids,
            clean_up=clean_up,
            truncation_side=str(config.get("truncation_side", "right")),
        )

    def encode_batch(
        self, texts: list[str], max_length: int | None, target: bool
    ) -> list[list[int]]:
        tok = self.target if target else self.source
        n_special = tok.num_special_tokens_to_add(is_pair=False)
        _check_max_length(max_length, n_special)
        out = []
        for enc in tok.encode_batch(texts, add_special_tokens=False):
            if max_length is not None:
                enc.truncate(max_length - n_special, direction=self.truncation_side)
            out.append(tok.post_process(enc).ids)
        return out

    def token_to_id(self, token: str) -> int | None:
        return self.source.token_to_id(token)

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        text = self.source.decode(ids, skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self.clean_up else text


def _precompiled_charsmap(spec: dict[str, Any]) -> bytes | None:
    """The SentencePiece character map of tokenizer.json's normalizer, as transformers 5
    extracts it (the normalizer itself, or a member of a top-level Sequence)."""
    normalizer = spec.get("normalizer") or {}
    members = (
        normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    )
    for member in members:
        if member.get("type") == "Precompiled" and member.get("precompiled_charsmap"):
            return base64.b64decode(member["precompiled_charsmap"])
    return None


def _template(
    tok: Tokenizer, single: list[str], ids: dict[str, int | None] | None = None
) -> processors.TemplateProcessing:
    """`single` ("$A" and special tokens) as a post-processor; the tokens' ids are `ids`, else
    looked up in `tok`."""
    tokens = {t: (ids or {}).get(t, tok.token_to_id(t)) for t in single if t != "$A"}
    missing = [t for t, i in tokens.items() if i is None]
    if missing:
        raise TokenizerFolderError(f"special token(s) {missing} are not in tokenizer.json")
    return processors.TemplateProcessing(
        single=single, pair=single + ["$B"], special_tokens=list(tokens.items())
    )


def _apply_family_pipeline(
    tok: Tokenizer,
    spec: dict[str, Any],
    config: dict[str, Any],
    family: str,
    named: dict[str, str | None],
) -> Tokenizer:
    """Sets on `tok` the normalizer, pre-tokenizer, decoder and post-processor that
    transformers 5's class `family` builds around the file's vocabulary (see the module
    docstring), and returns the tokenizer for targets (`tok` itself except for mBART)."""
    eos = named["eos_token"] or "</s>"
    metaspace = pre_tokenizers.Metaspace(replacement=_SPIECE_UNDERLINE, prepend_scheme="always")
    meta_decoder = decoders.Metaspace(replacement=_SPIECE_UNDERLINE, prepend_scheme="always")
    charsmap = _precompiled_charsmap(spec)
    if family == "T5Tokenizer":
        tok.normalizer = normalizers.Precompiled(charsmap) if charsmap else None
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
        tok.decoder = meta_decoder
        # transformers writes "</s>" with the id of the configured eos token
        tok.post_processor = _template(tok, ["$A", "</s>"], {"</s>": tok.token_to_id(eos)})
    elif family == "PegasusTokenizer":
        collapse = normalizers.Replace(Regex(r" {2,}"), " ")
        first = (
            normalizers.Precompiled(charsmap)
            if charsmap
            else normalizers.Replace(Regex(r"\n"), " ")
        )
        tok.normalizer = normalizers.Sequence([first, collapse])
        tok.pre_tokenizer = metaspace
        tok.decoder = meta_decoder
        tok.post_processor = _template(tok, ["$A", eos])
    elif family == "MBartTokenizer":
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
        tok.decoder = meta_decoder
        src_lang = config.get("src_lang") or "en_XX"
        tgt_lang = config.get("tgt_lang") or src_lang
        tok.post_processor = _template(tok, ["$A", eos, src_lang])
        target = Tokenizer.from_str(tok.to_str())
        target.post_processor = _template(target, ["$A", eos, tgt_lang])
        target.encode_special_tokens = tok.encode_special_tokens
        return target
    elif family == "RobertaTokenizer":
        add_prefix_space = bool(config.get("add_prefix_space", False))
        sep, cls = named["sep_token"] or "</s>", named["cls_token"] or "<s>"
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.RobertaProcessing(
            (sep, tok.token_to_id(sep)),
            (cls, tok.token_to_id(cls)),
            trim_offsets=bool(config.get("trim_offsets", True)),
            add_prefix_space=add_prefix_space,
        )
    return tok


# ------------------------------------------------------------------------------ Marian layout
class _MarianBackend:
    """transformers' MarianTokenizer: SentencePiece pieces looked up in vocab.json."""

    def __init__(
        self,
        source_spm: Any,
        target_spm: Any,
        encoder: dict[str, int],
        target_encoder: dict[str, int],
        decoder: dict[int, str],
        added: dict[str, dict[str, Any]],
        special_ids: dict[str, int | None],
        special_tokens: set[str],
        decode_spm: Any,
        clean_up: bool,
        truncation_side: str,
    ) -> None:
        self.spm = {False: source_spm, True: target_spm}
        self.encoder = {False: encoder, True: target_encoder}
        self.decoder = decoder
        self.added = added  # content -> {"id", "lstrip", "rstrip"}
        self.added_by_id = {spec["id"]: content for content, spec in added.items()}
        self.special_ids = special_ids
        self.special_tokens = special_tokens
        self.skip_ids = {added[t]["id"] for t in special_tokens if t in added}
        self.decode_spm = decode_spm
        self.clean_up = clean_up
        self.truncation_side = truncation_side
        self.vocab_size = len(encoder.keys() | added.keys())  # transformers' len(tokenizer)
        # Leftmost-longest match of the added tokens, as transformers' Trie.split.
        contents = sorted(added, key=len, reverse=True)
        self.split_re = re.compile("|".join(map(re.escape, contents))) if contents else None

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> _MarianBackend:
        import sentencepiece

        def load_spm(name: str) -> Any:
            try:
                return sentencepiece.SentencePieceProcessor(model_file=str(folder / name))
            except (OSError, RuntimeError) as exc:
                raise TokenizerFolderError(f"{folder / name} is not a SentencePiece model") from exc

        def load_vocab(name: str) -> dict[str, int]:
            vocab = _read_json_object(folder / name)
            if not all(isinstance(v, int) for v in vocab.values()):
                raise TokenizerFolderError(f"{folder / name} should map pieces to integer ids")
            return vocab

        source_spm, target_spm = load_spm("source.spm"), load_spm("target.spm")
        encoder = load_vocab("vocab.json")
        separate = bool(config.get("separate_vocabs", False))
        target_encoder = load_vocab("target_vocab.json") if separate else encoder
        named, extra = _special_tokens(folder, config, "MarianTokenizer")
        unk = named["unk_token"] or "<unk>"
        if unk not in encoder:
            raise TokenizerFolderError(f"{folder / 'vocab.json'} has no {unk!r} entry")
        # Added tokens: the config's added_tokens_decoder, then the special tokens (an id from
        # vocab.json, or a new id after it), as transformers' slow tokenizer registers them.
        added: dict[str, dict[str, Any]] = {}
        for index, value in (config.get("added_tokens_decoder") or {}).items():
            content = _token_text(value)
            if content is not None:
                flags = value if isinstance(value, dict) else {}
                added[content] = {
                    "id": int(index),
                    "lstrip": bool(flags.get("lstrip", False)),
                    "rstrip": bool(flags.get("rstrip", False)),
                }
        special_tokens = {t for t in [*named.values(), *extra] if t is not None}
        next_id = len(encoder)
        for token in [t for t in [*named.values(), *extra] if t is not None]:
            if token not in added:
                index = encoder.get(token)
                if index is None:
                    index, next_id = next_id, next_id + 1
                added[token] = {"id": index, "lstrip": False, "rstrip": False}
        special_ids = {key: None if t is None else added[t]["id"] for key, t in named.items()}
        return cls(
            source_spm,
            target_spm,
            encoder,
            target_encoder,
            decoder={v: k for k, v in target_encoder.items()},
            added=added,
            special_ids=special_ids,
            special_tokens=special_tokens,
            # transformers decodes with the source model unless the vocabularies are separate
            decode_spm=target_spm if separate else source_spm,
            clean_up=bool(config.get("clean_up_tokenization_spaces", False)),
            truncation_side=str(config.get("truncation_side", "right")),
        )

    def _split(self, text: str) -> list[str]:
        """`text` cut at the added tokens, each kept as its own part; the lstrip/rstrip flags
        strip the neighbouring parts."""
        if self.split_re is None:
            return [text]
        parts: list[str] = []
        pos = 0
        for match in self.split_re.finditer(text):
            parts += [text[pos : match.start()], match.group()]
            pos = match.end()
        parts.append(text[pos:])
        for i in range(1, len(parts), 2):  # odd positions hold the added tokens
            spec = self.added[parts[i]]
            if spec["rstrip"]:
                parts[i + 1] = parts[i + 1].lstrip()
            if spec["lstrip"]:
                parts[i - 1] = parts[i - 1].rstrip()
        return parts

    def _tokens(self, text: str, target: bool) -> list[str]:
        tokens: list[str] = []
        for i, part in enumerate(self._split(text)):
            if not part:
                continue
            if i % 2:
                tokens.append(part)
                continue
            # transformers' remove_language_code: ">>xx<<" at the start is one token
            if part.startswith(">>") and (end := part.find("<<")) != -1:
                tokens.append(part[: end + 2])
                part = part[end + 2 :]
            tokens += self.spm[target].encode(part, out_type=str)
        return tokens

    def encode_batch(
        self, texts: list[str], max_length: int | None, target: bool
    ) -> list[list[int]]:
        _check_max_length(max_length, 1)
        encoder, unk = self.encoder[target], self.special_ids["unk_token"]
        eos = self.special_ids["eos_token"]
        out = []
        for text in texts:
            ids = [
                self.added[t]["id"] if t in self.added else encoder.get(t, unk)
                for t in self._tokens(text, target)
            ]
            if max_length is not None and len(ids) + 1 > max_length:
                cut = len(ids) + 1 - max_length
                ids = ids[cut:] if self.truncation_side == "left" else ids[: len(ids) - cut]
            out.append([*ids, eos])
        return out

    def token_to_id(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token]["id"]
        return self.encoder[False].get(token)

    def _id_to_token(self, index: int) -> str:
        if index in self.added_by_id:
            return self.added_by_id[index]
        if index in self.decoder:
            return self.decoder[index]
        if 0 <= index < self.decode_spm.get_piece_size():  # transformers' fallback
            return (
                self.decode_spm.id_to_piece(index)
                or self.added_by_id[self.special_ids["unk_token"]]
            )
        raise ValueError(f"id {index} is outside the vocabulary (0..{self.vocab_size - 1})")

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        tokens = [
            self._id_to_token(i) for i in ids if not (skip_special_tokens and i in self.skip_ids)
        ]
        # transformers' MarianTokenizer.convert_tokens_to_string
        pieces: list[str] = []
        text = ""
        for token in tokens:
            if token in self.special_tokens:
                text += self.decode_spm.decode_pieces(pieces) + token + " "
                pieces = []
            else:
                pieces.append(token)
        text += self.decode_spm.decode_pieces(pieces)
        text = text.replace(_SPIECE_UNDERLINE, " ").strip()
        return _clean_up_tokenization(text) if self.clean_up else text

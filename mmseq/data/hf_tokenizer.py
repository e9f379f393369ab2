"""A Hugging Face model folder's tokenizer behind the training interface (`TextTokenizer`), so
that `mmseq fit` fine-tunes an imported T5 / BART / MarianMT / Pegasus model on the sequences
transformers would build for it:

    source          tokenizer(text).input_ids              T5: `x </s>`, BART: `<s> x </s>`
    labels          tokenizer(text_target=text).input_ids  (Marian: the target vocabulary)
    decoder inputs  the labels shifted right behind decoder_start_token_id

The collator builds a target as `prefix + encode(text) + [eos]` and a source as
`encode(source) + [eos]`, so `prefix()` is `[decoder_start_token_id]` and `encode` returns the
reference's ids without their final `</s>`. mBART is refused: its sequences end with a language
code after `</s>`, which that layout cannot express.

Checkpoints must be self-contained, so `to_json` carries the tokenizer files themselves;
`from_json` writes them once into a folder named by their hash under the cache
(``$MMSEQ_CACHE``, default ``~/.cache/mmseq``) and reads them from there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mmseq.data.tokenizer import TextTokenizer
from mmseq.serialization import read_json, sync_folder, write_bytes_atomic
from mmseq.text.hf import decoder_start_token_id, generation_defaults
from mmseq.text.tokenizer import TOKENIZER_FILES, Seq2SeqTokenizer

KIND = "huggingface"


class HFTextTokenizer(TextTokenizer):
    """See the module docstring. `target` picks the side `encode` encodes (labels, or sources:
    `for_source()`); `folder` is where the tokenizer files are read from."""

    def __init__(
        self, tokenizer: Seq2SeqTokenizer, decoder_start_id: int, folder: Path, target: bool = True
    ) -> None:
        if "MBart" in tokenizer.family:
            raise ValueError(
                f"{folder}: fine-tuning mBART is not supported (its sequences end with a "
                "language code after </s>); T5, BART, MarianMT and Pegasus are"
            )
        if tokenizer.eos_id is None or tokenizer.pad_id is None:
            raise ValueError(f"{folder}: the tokenizer needs an eos and a pad token to train")
        self.hf = tokenizer
        self.folder = folder
        self.target = target
        self.source = str(folder)
        self.bos_id, self.eos_id, self.pad_id = decoder_start_id, tokenizer.eos_id, tokenizer.pad_id
        self.tasks: dict[str, int] = {}  # no task tokens: T5 takes its task as source text

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> HFTextTokenizer:
        """The tokenizer of a model folder, with the decoder start id of its config.json."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}: no config.json; a Hugging Face model folder is needed (its config "
                "names the decoder start token)"
            )
        config = read_json(folder / "config.json")
        start = decoder_start_token_id(generation_defaults(folder, config), config, folder)
        return cls(Seq2SeqTokenizer.from_folder(folder), start, folder)

    def for_source(self) -> HFTextTokenizer:
        return HFTextTokenizer(self.hf, self.bos_id, self.folder, target=False)

    @property
    def vocab_size(self) -> int:
        return self.hf.vocab_size

    def encode(self, text: str) -> list[int]:
        ids = self.hf.encode_target(text) if self.target else self.hf.encode(text)
        return ids[:-1] if ids and ids[-1] == self.eos_id else ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids))

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def prefix(self, task: str | None = None) -> list[int]:
        if task is not None:
            raise ValueError(
                f"{self.source}: a Hugging Face tokenizer has no task tokens, so task "
                f"{task!r} cannot be marked; set `task: null`"
            )
        return [self.bos_id]

    def to_json(self) -> str:
        files = {
            name: base64.b64encode((self.folder / name).read_bytes()).decode("ascii")
            for name in TOKENIZER_FILES
            if (self.folder / name).is_file()
        }
        return json.dumps(
            {"kind": KIND, "decoder_start_token_id": self.bos_id, "files": files}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str, source: str = "<embedded tokenizer>") -> HFTextTokenizer:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f"{source}: not an embedded Hugging Face tokenizer")
        folder = _cache_dir() / "tokenizers" / hashlib.sha256(text.encode()).hexdigest()[:24]
        if not folder.is_dir():
            staging = folder.with_name(folder.name + f".{os.getpid()}.tmp")
            staging.mkdir(parents=True, exist_ok=True)
            for name, content in data["files"].items():
                if name not in TOKENIZER_FILES:  # never write outside the folder
                    raise ValueError(f"{source}: unexpected tokenizer file name {name!r}")
                write_bytes_atomic(staging / name, base64.b64decode(content))
            try:
                staging.rename(folder)
                sync_folder(folder.parent)
            except OSError:  # another process wrote the same files first
                if not folder.is_dir():
                    raise
        start = int(data["decoder_start_token_id"])
        return cls(Seq2SeqTokenizer.from_folder(folder), start, folder)

    def save(self, path: str | os.PathLike) -> None:
        """The tokenizer files into the folder `path`, as transformers reads them."""
        self.hf.save(path)


def is_hf_text_folder(spec: str | os.PathLike) -> bool:
    """A folder whose config.json names a text model_type mmseq imports (t5, bart, ...)."""
    from mmseq.text.hf import families

    config = Path(spec) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") in families()


def _cache_dir() -> Path:
    return Path(os.environ.get("MMSEQ_CACHE") or Path.home() / ".cache" / "mmseq")

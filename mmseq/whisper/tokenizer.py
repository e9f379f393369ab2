"""Whisper's byte-level BPE tokenizer, read from a Hugging Face `tokenizer.json`.

Special ids come from the file's added tokens, so the same class serves English-only
(tiny.en: eot 50256) and multilingual models (eot 50257). Timestamp ids
(`timestamp_begin` .. `timestamp_begin + 1500`, one per 0.02 s up to 30 s) are not in
`tokenizer.json`; they are computed here.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Tokenizer

N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
TIME_PRECISION = 0.02  # seconds per timestamp id

_REQUIRED = {
    "eot": "<|endoftext|>",
    "sot": "<|startoftranscript|>",
    "sot_prev": "<|startofprev|>",
    "sot_lm": "<|startoflm|>",
    "no_timestamps": "<|notimestamps|>",
    "transcribe": "<|transcribe|>",
    "translate": "<|translate|>",
}
# English-only checkpoints call it <|nocaptions|>, newer multilingual ones <|nospeech|>.
_NO_SPEECH = ("<|nospeech|>", "<|nocaptions|>")


class WhisperTokenizer:
    """Text <-> token ids for Whisper, with the special ids the decoder prompt needs."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<tokenizer>") -> None:
        self._tokenizer = tokenizer
        # Text such as "<|endoftext|>" in a transcript is encoded as plain text, as tiktoken
        # does with disallowed_special=(); otherwise user text could inject control tokens.
        self._tokenizer.encode_special_tokens = True
        ids = {attr: tokenizer.token_to_id(token) for attr, token in _REQUIRED.items()}
        missing = [_REQUIRED[attr] for attr, i in ids.items() if i is None]
        found = [i for t in _NO_SPEECH if (i := tokenizer.token_to_id(t)) is not None]
        no_speech = found[0] if found else None
        if no_speech is None:
            missing.append(" or ".join(_NO_SPEECH))
        if missing:
            raise ValueError(f"{source}: Whisper tokenizer lacks special tokens {missing}")
        self.eot: int = ids["eot"]
        self.sot: int = ids["sot"]
        self.sot_prev: int = ids["sot_prev"]
        self.sot_lm: int = ids["sot_lm"]
        self.no_timestamps: int = ids["no_timestamps"]
        self.transcribe: int = ids["transcribe"]
        self.translate: int = ids["translate"]
        self.no_speech: int = no_speech
        self.timestamp_begin: int = self.no_timestamps + 1
        self.vocab_size: int = self.timestamp_begin + N_TIMESTAMPS

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> WhisperTokenizer:
        """Load `tokenizer.json`, or the `tokenizer.json` inside a model directory."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: Whisper tokenizer.json not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"{path}: not a valid tokenizer.json ({exc})") from exc
        return cls(tokenizer, source=str(path))

    @property
    def is_multilingual(self) -> bool:
        # Same rule as Hugging Face: English-only vocabularies have 51864 entries.
        return self.vocab_size >= 51865

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without the <|startoftranscript|>...<|endoftext|> wrapping."""
        # add_special_tokens=False: tokenizer.json's post-processor would add sot/notimestamps/eot.
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, dropping every special and timestamp id (>= eot)."""
        return self._tokenizer.decode([i for i in ids if i < self.eot], skip_special_tokens=False)

    def decode_with_timestamps(self, ids: list[int]) -> str:
        """Text with special tokens kept and timestamp ids rendered as e.g. `<|1.08|>`."""
        parts: list[str] = []
        run: list[int] = []  # text ids since the last timestamp, decoded together for bytes
        for i in ids:
            if i >= self.timestamp_begin:
                parts.append(self._tokenizer.decode(run, skip_special_tokens=False))
                parts.append(f"<|{(i - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
                run = []
            else:
                run.append(i)
        parts.append(self._tokenizer.decode(run, skip_special_tokens=False))
        return "".join(parts)

    @property
    def language_tokens(self) -> list[int]:
        """Ids of the language tokens (`<|en|>`, `<|zh|>`, ...), which sit between
        <|startoftranscript|> and <|translate|>; none in an English-only vocabulary."""
        if not self.is_multilingual:
            return []
        return list(range(self.sot + 1, self.translate))

    @property
    def language_codes(self) -> list[str]:
        """Codes of `language_tokens`, in the same order ("en", "zh", "de", ...)."""
        return [self._tokenizer.id_to_token(i)[2:-2] for i in self.language_tokens]

    def character_runs(self, tokens: list[int]) -> list[tuple[list[int], str]]:
        """The tokens in runs that each decode to whole characters (a CJK character or an emoji
        may span several byte-level tokens; a special or timestamp token ends a run), with the
        run's text as `decode_with_timestamps` renders it."""
        runs: list[tuple[list[int], str]] = []
        pending: list[int] = []
        for i, token in enumerate(tokens):
            pending.append(token)
            text = self.decode_with_timestamps(pending)
            if "\ufffd" in text and token < self.eot and i + 1 < len(tokens):
                continue  # an incomplete UTF-8 sequence: wait for the rest
            runs.append((pending, text))
            pending = []
        return runs

    def language_token(self, language: str) -> int:
        """Id of `<|{language}|>`, e.g. "en"."""
        token = self._tokenizer.token_to_id(f"<|{language}|>")
        if token is None or token not in self.language_tokens:
            known = ", ".join(self.language_codes) or "none: the model is English-only"
            raise ValueError(f"unknown language {language!r}; this model's codes: {known}")
        return token

    def sot_sequence(
        self, without_timestamps: bool = True, language: str = "en", task: str = "transcribe"
    ) -> list[int]:
        """Decoder prompt: `<|startoftranscript|>` [+ language + task] [+ `<|notimestamps|>`].

        English-only models take no language or task token (as in openai-whisper), so
        `language` and `task` only matter when `is_multilingual`.
        """
        sequence = [self.sot]
        if self.is_multilingual:
            if task not in ("transcribe", "translate"):
                raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
            sequence += [self.language_token(language), getattr(self, task)]
        if without_timestamps:
            sequence.append(self.no_timestamps)
        return sequence

    def non_speech_tokens(self) -> list[int]:
        """Ids of symbols that are never spoken (brackets, music signs, ...), which Whisper
        suppresses by default so that it transcribes speech, not sound-effect captions.

        The same set openai-whisper derives: each symbol that encodes to one token, with or
        without a leading space, plus the first token of a musical sign; and " -", " '" at
        the start of a word (they stay allowed between words).
        """
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        musical = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(musical):
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in musical:
                    result.add(ids[0])
        return sorted(result)

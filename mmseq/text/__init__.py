"""Text-to-text models (T5, BART, MarianMT, Pegasus): importers, tokenizers, generation."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "TextGenerator": "mmseq.text.generator",
    "Generated": "mmseq.text.generator",
    "load_hf": "mmseq.text.hf",
    "save_hf": "mmseq.text.hf",
    "HFModel": "mmseq.text.hf",
    "Seq2SeqTokenizer": "mmseq.text.tokenizer",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmseq.text' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

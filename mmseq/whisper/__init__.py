"""Whisper on mmseq: checkpoint importers (openai .pt, Hugging Face, CTranslate2), tokenizer."""

from mmseq.whisper.checkpoints import WhisperCheckpoint, WhisperDims, load_whisper_checkpoint
from mmseq.whisper.loading import DEFAULT_MODEL, Whisper, load_whisper
from mmseq.whisper.tokenizer import WhisperTokenizer

__all__ = [
    "DEFAULT_MODEL",
    "Whisper",
    "WhisperCheckpoint",
    "WhisperDims",
    "WhisperTokenizer",
    "load_whisper",
    "load_whisper_checkpoint",
]

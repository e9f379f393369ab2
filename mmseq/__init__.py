"""mmseq: multimodal sequence-to-sequence models.

Audio, image and text encoders feed one shared Transformer decoder with cross-attention. Heavy
modules load lazily, so `import mmseq` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "EncoderDecoder": "mmseq.model",
    "ModelConfig": "mmseq.model",
    "GenerationConfig": "mmseq.generation",
    "generate": "mmseq.generation",
    "load_whisper": "mmseq.whisper",
    "Transcriber": "mmseq.transcription",
    "TranscribeOptions": "mmseq.transcription",
    "transcribe": "mmseq.transcription",
    "TextGenerator": "mmseq.text.generator",
    "load": "mmseq.loading",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmseq' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

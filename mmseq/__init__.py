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
    "Transcript": "mmseq.transcription",
    "transcribe": "mmseq.transcription",
    "Captioner": "mmseq.inference",
    "TextGenerator": "mmseq.text.generator",
    "load": "mmseq.loading",
    # what the API raises, to catch by name
    "AudioLoadError": "mmseq.data.audio",
    "CheckpointError": "mmseq.errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmseq' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names are not in the module's namespace until used: list them for dir() and tab
    # completion, without the typing and __future__ imports that are
    return [*__all__, "__version__"]


__all__ = sorted(_EXPORTS)

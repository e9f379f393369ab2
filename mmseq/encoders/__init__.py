"""Encoders: each maps its input to `EncoderOutput(states [B, S, D], mask [B, S] | None)`."""

from mmseq.encoders.audio import AudioEncoder, AudioEncoderConfig
from mmseq.encoders.base import EncoderOutput
from mmseq.encoders.image import ImageEncoder, ImageEncoderConfig, resample_positions
from mmseq.encoders.text import TextEncoder, TextEncoderConfig

__all__ = [
    "AudioEncoder",
    "AudioEncoderConfig",
    "EncoderOutput",
    "ImageEncoder",
    "ImageEncoderConfig",
    "TextEncoder",
    "TextEncoderConfig",
    "resample_positions",
]

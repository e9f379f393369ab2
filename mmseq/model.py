"""EncoderDecoder: named encoders (`audio`, `image`, `text`) feeding one shared TextDecoder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.config import from_dict, load_yaml, to_dict
from mmseq.decoder import DecoderConfig, TextDecoder
from mmseq.encoders import (
    AudioEncoder,
    AudioEncoderConfig,
    EncoderOutput,
    ImageEncoder,
    ImageEncoderConfig,
    TextEncoder,
    TextEncoderConfig,
)
from mmseq.nn.copy import SourceStates

IGNORE_INDEX = -100  # label value that the loss skips (padding)

_ENCODERS = {"audio": AudioEncoder, "image": ImageEncoder, "text": TextEncoder}


@dataclass
class ModelConfig:
    """The whole architecture; saved with the weights so a checkpoint needs no outside YAML."""

    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    audio: AudioEncoderConfig | None = None
    image: ImageEncoderConfig | None = None
    text: TextEncoderConfig | None = None
    # one token embedding for the text encoder and the decoder (T5, BART, Marian, Pegasus)
    share_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.share_embeddings:
            if self.text is None:
                raise ValueError("share_embeddings needs a text encoder")
            if (self.text.vocab_size, self.text.block.d_model) != (
                self.decoder.vocab_size,
                self.decoder.block.d_model,
            ):
                raise ValueError(
                    "share_embeddings: text.vocab_size and text.block.d_model must equal the "
                    "decoder's"
                )
        if self.decoder.copy and not self.share_embeddings:
            raise ValueError(
                "decoder.copy: the copy head copies source tokens into the output, so the source "
                "must be text in the target's vocabulary: set share_embeddings: true (with a "
                "text encoder)"
            )

    @property
    def modalities(self) -> list[str]:
        return [name for name in _ENCODERS if getattr(self, name) is not None]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return from_dict(cls, data, "model")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> ModelConfig:
        return load_yaml(cls, path)


@dataclass
class Seq2SeqOutput:
    logits: Tensor  # [B, T, V] fp32
    loss: Tensor | None = None


class EncoderDecoder(nn.Module):
    """Encoders whose widths differ from the decoder's get a linear bridge (as Hugging Face's
    `enc_to_dec_proj`), so any pretrained encoder can feed any decoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not config.modalities:
            raise ValueError("model: configure at least one encoder (audio, image or text)")
        self.config = config
        self.encoders = nn.ModuleDict(
            {name: _ENCODERS[name](getattr(config, name)) for name in config.modalities}
        )
        shared = self.encoders["text"].token_embedding if config.share_embeddings else None
        self.decoder = TextDecoder(config.decoder, shared)
        self.bridges = nn.ModuleDict(
            {
                name: nn.Linear(enc.d_model, self.decoder.d_model)
                for name, enc in self.encoders.items()
                if enc.d_model != self.decoder.d_model
            }
        )

    def encode(self, modality: str, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Run the encoder for `modality` -> states [B, S, D_decoder] and mask [B, S] or None."""
        if modality not in self.encoders:
            raise ValueError(
                f"modality {modality!r}: this model has encoders {sorted(self.encoders)}"
            )
        out = self.encoders[modality](inputs, lengths)
        if modality in self.bridges:
            out = EncoderOutput(self.bridges[modality](out.states), out.mask)
        if self.decoder.copy_head is not None:
            if modality != "text":
                raise ValueError(
                    f"modality {modality!r}: this model's decoder copies source tokens "
                    "(decoder.copy), which only a text input has"
                )
            # the copy head reads the source ids with the states (mmseq.nn.copy.SourceStates)
            out = EncoderOutput(SourceStates.wrap(out.states, inputs), out.mask)
        return out

    def forward(
        self,
        modality: str,
        inputs: Tensor,
        tokens: Tensor,
        lengths: Tensor | None = None,
        labels: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> Seq2SeqOutput:
        """Teacher forcing: tokens [B, T] are the decoder inputs, labels [B, T] the targets at
        each position (IGNORE_INDEX where padded); see `shift_right`."""
        enc = self.encode(modality, inputs, lengths)
        logits = self.decoder(tokens, enc.states, enc.mask)
        loss = None if labels is None else seq2seq_loss(logits, labels, label_smoothing)
        return Seq2SeqOutput(logits, loss)


def seq2seq_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean token cross-entropy of logits [B, T, V] against labels [B, T], skipping IGNORE_INDEX."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels: expected shape {tuple(logits.shape[:2])} to match the logits, "
            f"got {tuple(labels.shape)}"
        )
    return F.cross_entropy(
        logits.flatten(0, 1).float(),
        labels.flatten(),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
    )


def shift_right(labels: Tensor, start_token_id: int, pad_token_id: int) -> Tensor:
    """Decoder inputs for teacher forcing: [start, y0, ..., y(T-2)], IGNORE_INDEX -> pad.

    The one place labels are shifted: labels[:, t] is then the target for tokens[:, t].
    """
    tokens = labels.new_full(labels.shape, pad_token_id)
    tokens[:, 0] = start_token_id
    tokens[:, 1:] = labels[:, :-1]
    return tokens.masked_fill(tokens == IGNORE_INDEX, pad_token_id)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "IGNORE_INDEX",
    "EncoderDecoder",
    "ModelConfig",
    "Seq2SeqOutput",
    "count_parameters",
    "seq2seq_loss",
    "shift_right",
]

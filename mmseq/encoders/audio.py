"""Whisper-style audio encoder: log-mel -> two 1-D convs (the second strides by 2) ->
sinusoidal positions -> Transformer blocks -> final norm."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from mmseq.encoders.audio_features import N_FRAMES, LogMelSpectrogram
from mmseq.encoders.base import EncoderOutput, EncoderStack, lengths_to_mask
from mmseq.nn import BlockConfig
from mmseq.nn.positions import PositionKind, make_positions


@dataclass
class AudioEncoderConfig:
    """Defaults are Whisper tiny's encoder."""

    n_mels: int = 80
    n_ctx: int = 1500  # encoder positions (mel frames / 2): 1500 = 30 s
    n_layers: int = 4
    block: BlockConfig = field(default_factory=BlockConfig)
    positions: PositionKind = "sinusoidal"  # "none", "learned", "sinusoidal" (Whisper's)
    # Whisper was trained on 30 s windows and attends to their padding; models trained from
    # scratch can set False to encode only the frames that hold audio (masked in attention).
    pad_to_30s: bool = True


class AudioEncoder(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.block.d_model
        self.features = LogMelSpectrogram(
            cfg.n_mels, pad_to_frames=N_FRAMES if cfg.pad_to_30s else None
        )
        self.conv1 = nn.Conv1d(cfg.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        if cfg.positions == "relative":
            raise ValueError("audio encoder positions: 'relative' is for text stacks only")
        self.positions = make_positions(cfg.positions, cfg.n_ctx, d)
        self.stack = EncoderStack(cfg.block, cfg.n_layers)

    @property
    def d_model(self) -> int:
        return self.config.block.d_model

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """inputs: waveforms [B, S] at 16 kHz (lengths in samples) or log-mels [B, n_mels, T]
        (lengths in frames) -> states [B, ceil(T / 2), D]."""
        if inputs.dim() == 2:
            mel, lengths = self.features(inputs, lengths)
        elif inputs.dim() == 3 and inputs.shape[1] == self.config.n_mels:
            mel = self._pad_mel(inputs)
        else:
            raise ValueError(
                f"audio input: expected waveforms [B, samples] or log-mels "
                f"[B, {self.config.n_mels}, frames], got shape {tuple(inputs.shape)}"
            )
        x = mel.to(self.conv1.weight.dtype)
        x = F.gelu(self.conv2(F.gelu(self.conv1(x)))).transpose(1, 2)  # [B, T/2, D]
        if self.positions is not None:
            x = x + self.positions(x.shape[1]).to(x.dtype)
        mask = None
        if lengths is not None and not self.config.pad_to_30s:
            mask = lengths_to_mask((lengths.to(x.device) + 1) // 2, x.shape[1])
        return EncoderOutput(self.stack(x, mask), mask)

    def _pad_mel(self, mel: Tensor) -> Tensor:
        """Zero-pad a Whisper model's log-mel to its 30 s window, as openai-whisper does."""
        if not self.config.pad_to_30s:
            return mel
        if mel.shape[-1] > N_FRAMES:
            raise ValueError(
                f"audio input: {mel.shape[-1]} mel frames exceed one 30 s window ({N_FRAMES}); "
                "split long audio into windows first"
            )
        return F.pad(mel, (0, N_FRAMES - mel.shape[-1]))

"""Samples -> padded `Batch`: encoder inputs, decoder inputs and labels, the forced prefix.

Token layout for a target text (one rule for every modality):

    full   = prefix(task) + encode(text) + [eos]      e.g. [<s>, <|transcribe|>, a, b, </s>]
    tokens = full[:-1]                                     [<s>, <|transcribe|>, a, b]
    labels = full[1:], first len(prefix) - 1 ignored       [IGN, a, b, </s>]

so the model is never trained to predict the task token, only what follows the prefix. Rows
are right-padded: tokens with pad_id, labels with IGNORE_INDEX.

Audio is turned into log-mel here (in the DataLoader's workers) with the audio encoder's own
front-end, per clip, so a training feature equals what `AudioEncoder` computes from the
waveform at inference. Frames past a clip's end are 0: that is what `LogMelSpectrogram`
writes past each clip in a padded waveform batch and what openai-whisper pads its 30 s window
with (`AudioEncoder._pad_mel`), so the encoder sees the same padding in every path. (0 is not
the log-mel of silence, (max(-10, peak - 8) + 4) / 4, about -1; it is the value Whisper was
trained to see after a clip ends.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from mmseq.encoders.audio_features import HOP_LENGTH, LogMelSpectrogram
from mmseq.model import IGNORE_INDEX

MODALITIES = ("audio", "image", "text")


class Tokenizer(Protocol):
    """What collation needs of `mmseq.data.tokenizer.TextTokenizer`."""

    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def prefix(self, task: str | None) -> list[int]: ...


@dataclass
class Batch:
    """One padded batch (B examples).

    inputs: audio log-mel [B, n_mels, T] | images [B, 3, H, W] | source token ids [B, S].
    lengths: [B] valid audio frames / source tokens; None for images.
    tokens, labels: [B, L] decoder inputs and targets (IGNORE_INDEX where not trained on).
    prefix: [B, P] the forced start of generation (bos and task token).
    references: every acceptable target per example (scoring); ids: the samples' ids.
    """

    modality: str
    inputs: Tensor
    lengths: Tensor | None
    tokens: Tensor
    labels: Tensor
    prefix: Tensor
    references: list[list[str]]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def _map_tensors(self, fn: Any) -> Batch:
        changes = {
            f.name: fn(v) for f in fields(self) if isinstance(v := getattr(self, f.name), Tensor)
        }
        return replace(self, **changes)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on `device` (Lightning moves batches through this)."""
        return self._map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) for custom batch types."""
        return self._map_tensors(Tensor.pin_memory)


def pad_sequences(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    """Right-pad integer rows to the longest -> [B, max_len] int64."""
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


class Seq2SeqCollator:
    """DataLoader `collate_fn`: a list of samples (see the design's sample format) -> `Batch`.

    max_target_tokens caps L, the decoder sequence length (set it to the decoder's n_ctx);
    a longer target is cut there and loses its eos (it must not learn to stop mid-sentence),
    with a warning. max_source_tokens does the same for text sources (eos kept last).
    source_tokenizer encodes text sources (default: `tokenizer`).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        modality: str,
        task: str | None,
        n_mels: int = 80,
        max_target_tokens: int | None = None,
        source_tokenizer: Tokenizer | None = None,
        max_source_tokens: int | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        prefix = tokenizer.prefix(task)
        if max_target_tokens is not None and max_target_tokens < len(prefix):
            raise ValueError(
                f"max_target_tokens: {max_target_tokens} is shorter than the "
                f"{len(prefix)}-token prefix {prefix}"
            )
        if max_source_tokens is not None and max_source_tokens < 1:
            raise ValueError(f"max_source_tokens: expected >= 1, got {max_source_tokens}")
        self.tokenizer = tokenizer
        self.source_tokenizer = source_tokenizer or tokenizer
        self.modality = modality
        self.task = task
        self.prefix_ids = prefix
        self.max_target_tokens = max_target_tokens
        self.max_source_tokens = max_source_tokens
        # examples truncated so far, per option (counted per DataLoader worker process)
        self.truncated = {"max_target_tokens": 0, "max_source_tokens": 0}
        self.features = (
            LogMelSpectrogram(n_mels, pad_to_frames=None) if modality == "audio" else None
        )

    def __call__(self, samples: Sequence[dict[str, Any]]) -> Batch:
        if not samples:
            raise ValueError("collate: got an empty list of samples")
        ids = [str(s.get("id", i)) for i, s in enumerate(samples)]
        for s, sid in zip(samples, ids, strict=True):
            for key in (_INPUT_KEY[self.modality], "text"):
                if key not in s:
                    raise KeyError(f"sample {sid!r}: {self.modality} sample has no {key!r} field")
        inputs, lengths = getattr(self, f"_{self.modality}")(samples, ids)
        tokens, labels = self._targets([s["text"] for s in samples], ids)
        prefix = torch.tensor(self.prefix_ids, dtype=torch.long).repeat(len(samples), 1)
        references = [list(s.get("references") or [s["text"]]) for s in samples]
        return Batch(self.modality, inputs, lengths, tokens, labels, prefix, references, ids)

    def _targets(self, texts: list[str], ids: list[str]) -> tuple[Tensor, Tensor]:
        """texts -> tokens [B, L] (pad_id), labels [B, L] (IGNORE_INDEX)."""
        n_prefix = len(self.prefix_ids)
        fulls = [
            self.prefix_ids + self.tokenizer.encode(t) + [self.tokenizer.eos_id] for t in texts
        ]
        if self.max_target_tokens is not None:
            fulls = self._truncate(fulls, self.max_target_tokens + 1, ids, "max_target_tokens")
        tokens = pad_sequences([f[:-1] for f in fulls], self.tokenizer.pad_id)
        labels = pad_sequences([f[1:] for f in fulls], IGNORE_INDEX)
        labels[:, : n_prefix - 1] = IGNORE_INDEX
        return tokens, labels

    def _truncate(
        self, rows: list[list[int]], keep: int, ids: list[str], option: str
    ) -> list[list[int]]:
        """Cut rows to `keep` ids, warning (see `truncated`) that `option` was exceeded."""
        cut = [sid for row, sid in zip(rows, ids, strict=True) if len(row) > keep]
        if cut:
            before = self.truncated[option]
            self.truncated[option] += len(cut)
            # every time the running total passes a power of two: never silent, never a flood
            if self.truncated[option].bit_length() > before.bit_length():
                warnings.warn(
                    f"collate: {len(cut)} example(s) in this batch exceed {option}="
                    f"{getattr(self, option)} and were truncated (ids {cut[:5]}); "
                    f"{self.truncated[option]} so far in this process",
                    stacklevel=3,
                )
        return [row[:keep] for row in rows]

    def _audio(self, samples: Sequence[dict[str, Any]], ids: list[str]) -> tuple[Tensor, Tensor]:
        """Waveforms [S_i] at 16 kHz -> log-mel [B, n_mels, T] (0 past each clip), frames [B]."""
        mels = []
        for s, sid in zip(samples, ids, strict=True):
            audio = torch.as_tensor(s["audio"], dtype=torch.float32)
            if audio.dim() != 1 or audio.numel() < HOP_LENGTH:
                raise ValueError(
                    f"sample {sid!r}: expected mono audio [samples] of at least {HOP_LENGTH} "
                    f"samples (one frame), got shape {tuple(audio.shape)}"
                )
            mel, _ = self.features(audio[None])  # [1, n_mels, S // hop], as AudioEncoder does
            mels.append(mel[0])
        lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
        out = mels[0].new_zeros(len(mels), mels[0].shape[0], int(lengths.max()))
        for i, mel in enumerate(mels):
            out[i, :, : mel.shape[-1]] = mel
        return out, lengths

    def _image(self, samples: Sequence[dict[str, Any]], ids: list[str]) -> tuple[Tensor, None]:
        images = [torch.as_tensor(s["image"]) for s in samples]
        for image, sid in zip(images, ids, strict=True):
            if image.shape != images[0].shape or image.dim() != 3:
                raise ValueError(
                    f"sample {sid!r}: image shape {tuple(image.shape)}, but {ids[0]!r} has "
                    f"{tuple(images[0].shape)}; images in a batch need one [3, H, W] size "
                    "(resize them in the dataset's transform)"
                )
        return torch.stack(images).float(), None

    def _text(self, samples: Sequence[dict[str, Any]], ids: list[str]) -> tuple[Tensor, Tensor]:
        """Sources -> encode(source) + [eos], right-padded [B, S] (pad_id), lengths [B]."""
        tok = self.source_tokenizer
        rows = [tok.encode(s["source"]) for s in samples]
        if self.max_source_tokens is not None:
            rows = self._truncate(rows, self.max_source_tokens - 1, ids, "max_source_tokens")
        rows = [r + [tok.eos_id] for r in rows]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return pad_sequences(rows, tok.pad_id), lengths


_INPUT_KEY = {"audio": "audio", "image": "image", "text": "source"}

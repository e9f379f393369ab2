"""Inference with models trained by `mmseq fit`: captioning images, transcribing audio.

A `.ckpt` trained with Whisper's tokenizer and 30 s windows (a fine-tuned tiny.en) goes
through the full Whisper long-form path (`mmseq.transcription`); other speech models decode
30 s chunks (or Silero VAD's speech chunks) with their own tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice

import torch
from torch import Tensor

from mmseq.checkpoint import TrainedModel, load_trained
from mmseq.data.audio import AudioLoadError, load_audio
from mmseq.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, encoder_transforms, load_image
from mmseq.data.tokenizer import WhisperTextTokenizer
from mmseq.data.vad import VadOptions, speech_chunks
from mmseq.encoders.audio_features import SAMPLE_RATE
from mmseq.generation import GenerationConfig, GenerationOutput, generate
from mmseq.precision import check_device
from mmseq.whisper.loading import Whisper

CHUNK_SECONDS = 30.0


@dataclass
class Caption:
    image: str
    caption: str | None = None
    error: str | None = None
    tokens: list[int] | None = None  # the generated ids (no prefix, no EOS)


class Captioner:
    """Captions images with a trained image-to-text model; beam search by default.

    device "auto" (the default) is CUDA when present, else the CPU; a TrainedModel passed in
    stays where it was loaded."""

    def __init__(
        self,
        model: str | os.PathLike | TrainedModel,
        device: str | torch.device = "auto",
        num_beams: int = 3,
        max_new_tokens: int = 48,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        device = check_device(device)  # "auto" resolved; a missing GPU refused
        self.trained = model if isinstance(model, TrainedModel) else load_trained(model, device)
        config = self.trained.model.config.image
        if config is None:
            raise ValueError(
                f"{self.trained.source}: this model has no image encoder "
                f"(it has {self.trained.modalities})"
            )
        self.transform = encoder_transforms(config, train=False)
        self.max_pixels = max_pixels
        tokenizer = self.trained.tokenizer
        self.prefix = tokenizer.prefix(self.trained.tasks.get("image"))
        self.generation = GenerationConfig(
            max_new_tokens=_fit_context(max_new_tokens, self.trained, len(self.prefix)),
            num_beams=num_beams,
            eos_token_id=tokenizer.eos_id,
            pad_token_id=tokenizer.pad_id,
        )

    @property
    def device(self) -> torch.device:
        return next(self.trained.model.parameters()).device

    def caption(self, images: Iterable[str | os.PathLike], batch_size: int = 16) -> list[Caption]:
        return list(self.iter_caption(images, batch_size))

    def iter_caption(
        self, images: Iterable[str | os.PathLike], batch_size: int = 16
    ) -> Iterator[Caption]:
        """Captions in input order; an unreadable image gives a Caption with `error` set.

        `images` is read lazily, a batch at a time, and only that batch's images are decoded:
        memory does not grow with the number of images."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        names_in = (str(p) for p in images)
        while names := list(islice(names_in, batch_size)):
            results = [Caption(name) for name in names]
            pixels, good = [], []
            for i, name in enumerate(names):
                try:
                    pixels.append(self.transform(load_image(name, self.max_pixels)))
                    good.append(i)
                except (ImageLoadError, OSError, ValueError) as err:
                    results[i].error = str(err)
            if pixels:
                out = self.generate(torch.stack(pixels))
                for i, tokens in zip(good, self.generated(out), strict=True):
                    results[i].tokens = tokens
                    results[i].caption = self.trained.tokenizer.decode(tokens)
            yield from results

    def generate(self, pixels: torch.Tensor) -> GenerationOutput:
        """pixels [B, 3, H, W], normalised -> generated sequences (prefix included)."""
        return generate(
            self.trained.model, "image", pixels.to(self.device), self.prefix, self.generation
        )

    def generated(self, out: GenerationOutput) -> list[list[int]]:
        """The best sequence's generated ids per input, without the prefix and the EOS."""
        n, eos = len(self.prefix), self.trained.tokenizer.eos_id
        rows = []
        for seq, length in zip(out.sequences[:, 0], out.lengths[:, 0].tolist(), strict=True):
            ids = seq[n : n + length].tolist()
            rows.append(ids[:-1] if ids and ids[-1] == eos else ids)
        return rows

    def texts(self, out: GenerationOutput) -> list[str]:
        n = len(self.prefix)
        return [self.trained.tokenizer.decode(seq[0, n:].tolist()) for seq in out.sequences]


def _fit_context(max_new_tokens: int, trained: TrainedModel, prefix_len: int) -> int:
    """At most what the decoder's positions leave after the prefix."""
    return max(1, min(max_new_tokens, trained.model.config.decoder.n_ctx - prefix_len))


def whisper_from_trained(trained: TrainedModel) -> Whisper | None:
    """A fine-tuned Whisper (Whisper tokenizer, 30 s windows) as a `Whisper`, else None."""
    audio = trained.model.config.audio
    if not isinstance(trained.tokenizer, WhisperTextTokenizer) or audio is None:
        return None
    if not audio.pad_to_30s:
        return None
    decoder = trained.model.config.decoder
    layers, heads = decoder.n_layers, decoder.block.n_heads
    alignment = [(layer, head) for layer in range(layers // 2, layers) for head in range(heads)]
    return Whisper(trained.model, trained.tokenizer.whisper, alignment, trained.source)


@dataclass
class ChunkTranscript:
    source: str
    text: str = ""
    duration: float = 0.0
    error: str | None = None


class ChunkTranscriber:
    """Speech models trained from scratch: 30 s chunks decoded in batches, cut every 30 s or,
    with `vad`, at the pauses Silero VAD finds (the silence between left out)."""

    def __init__(self, trained: TrainedModel, num_beams: int = 1, max_new_tokens: int = 128):
        if trained.model.config.audio is None:
            raise ValueError(f"{trained.source}: this model has no audio encoder")
        self.trained = trained
        tokenizer = trained.tokenizer
        self.prefix = tokenizer.prefix(trained.tasks.get("audio"))
        self.generation = GenerationConfig(
            max_new_tokens=_fit_context(max_new_tokens, self.trained, len(self.prefix)),
            num_beams=num_beams,
            eos_token_id=tokenizer.eos_id,
            pad_token_id=tokenizer.pad_id,
        )

    def transcribe(
        self, path: str | os.PathLike, batch_size: int = 8, vad: VadOptions | None = None
    ) -> ChunkTranscript:
        result = ChunkTranscript(str(path))
        try:
            audio = torch.from_numpy(load_audio(path))
        except AudioLoadError as err:
            result.error = str(err)
            return result
        result.duration = len(audio) / SAMPLE_RATE
        chunks = self.chunks(audio, vad)
        texts = []
        model = self.trained.model
        device = next(model.parameters()).device
        for start in range(0, len(chunks), batch_size):
            group = chunks[start : start + batch_size]
            lengths = torch.tensor([len(c) for c in group])
            waves = torch.nn.utils.rnn.pad_sequence(group, batch_first=True)
            out = generate(model, "audio", waves.to(device), self.prefix, self.generation, lengths)
            n = len(self.prefix)
            texts += [self.trained.tokenizer.decode(s[0, n:].tolist()) for s in out.sequences]
        result.text = " ".join(t for t in texts if t)
        return result

    @staticmethod
    def chunks(audio: Tensor, vad: VadOptions | None = None) -> list[Tensor]:
        """Waveform [S] -> the pieces to decode, [S_i] each, at most 30 s: every 30 s (a word
        on a cut is split), or with `vad` the speech regions packed up to 30 s, cut at pauses.
        Pieces under 0.1 s are dropped."""
        if vad is None:
            step = int(CHUNK_SECONDS * SAMPLE_RATE)
            pieces = [audio[i : i + step] for i in range(0, len(audio), step)]
        else:
            vad = replace(vad, max_chunk_s=min(vad.max_chunk_s, CHUNK_SECONDS))
            found = speech_chunks(audio.numpy(), vad)
            pieces = [torch.cat([audio[a:b] for a, b in chunk.regions]) for chunk in found]
        return [p for p in pieces if len(p) >= SAMPLE_RATE // 10]

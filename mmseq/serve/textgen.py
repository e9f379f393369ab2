"""The text-to-text and image-captioning models behind /v1/text/generations and
/v1/images/captions. A batch's requests with the same decoding settings are decoded together:
their inputs are pooled into one call, which groups them by length (longest first)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmseq.loading import load_as
from mmseq.serve.speech import model_id


@dataclass(frozen=True)
class TextJob:
    texts: tuple[str, ...]
    max_new_tokens: int | None = None
    num_beams: int | None = None


class TextModel:
    """generator: a `mmseq.text.TextGenerator` (or anything with its `results`)."""

    def __init__(self, generator: Any, name: str, batch_size: int = 32) -> None:
        self.generator, self.name, self.batch_size = generator, name, batch_size

    @classmethod
    def load(cls, model: str, device: str = "cpu", compute_type: str = "float32") -> TextModel:
        from mmseq.text.generator import TextGenerator

        generator = load_as(
            TextGenerator, model, "--text-model", device=device, compute_type=compute_type
        )
        return cls(generator, model_id(model))

    def warmup(self) -> None:
        self.generator.results(["warm up"], max_new_tokens=2)

    def run_batch(self, jobs: Sequence[TextJob]) -> list[Any]:
        results: list[Any] = [None] * len(jobs)
        groups: dict[tuple[int | None, int | None], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault((job.max_new_tokens, job.num_beams), []).append(i)
        for (max_new_tokens, num_beams), rows in groups.items():
            texts = [t for i in rows for t in jobs[i].texts]
            try:
                generated = iter(
                    self.generator.results(
                        texts,
                        batch_size=self.batch_size,
                        max_new_tokens=max_new_tokens,
                        num_beams=num_beams,
                    )
                )
                for i in rows:
                    results[i] = [next(generated) for _ in jobs[i].texts]
            except Exception as err:  # noqa: BLE001 - this group's requests fail, not others
                for i in rows:
                    results[i] = err
        return results


class CaptionModel:
    """captioner: a `mmseq.inference.Captioner` (or anything with its `caption`)."""

    def __init__(self, captioner: Any, name: str, batch_size: int = 16) -> None:
        self.captioner, self.name, self.batch_size = captioner, name, batch_size

    @classmethod
    def load(cls, model: str, device: str = "cpu") -> CaptionModel:
        from mmseq.inference import Captioner

        return cls(load_as(Captioner, model, "--caption-model", device=device), model_id(model))

    def warmup(self) -> None:
        pass  # a caption needs an image file; the first request pays for the first call

    def run_batch(self, paths: Sequence[str | os.PathLike]) -> list[Any]:
        captions = self.captioner.caption(list(paths), batch_size=self.batch_size)
        return [ValueError(c.error) if c.error else c.caption for c in captions]

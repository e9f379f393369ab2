"""What `mmseq serve` runs: the models and the limits it enforces."""

from __future__ import annotations

from dataclasses import dataclass

from mmseq.config import DEFAULT_WHISPER

OPENAI_UPLOAD_MB = 25  # OpenAI's limit: 25 MiB, 26214400 bytes


@dataclass(frozen=True)
class ServeConfig:
    """model: a Whisper name or path ('tiny.en', a .pt, a Hugging Face or CTranslate2 folder);
    caption_model / text_model: a captioner or text-to-text model, served when given.
    max_upload_mb: MiB of request body read at most (counted as it streams in).
    max_audio_seconds: longer recordings are refused (None: any length).
    max_queue: requests waiting per model beyond those being decoded; more get 429.
    batch_size: requests a model decodes together at most.
    api_key: when set, /v1 routes need `Authorization: Bearer <api_key>`.
    timeout_s, timeout_per_audio_s: a transcription's time budget, from its arrival:
    timeout_s + timeout_per_audio_s x its duration (the queue counts); past it, 504."""

    model: str | None = DEFAULT_WHISPER  # None: no speech model
    caption_model: str | None = None
    text_model: str | None = None
    device: str = "auto"  # CUDA when present, else the CPU (mmseq.loading.check_device)
    compute_type: str = "float32"
    max_upload_mb: float = OPENAI_UPLOAD_MB
    max_audio_seconds: float | None = None
    max_queue: int = 64
    batch_size: int = 8
    api_key: str | None = None
    timeout_s: float = 60.0
    timeout_per_audio_s: float = 1.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.timeout_per_audio_s < 0:
            raise ValueError(
                f"timeout: expected timeout_s > 0 and timeout_per_audio_s >= 0, got "
                f"{self.timeout_s} and {self.timeout_per_audio_s}"
            )
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb: expected MiB > 0, got {self.max_upload_mb}")
        if self.max_audio_seconds is not None and self.max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds: expected > 0, got {self.max_audio_seconds}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue: expected >= 1, got {self.max_queue}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")

    def time_budget(self, audio_seconds: float) -> float:
        """Seconds a transcription of `audio_seconds` may take, queue included."""
        return self.timeout_s + self.timeout_per_audio_s * audio_seconds

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

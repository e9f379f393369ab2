"""SpecAugment (Park et al., 2019) on a padded batch of log-mels, within each clip's frames.

torchaudio's maskers draw one mask per example over the whole padded axis; here each clip is
masked on its own valid frames (so a short clip's mask lies inside it, and a time mask given
as a fraction scales with the clip, as in adaptive SpecAugment, Park et al., 2020), and the
padding after it is left as the encoder expects it (see `mmseq.data.collate`). Randomness comes
from torch's global generator on the features' device: `torch.manual_seed` makes it repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchaudio.functional as AF
from torch import Tensor


@dataclass
class SpecAugment:
    """Defaults: LibriSpeech's LD policy (2 frequency masks up to 27 mel bins, 2 time masks),
    with time masks up to 5% of each clip.

    freq_width: widest frequency mask, in mel bins (each width is uniform in [0, freq_width)).
    time_width: widest time mask: a fraction of the clip's frames if < 1, else frames.
    mask_value: what masked cells become; None: the clip's mean log-mel (SpecAugment masks to
        zero after mean normalisation, i.e. to the mean; Whisper features are not normalised).
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width: float = 0.05
    mask_value: float | None = None

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"SpecAugment.{name}: expected an integer >= 0, got {value!r}")
        if not self.time_width >= 0 or (self.time_width >= 1 and self.time_width % 1):
            raise ValueError(
                "SpecAugment.time_width: expected a fraction in [0, 1) or a whole number of "
                f"frames, got {self.time_width!r}"
            )

    def time_mask_param(self, n_frames: int) -> int:
        """Widest time mask for a clip of n_frames frames."""
        width = self.time_width * n_frames if self.time_width < 1 else self.time_width
        return min(int(width), n_frames)

    def __call__(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """mel [B, n_mels, T], lengths [B] valid frames (None: all T) -> masked copy [B, n_mels, T].

        Frames at and after each clip's length are returned unchanged.
        """
        if mel.dim() != 3:
            raise ValueError(
                f"SpecAugment: expected log-mels [B, n_mels, T], got {tuple(mel.shape)}"
            )
        batch, n_mels, n_frames = mel.shape
        sizes = [n_frames] * batch if lengths is None else lengths.tolist()
        if len(sizes) != batch or any(not 0 <= n <= n_frames for n in sizes):
            raise ValueError(
                f"SpecAugment: lengths {sizes} do not fit a batch of {batch} clips of "
                f"{n_frames} frames"
            )
        out = mel.clone()
        for i, n in enumerate(sizes):
            if n == 0:
                continue
            clip = out[i : i + 1, :, :n]  # [1, n_mels, n]: this clip's valid frames
            value = clip.mean() if self.mask_value is None else self.mask_value
            for _ in range(self.freq_masks):
                clip = AF.mask_along_axis_iid(clip, min(self.freq_width, n_mels), value, axis=1)
            for _ in range(self.time_masks):
                clip = AF.mask_along_axis_iid(clip, self.time_mask_param(n), value, axis=2)
            out[i, :, :n] = clip[0]
        return out

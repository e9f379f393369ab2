"""Every dataset in one place; each is defined in its modality's module.

All of them check their manifest when built, raise `DataError` naming the manifest and line
for bad data (or skip and record it with ``skip_bad=True``), and expose `costs()` for length
bucketing.
"""

from __future__ import annotations

from mmseq.data.captions import CocoCaptionsDataset, ImageCaptionDataset
from mmseq.data.errors import DataError
from mmseq.data.speech import LibriSpeechDataset, SpeechManifestDataset
from mmseq.data.text_pairs import TextPairDataset

__all__ = [
    "CocoCaptionsDataset",
    "DataError",
    "ImageCaptionDataset",
    "LibriSpeechDataset",
    "SpeechManifestDataset",
    "TextPairDataset",
]

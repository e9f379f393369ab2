"""Every dataset in one place; each is defined in its modality's module.

All of them check their manifest when built and raise one `DataError` listing every bad entry
by manifest and line (or skip and record them with ``skip_bad=True``), and expose `costs()` for
length bucketing. `mmseq data check` (`mmseq.data.check`) applies the same rules.
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

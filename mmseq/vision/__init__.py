"""Importers of pretrained vision encoders into mmseq's ImageEncoder, and the preprocessing
stored with them."""

from mmseq.vision.hf_captioner import ImportedCaptioner, load_hf_captioner
from mmseq.vision.hf_vit import hf_vit_to_mmseq, image_encoder_config_from_hf, load_hf_vit_dir
from mmseq.vision.preprocess import (
    Preprocessing,
    preprocessing_from_hf,
    preprocessing_from_timm,
    read_preprocessing,
)
from mmseq.vision.timm_vit import TimmVitOptions, load_timm_vit, timm_vit_to_mmseq

__all__ = [
    "ImportedCaptioner",
    "Preprocessing",
    "TimmVitOptions",
    "hf_vit_to_mmseq",
    "image_encoder_config_from_hf",
    "load_hf_captioner",
    "load_hf_vit_dir",
    "load_timm_vit",
    "preprocessing_from_hf",
    "preprocessing_from_timm",
    "read_preprocessing",
    "timm_vit_to_mmseq",
]

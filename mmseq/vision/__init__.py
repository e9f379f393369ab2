"""Importers of pretrained vision encoders into mmseq's ImageEncoder."""

from mmseq.vision.hf_vit import hf_vit_to_mmseq, image_encoder_config_from_hf, load_hf_vit_dir

__all__ = ["hf_vit_to_mmseq", "image_encoder_config_from_hf", "load_hf_vit_dir"]

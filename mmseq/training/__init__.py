"""Training with Lightning: the LightningModule, validation metrics and the CLI."""

from mmseq.training.module import Seq2SeqModule
from mmseq.training.optim import OptimizerConfig

__all__ = ["OptimizerConfig", "Seq2SeqModule"]

"""Every YAML in configs/models builds a model; YAML mistakes are reported with file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmseq.model import EncoderDecoder, ModelConfig, count_parameters
from mmseq.whisper.checkpoints import load_whisper_checkpoint
from mmseq.whisper.loading import embedded_model_dir

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "models").glob("*.yaml"))


def test_there_are_model_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"whisper_tiny.yaml", "multimodal_small.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_a_model_that_runs(path: Path) -> None:
    config = ModelConfig.from_yaml(path)
    model = EncoderDecoder(config).eval()
    tokens = torch.tensor([[1, 2, 3]])
    inputs = {
        "audio": torch.randn(1, 16000),
        "image": torch.randn(1, 3, 64, 64),
        "text": torch.tensor([[5, 6, 7, 8]]),
    }
    with torch.no_grad():
        for modality in config.modalities:
            logits = model(modality, inputs[modality], tokens).logits
            assert logits.shape == (1, 3, config.decoder.vocab_size)


def test_whisper_tiny_yaml_is_the_checkpoints_architecture() -> None:
    from_yaml = ModelConfig.from_yaml(CONFIGS[[p.stem for p in CONFIGS].index("whisper_tiny")])
    checkpoint = load_whisper_checkpoint(embedded_model_dir())
    assert from_yaml == checkpoint.model_config()
    # openai's parameters (its sinusoid table is a buffer) plus the zero key biases of the
    # fused self/cross projections: 4 encoder + 2 x 4 decoder attentions of width 384
    sd = checkpoint.state_dict
    openai = sum(v.numel() for k, v in sd.items() if k != "encoder.positional_embedding")
    assert count_parameters(EncoderDecoder(from_yaml)) == openai + 12 * 384


def test_yaml_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("decoder: {block: {d_modle: 3}}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: .*decoder\.block.*d_modle"):
        ModelConfig.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("decoder: [unclosed\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        ModelConfig.from_yaml(broken)
    with pytest.raises(ValueError, match=r"missing\.yaml: config file not found"):
        ModelConfig.from_yaml(tmp_path / "missing.yaml")

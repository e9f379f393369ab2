"""Fine-tuning imported Hugging Face text models with `mmseq fit`: the sequences are the ones
transformers builds (tokenizer(text), tokenizer(text_target=...), labels shifted right behind
decoder_start_token_id), a tiny random T5 learns, and `mmseq export` writes it back as a folder
transformers loads with the same logits."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from text_fixtures import gettext_pairs, tokenizer_folder
from training_helpers import run_cli, write_config

from mmseq.checkpoint import load_trained
from mmseq.cli import main
from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.hf_tokenizer import HFTextTokenizer
from mmseq.data.tokenizer import load_tokenizer
from mmseq.model import IGNORE_INDEX

# decoder_start_token_id of each family's config (Marian: its pad, the last id)
START = {"t5": 0, "bart": 2, "pegasus": 0}
MODEL_TYPE = {"t5": "t5", "bart": "bart", "pegasus": "pegasus", "marian": "marian"}


def _pairs(n: int, offset: int = 2000) -> list[tuple[str, str]]:
    """n EN->FR gettext pairs without control characters (plain sentences)."""
    chosen = [
        (s.strip(), t.strip())
        for s, t in gettext_pairs()[offset:]
        if s.isprintable() and t.isprintable() and 3 <= len(s.split()) <= 12
    ]
    return chosen[:n]


def _with_config(kind: str, folder: Path) -> Path:
    """A copy of the tokenizer folder of `kind` with a config.json naming the decoder start."""
    shutil.copytree(tokenizer_folder(kind), folder)
    if kind == "marian":
        start = len(json.loads((folder / "vocab.json").read_text())) - 1
    else:
        start = START[kind]
    config = {"model_type": MODEL_TYPE[kind], "decoder_start_token_id": start}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kind", ["t5", "bart", "marian", "pegasus"])
def test_batches_hold_the_sequences_transformers_builds(kind: str, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = _with_config(kind, tmp_path / kind)
    reference = AutoTokenizer.from_pretrained(folder)
    tokenizer = load_tokenizer(folder)
    assert isinstance(tokenizer, HFTextTokenizer)
    collate = Seq2SeqCollator(tokenizer, "text", None, source_tokenizer=tokenizer.for_source())
    pairs = _pairs(8)
    batch = collate([{"id": str(i), "source": s, "text": t} for i, (s, t) in enumerate(pairs)])
    start = json.loads((folder / "config.json").read_text())["decoder_start_token_id"]
    for row, (source, target) in enumerate(pairs):
        source_ids = reference(source).input_ids
        labels = reference(text_target=target).input_ids
        n = len(labels)
        assert batch.inputs[row, : batch.lengths[row]].tolist() == source_ids
        assert batch.labels[row, :n].tolist() == labels
        assert (batch.labels[row, n:] == IGNORE_INDEX).all()
        assert batch.tokens[row, :n].tolist() == [start] + labels[:-1]
    assert batch.prefix[0].tolist() == [start]


def test_mbart_and_task_tokens_are_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "mbart"
    shutil.copytree(tokenizer_folder("mbart"), folder)
    config = {"model_type": "mbart", "decoder_start_token_id": 2}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="mBART is not supported"):
        load_tokenizer(folder)
    t5 = load_tokenizer(_with_config("t5", tmp_path / "t5"))
    with pytest.raises(ValueError, match="no task tokens.*task: null"):
        t5.prefix("translate")


def _tiny_t5(folder: Path) -> Path:
    """A random T5 (2+2 layers, 32-d) with the 1600-piece test tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    shutil.copytree(tokenizer_folder("t5"), folder)
    vocab = load_tokenizer_size(folder)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_ff=64,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def load_tokenizer_size(folder: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(folder))


def _write_pairs(path: Path, pairs: list[tuple[str, str]]) -> str:
    rows = [json.dumps({"source": s, "target": t}, ensure_ascii=False) for s, t in pairs]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def _hf_loss(folder: Path, pairs: list[tuple[str, str]]) -> float:
    """transformers' own token-mean cross-entropy of the pairs under the model in `folder`."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    sources, targets = zip(*pairs, strict=True)
    enc = tok(list(sources), text_target=list(targets), padding=True, return_tensors="pt")
    enc["labels"][enc["labels"] == tok.pad_token_id] = -100
    with torch.no_grad():
        return float(model(**enc).loss)


def test_finetuning_a_t5_folder_lowers_the_loss_and_exports_the_same_logits(
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForSeq2SeqLM

    base = _tiny_t5(tmp_path / "t5")
    train, val = _pairs(192), _pairs(24, offset=9000)
    out = tmp_path / "run"
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 3,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(out),
            "logger": False,
            "callbacks": [
                {
                    "class_path": "mmseq.training.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(out / "checkpoints"), "save_last": True},
                }
            ],
        },
        "model": {
            "tokenizer": str(base),
            "pretrained": str(base),
            "optimizer": {"lr": 3.0e-3, "warmup_steps": 5},
            "label_smoothing": 0.0,
            "max_new_tokens": 8,
        },
        "data": {
            "class_path": "mmseq.data.modules.TextDataModule",
            "init_args": {
                "train": _write_pairs(tmp_path / "train.jsonl", train),
                "val": _write_pairs(tmp_path / "val.jsonl", val),
                "task": None,
                "max_batch_tokens": 1200,
            },
        },
    }
    assert run_cli(["fit", "--config", write_config(tmp_path / "fit.yaml", config)]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    exported = tmp_path / "exported"
    assert main(["export", "--format", "hf", str(ckpt), str(exported)]) == 0

    # the fine-tuned model, scored by transformers itself, fits held-out pairs better
    assert _hf_loss(exported, val) < _hf_loss(base, val) - 0.5

    # the exported folder is the checkpoint's model: same logits in transformers and mmseq
    trained = load_trained(ckpt)
    reference = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    source = torch.tensor([trained.tokenizer.for_source().encode(val[0][0]) + [1]])
    target = torch.tensor([[0] + trained.tokenizer.encode(val[0][1])])
    with torch.no_grad():
        ours = trained.model("text", source, target).logits
        theirs = reference(input_ids=source, decoder_input_ids=target).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert json.loads((exported / "config.json").read_text())["d_model"] == 32
    assert (exported / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()


def test_export_formats(tmp_path: Path, capsys) -> None:
    """`--format hf` needs a checkpoint fine-tuned from a Hugging Face folder; `--format mmseq`
    (the default) writes any checkpoint as config.json + tokenizer.json + model.safetensors,
    which `translate` and `TextGenerator` read with the checkpoint's outputs."""
    from mmseq.errors import CheckpointError
    from mmseq.loading import load
    from mmseq.model import EncoderDecoder, ModelConfig
    from mmseq.text.generator import TextGenerator

    assert main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # an mmseq-trained checkpoint has no Hugging Face architecture to write
    from mmseq.checkpoint import checkpoint_entry

    config = ModelConfig.from_dict(
        {
            "text": {"vocab_size": 300, "n_ctx": 16, "n_layers": 1, "block": _BLOCK},
            "decoder": {"vocab_size": 300, "n_ctx": 16, "n_layers": 1, "block": _BLOCK},
        }
    )
    from mmseq.data.tokenizer import train_bpe

    bpe = train_bpe(["some text to train on"] * 4, 300)
    model = EncoderDecoder(config)
    path = tmp_path / "plain.ckpt"
    torch.save(
        {
            "mmseq": checkpoint_entry(config, bpe, {"text": None}),
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        },
        path,
    )
    assert main(["export", "--format", "hf", str(path), str(tmp_path / "out")]) == 2
    assert "not fine-tuned from a Hugging Face folder" in capsys.readouterr().err

    folder = tmp_path / "plain"
    assert main(["export", str(path), str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert json.loads((folder / "config.json").read_text())["mmseq_format"] == 1
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    texts = ["some text", "to train on", ""]
    expected = TextGenerator(path).generate(texts, max_new_tokens=6)
    assert TextGenerator(folder).generate(texts, max_new_tokens=6) == expected
    loaded = load(folder)  # one read of the folder, handed to TextGenerator
    assert isinstance(loaded, TextGenerator)
    assert loaded.generate(texts, max_new_tokens=6) == expected
    assert any(expected)
    ours, theirs = load_trained(folder).model.state_dict(), model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert main(["export", str(path), str(folder)]) == 2  # never over an existing model
    assert "exists and is not an empty folder" in capsys.readouterr().err
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing"):
        load_trained(folder)


def test_a_pretrained_folder_needs_its_own_tokenizer(tmp_path: Path) -> None:
    from mmseq.data.tokenizer import train_bpe
    from mmseq.training.module import Seq2SeqModule

    base = _tiny_t5(tmp_path / "t5")
    bpe = tmp_path / "bpe.json"
    train_bpe(["some text to train on"] * 4, 300).save(bpe)
    with pytest.raises(ValueError, match="give its folder .* as `tokenizer` too"):
        Seq2SeqModule(tokenizer=str(bpe), pretrained=str(base))


_BLOCK = {"d_model": 32, "n_heads": 2, "d_ff": 64}


def test_dropout_rates_are_imported_as_the_reference_applies_them(tmp_path: Path) -> None:
    """Fine-tuning regularises as transformers does: BART's three rates (residual, hidden,
    attention probabilities) and T5's one rate used in all three places."""
    from text_models import make_hf_model

    from mmseq.text.hf import load_hf

    bart = make_hf_model("bart", tmp_path / "bart")
    config = json.loads((bart / "config.json").read_text())
    config.update(dropout=0.3, activation_dropout=0.2, attention_dropout=0.1)
    (bart / "config.json").write_text(json.dumps(config))
    block = load_hf(bart).model.config.decoder.block
    assert (block.dropout, block.activation_dropout, block.attention_dropout) == (0.3, 0.2, 0.1)
    layer = load_hf(bart).model.decoder.blocks[0]
    assert (layer.dropout.p, layer.mlp.dropout.p, layer.attn.dropout) == (0.3, 0.2, 0.1)

    t5 = make_hf_model("t5", tmp_path / "t5")
    config = json.loads((t5 / "config.json").read_text())
    config.update(dropout_rate=0.15)
    (t5 / "config.json").write_text(json.dumps(config))
    layer = load_hf(t5).model.decoder.blocks[0]
    assert (layer.dropout.p, layer.mlp.dropout.p, layer.attn.dropout) == (0.15, 0.15, 0.15)

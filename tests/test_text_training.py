"""Training text models from scratch: text pairs and document-summary data bucketed by tokens,
validation with sacreBLEU/chrF (translation) and ROUGE beside the lead baseline (summaries),
from one YAML through `mmseq fit`, and the trained checkpoint used by `mmseq translate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from text_fixtures import gettext_pairs
from training_helpers import _trainer, read_metrics, run_cli, write_config

from mmseq.cli import main
from mmseq.data.modules import SummarizationDataModule, TextDataModule
from mmseq.data.tokenizer import train_unigram
from mmseq.training.metrics import lead_baseline, text_metrics

BLOCK = {"d_model": 32, "n_heads": 2, "d_ff": 64}


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


def _translation(tmp_path: Path, n_train: int = 96, n_val: int = 16) -> dict[str, str]:
    pairs = [(s, t) for s, t in gettext_pairs()[3000:] if s.isprintable() and t.isprintable()]
    rows = [{"id": f"p{i}", "source": s, "target": t} for i, (s, t) in enumerate(pairs)]
    tokenizer = train_unigram(
        [r[k] for r in rows[: n_train + n_val] for k in ("source", "target")], 600
    )
    tokenizer.save(tmp_path / "tok.json")
    return {
        "tokenizer": str(tmp_path / "tok.json"),
        "train": _write(tmp_path / "train.jsonl", rows[:n_train]),
        "val": _write(tmp_path / "val.jsonl", rows[n_train : n_train + n_val]),
    }


def _documents(n: int, offset: int = 0) -> list[dict]:
    """Toy package descriptions: the synopsis is in the first sentence, padded with more."""
    rows = []
    for i in range(offset, offset + n):
        synopsis = f"tool number {i} for files"
        document = (
            f"The {synopsis} and more. It is written in C.\n* feature {i % 7}\n* feature {i % 5}"
        )
        rows.append({"id": f"pkg{i}", "source": document, "target": synopsis})
    return rows


def test_batches_are_bucketed_by_tokens(tmp_path: Path) -> None:
    files = _translation(tmp_path)
    dm = TextDataModule(files["tokenizer"], train=files["train"], max_batch_tokens=300)
    dm.setup("fit")
    dataset = dm.dataset("train")
    costs, budget, _ = dm._batching(dataset)
    tok = dm.tokenizer
    for i in (0, 5, 17):
        item = dataset[i]
        # what the collator will build: source + </s>, and <s> <|translate|> target (+ </s>)
        assert costs[i] == len(tok.encode(item["source"])) + 1 + len(tok.encode(item["text"])) + 2
    cost_of = {dataset[i]["id"]: cost for i, cost in enumerate(costs)}
    seen = 0
    for batch in dm.train_dataloader():
        # the budget holds for the longest pair's tokens times the batch size
        assert max(cost_of[i] for i in batch.ids) * len(batch) <= budget or len(batch) == 1
        seen += len(batch)
    assert seen == len(dataset)


def test_summarization_bad_metrics_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics: expected one of"):
        SummarizationDataModule(metrics="bleu")


def _fit_config(out: Path, files: dict[str, str], data_class: str, monitor: str, **data) -> dict:
    return {
        "seed_everything": 0,
        "trainer": _trainer(out, monitor, "max", {"max_epochs": 2}),
        "model": {
            "tokenizer": files["tokenizer"],
            "model": {
                "share_embeddings": True,
                "text": {"n_ctx": 96, "n_layers": 1, "block": BLOCK},
                "decoder": {"n_ctx": 48, "n_layers": 1, "block": BLOCK},
            },
            "optimizer": {"lr": 3.0e-3, "warmup_steps": 2},
            "max_new_tokens": 12,
        },
        "data": {
            "class_path": data_class,
            "init_args": {"train": files["train"], "val": files["val"], **data},
        },
    }


def test_translation_fit_reports_sacrebleu_and_chrf_and_translates(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = _translation(tmp_path)
    out = tmp_path / "run"
    config = _fit_config(out, files, "mmseq.data.modules.TextDataModule", "val/chrf")
    assert run_cli(["fit", "--config", write_config(tmp_path / "fit.yaml", config)]) == 0
    logged = {k for row in read_metrics(out) for k in row}
    assert {"val/sacrebleu", "val/chrf", "val/loss"} <= logged
    ckpt = out / "checkpoints" / "last.ckpt"
    source = tmp_path / "in.txt"
    source.write_text("Open the file\n\nSave all\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["translate", str(source), "--model", str(ckpt)]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # one line per input line


def test_summarization_fit_reports_rouge_beside_the_lead_baseline(tmp_path: Path) -> None:
    train, val = _documents(120), _documents(16, offset=500)
    tokenizer = train_unigram(
        [r[k] for r in train for k in ("source", "target")], 400, tasks=("summarize",)
    )
    tokenizer.save(tmp_path / "tok.json")
    files = {
        "tokenizer": str(tmp_path / "tok.json"),
        "train": _write(tmp_path / "train.jsonl", train),
        "val": _write(tmp_path / "val.jsonl", val),
    }
    out = tmp_path / "run"
    config = _fit_config(out, files, "mmseq.data.modules.SummarizationDataModule", "val/rougeL")
    assert run_cli(["fit", "--config", write_config(tmp_path / "fit.yaml", config)]) == 0
    rows = read_metrics(out)
    last = [r for r in rows if "val/rougeL" in r][-1]
    assert {"val/rouge1", "val/rouge2", "val/lead_rougeL"} <= last.keys()
    # the lead of these documents, "The tool number N for", is scored on the same packages
    lead = text_metrics(
        lead_baseline([d["source"] for d in val], 5), [[d["target"]] for d in val], "summarization"
    )
    assert float(last["val/lead_rougeL"]) == pytest.approx(lead["rougeL"], abs=1e-6)


def test_a_multitask_run_with_one_text_part_reports_translation_metrics() -> None:
    """A MultiTaskDataModule with only its text part set names no stream (one loader): its
    metrics are still the part's (sacreBLEU/chrF), not the plain "text" set."""
    from types import SimpleNamespace

    from mmseq.training.module import Seq2SeqModule

    text = TextDataModule(metrics="translation")
    datamodule = SimpleNamespace(parts={"text": text}, names=lambda split: ["text"])
    module = SimpleNamespace(trainer=SimpleNamespace(datamodule=datamodule))
    assert Seq2SeqModule._stream_module(module, "val", "") is text
    assert Seq2SeqModule._stream_module(module, "val", "text") is text
    datamodule.names = lambda split: ["caption", "text"]
    assert Seq2SeqModule._stream_module(module, "val", "") is None


def test_max_new_tokens_beyond_the_decoder_is_refused_when_the_module_is_built(
    tmp_path: Path,
) -> None:
    from mmseq.training.module import Seq2SeqModule

    files = _translation(tmp_path)
    model = {"text": {"n_ctx": 32, "n_layers": 1, "block": BLOCK}}
    model["decoder"] = {"n_ctx": 32, "n_layers": 1, "block": BLOCK}
    # <s> <|task|> + 31 new tokens fill 32 positions (the last token is never fed back)
    Seq2SeqModule(files["tokenizer"], model, max_new_tokens=31)
    with pytest.raises(ValueError, match=r"max_new_tokens: 32 does not fit .* at most 31 new"):
        Seq2SeqModule(files["tokenizer"], model, max_new_tokens=32)

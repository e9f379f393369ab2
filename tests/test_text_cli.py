"""TextGenerator and `mmseq translate` / `mmseq summarize` on tiny random models that carry
real SentencePiece tokenizers (trained on Debian's gettext strings): the same text as
transformers' tokenizer + generate + decode, input order and empty lines kept, bad input
refused with the file and line named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from text_fixtures import gettext_strings, make_tokenizer_folder

from mmseq.cli import main
from mmseq.errors import CheckpointError
from mmseq.text.generator import TextGenerator

_BART_SHAPE = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
    "init_std": 0.2,
}
_T5_SHAPE = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1}


def _model_folder(kind: str, folder: Path, generation: dict, **config) -> Path:
    """A tokenizer folder of `kind` plus a random model whose vocabulary covers it."""
    import transformers
    from transformers import AutoTokenizer

    make_tokenizer_folder(kind, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    vocab = {"vocab_size": len(tok)}
    if kind == "marian":
        special = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id}
        special["decoder_start_token_id"] = tok.pad_token_id
        marian = {"activation_function": "swish", "scale_embedding": True}
        cfg = transformers.MarianConfig(**vocab, **_BART_SHAPE, **special, **marian, **config)
        model = transformers.MarianMTModel(cfg)
    elif kind == "mbart":
        cfg = transformers.MBartConfig(**vocab, **_BART_SHAPE, **config)
        model = transformers.MBartForConditionalGeneration(cfg)
    else:
        cfg = transformers.T5Config(**vocab, **_T5_SHAPE, decoder_start_token_id=0, **config)
        model = transformers.T5ForConditionalGeneration(cfg)
    with torch.no_grad():
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias[0, tok.eos_token_id] += 2.0
    model.eval().save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("marian")
    make_tokenizer_folder("marian", folder)
    from transformers import AutoTokenizer

    pad = AutoTokenizer.from_pretrained(folder).pad_token_id
    generation = {
        "decoder_start_token_id": pad,
        "eos_token_id": 0,
        "pad_token_id": pad,
        "bad_words_ids": [[pad]],
        "max_length": 12,
        "num_beams": 2,
    }
    return _model_folder("marian", folder, generation)


@pytest.fixture(scope="module")
def t5_summarizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("t5")
    params = {"summarization": {"prefix": "summarize: ", "max_length": 10, "num_beams": 2}}
    generation = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
    return _model_folder("t5", folder, generation, task_specific_params=params)


def test_generator_equals_transformers_text(marian: Path) -> None:
    """Batched by length and restored, with the checkpoint's beams (2): the strings that
    transformers' tokenizer + generate (one input at a time) + decode give."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    texts = gettext_strings(24, seed=5)
    texts[3] = ""  # an empty line stays empty, without running the model
    ours = TextGenerator(marian).generate(texts, batch_size=7)
    tok = AutoTokenizer.from_pretrained(marian)
    hf = AutoModelForSeq2SeqLM.from_pretrained(marian).eval()
    expected = []
    for text in texts:
        if not text:
            expected.append("")
            continue
        out = hf.generate(**tok(text, return_tensors="pt"))
        expected.append(tok.decode(out[0], skip_special_tokens=True))
    assert ours == expected
    assert sum(bool(t) for t in ours) > 10


def test_compiled_decoding_gives_the_eager_text(marian: Path, tmp_path: Path, capsys) -> None:
    """`compile=True` (`--compile`): torch.compile of the fixed-shape decoding step, batches of
    several source lengths and sizes, greedy and beam search: the eager strings. int8 is
    refused, as a usage error on the command line."""
    from torch._dynamo.utils import counters

    texts = gettext_strings(12, seed=9)
    eager = TextGenerator(marian)
    compiled = TextGenerator(marian, compile=True)
    graphs = counters["stats"]["unique_graphs"]
    for beams in (1, 3):
        expected = eager.generate(texts, batch_size=5, num_beams=beams)
        assert compiled.generate(texts, batch_size=5, num_beams=beams) == expected
    assert sum(bool(t) for t in expected) > 6
    # the step and the output projection, static then dynamic: a few graphs, not one per step
    assert 2 <= counters["stats"]["unique_graphs"] - graphs <= 8
    with pytest.raises(ValueError, match="compile: not with compute_type int8"):
        TextGenerator(marian, compute_type="int8", compile=True)
    src = tmp_path / "in.txt"
    src.write_text("Open file\n", encoding="utf-8")
    args = ["translate", "--model", str(marian), "--compile", "--compute-type", "int8", str(src)]
    assert main(args) == 2
    assert "compile: not with compute_type int8" in capsys.readouterr().err


def test_mmseq_load_gives_a_text_generator(marian: Path) -> None:
    import mmseq

    loaded = mmseq.load(marian)
    assert isinstance(loaded, TextGenerator)
    texts = gettext_strings(4, seed=2)
    assert loaded.generate(texts) == TextGenerator(marian).generate(texts)


def test_translate_cli_keeps_lines_and_order(marian: Path, tmp_path: Path, capsys) -> None:
    lines = ["Open file", "", "Save the current document as a new file", "   ", "Quit"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["translate", "--model", str(marian), str(src), "-q", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out.split("\n")[:-1]
    assert len(out) == len(lines)
    assert out[1] == "" and out[3] == ""
    assert out == TextGenerator(marian).generate(lines)
    assert (
        main(
            [
                "translate",
                "--model",
                str(marian),
                str(src),
                "-q",
                "--output-format",
                "jsonl",
                "--beam-size",
                "1",
            ]
        )
        == 0
    )
    rows = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["file"] == str(src) and "score" in r for r in rows)


def test_translate_reads_stdin(marian: Path, monkeypatch, capsys) -> None:
    import io
    import sys

    data = b"Print\n\nCancel\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["translate", "--model", str(marian), "-q"]) == 0
    assert len(capsys.readouterr().out.split("\n")[:-1]) == 3


def test_hard_text_round_trips_without_a_crash(marian: Path) -> None:
    texts = [
        "a\x00b\x07c\x1b[31mred",
        "👩‍💻 dev 🇫🇷",
        "שלום עולם",
        "مرحبا بالعالم",
        "e\u0301te\u0301 \u200b zero\ufeffwidth",
        "\t\t",
    ]
    results = TextGenerator(marian).results(texts)
    assert len(results) == len(texts) and results[-1].text == ""


def test_a_huge_line_is_truncated_with_one_warning(marian: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "huge.txt"
    src.write_text("Hello\n" + "word " * 200_000 + "\nBye\n", encoding="utf-8")  # 1 MB line
    assert main(["translate", "--model", str(marian), str(src), "-q"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.split("\n")[:-1]) == 3
    assert captured.err.count("were truncated") == 1
    assert "1 input(s) longer than the model's 64 source tokens" in captured.err


def test_non_utf8_input_names_file_and_line(marian: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "latin1.txt"
    src.write_bytes("ok\nstill ok\ncaf\xe9\n".encode("latin-1"))
    assert main(["translate", "--model", str(marian), str(src)]) == 2
    assert f"{src}: line 3: not UTF-8 text" in capsys.readouterr().err


def test_a_folder_that_is_no_model_lists_the_layouts(tmp_path: Path, capsys) -> None:
    with pytest.raises(CheckpointError, match="not a Hugging Face model folder"):
        TextGenerator(tmp_path)
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    assert main(["translate", "--model", str(tmp_path / "nope"), str(src)]) == 2
    assert "expected a Hugging Face folder" in capsys.readouterr().err


def test_language_options_are_checked(marian: Path) -> None:
    with pytest.raises(ValueError, match=r"has no >>xx<< token"):
        TextGenerator(marian, target_lang="xx")
    with pytest.raises(ValueError, match=r"--source-lang: .* reads the source language"):
        TextGenerator(marian, source_lang="en")


def test_mbart_target_language_is_forced_as_bos(tmp_path: Path) -> None:
    """mBART: --target-lang fr_XX forces that code as the first generated token, as
    transformers' generate(forced_bos_token_id=...) does."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    generation = {
        "decoder_start_token_id": 2,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "forced_eos_token_id": 2,
        "max_length": 10,
    }
    folder = _model_folder("mbart", tmp_path / "mbart", generation)
    tok = AutoTokenizer.from_pretrained(folder)
    hf = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    code = tok.convert_tokens_to_ids("fr_XX")
    generator = TextGenerator(folder, target_lang="fr_XX")
    texts = gettext_strings(6, seed=3)
    results = generator.results(texts)
    for text, result in zip(texts, results, strict=True):
        inputs = tok(text, return_tensors="pt", truncation=True, max_length=64)
        expected = hf.generate(**inputs, forced_bos_token_id=code)[0]
        assert result.tokens[0] == code
        assert [2, *result.tokens] == [t for t in expected.tolist() if t != 1][
            : len(result.tokens) + 1
        ]
    with pytest.raises(ValueError, match="--target-lang xx_YY: not a token"):
        TextGenerator(folder, target_lang="xx_YY")


def test_summarize_uses_the_models_prefix_and_splits(t5_summarizer: Path, tmp_path, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("First paragraph,\nstill first.\n\nSecond paragraph.\n", encoding="utf-8")
    args = ["summarize", "--model", str(t5_summarizer), str(doc), "-q"]
    assert main([*args, "--split", "paragraph", "--output-format", "jsonl"]) == 0
    rows = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["index"]) for r in rows] == [(str(doc), 1), (str(doc), 2)]
    generator = TextGenerator(t5_summarizer, task="summarization")
    assert generator.text_prefix == "summarize: "
    expected = generator.generate(["First paragraph, still first.", "Second paragraph."])
    assert [r["summary"] for r in rows] == expected
    assert main([*args, "--split", "file"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_a_checkpoint_trained_by_mmseq_fit_translates(tmp_path: Path, capsys) -> None:
    """A text-to-text `.ckpt` (the layout `mmseq fit` writes): sources encoded as the training
    collator does (ids + EOS), decoding from the tokenizer's prefix, as mmseq.generation does."""
    from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry
    from mmseq.data.tokenizer import train_bpe
    from mmseq.decoder import DecoderConfig
    from mmseq.encoders import TextEncoderConfig
    from mmseq.generation import GenerationConfig, generate
    from mmseq.model import EncoderDecoder, ModelConfig
    from mmseq.nn import BlockConfig

    texts = gettext_strings(200, seed=1)
    tokenizer = train_bpe(texts, vocab_size=300)
    block = BlockConfig(d_model=32, n_heads=2, d_ff=64)
    vocab = tokenizer.vocab_size
    config = ModelConfig(
        text=TextEncoderConfig(vocab_size=vocab, n_ctx=256, n_layers=1, block=block),
        decoder=DecoderConfig(vocab_size=vocab, n_ctx=16, n_layers=1, block=block),
    )
    torch.manual_seed(0)
    model = EncoderDecoder(config).eval()
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    entry = checkpoint_entry(config, tokenizer, {"text": "translate"})
    path = tmp_path / "text.ckpt"
    torch.save({"state_dict": state, "mmseq": entry}, path)

    sources = [" ".join(t.split()) for t in texts[:5]]  # one line each, for the CLI's file
    ours = TextGenerator(path).generate(sources, max_new_tokens=6)
    prefix = tokenizer.prefix("translate")
    expected = []
    for text in sources:
        ids = torch.tensor([tokenizer.encode(text) + [tokenizer.eos_id]])
        config = GenerationConfig(
            max_new_tokens=6, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id
        )
        out = generate(model, "text", ids, prefix, config)
        expected.append(tokenizer.decode(out.sequences[0, 0, len(prefix) :].tolist()))
    assert ours == expected and any(ours)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sources) + "\n")
    assert main(["translate", "--model", str(path), str(src), "-q", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == expected

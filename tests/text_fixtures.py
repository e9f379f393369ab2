"""Tokenizer folders for the text seq2seq families, built offline from the machine's own text.

No real T5, BART, mBART, MarianMT or Pegasus tokenizer can be downloaded in the tests, so this
module trains small ones on the Debian gettext catalogs (English message ids and their French
translations, /usr/share/locale/fr/LC_MESSAGES/*.mo) and saves them with transformers' own
classes, so that each folder holds what the Hugging Face hub would: tokenizer.json with
tokenizer_config.json (T5, BART, mBART, Pegasus), or source.spm / target.spm / vocab.json
(Marian).

- `gettext_pairs()`: every (English msgid, French msgstr) of the French catalogs, sorted.
- `gettext_strings(n, seed)`: n distinct strings, stratified so that %s placeholders, newlines,
  digits, punctuation and non-ASCII text are all present.
- `make_tokenizer_folder(kind, folder)`: writes the tokenizer of a family into `folder`.
- `tokenizer_folder(kind)`: the same, built once per process in a temporary directory.
- `marian_dropped_pieces(folder)`: the source pieces the Marian vocab.json leaves out.

Everything is deterministic (sorted catalogs, seeded sampling, single-threaded SentencePiece
training); the models are trained once per process (a few seconds in all) and cached.

transformers is imported only inside the builders: it is a test dependency of mmseq, never a
runtime one.
"""

from __future__ import annotations

import atexit
import functools
import gettext
import json
import random
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

KINDS = ("t5", "bart", "mbart", "marian", "pegasus")
LOCALE_DIR = Path("/usr/share/locale")
MARIAN_LANGUAGE_CODES = (">>fr<<", ">>es<<", ">>it<<", ">>pt<<")
# Pieces of the Marian source model deliberately left out of vocab.json, so that the
# "piece not in vocab.json -> <unk>" path is exercised: a real opus-mt vocabulary is built from
# the training corpus and may lack pieces of its SentencePiece models.
MARIAN_DROPPED_PIECES = 5


def marian_dropped_pieces(folder: Path) -> set[str]:
    """The pieces of the Marian folder's source.spm that its vocab.json lacks."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(folder) / "source.spm"))
    vocab = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
    pieces = (sp.id_to_piece(i) for i in range(sp.get_piece_size()))
    return {p for i, p in enumerate(pieces) if p not in vocab and not sp.is_control(i)} - {"<unk>"}


_SPM_VOCAB = 1500
_CORPUS_PAIRS = 5000


@functools.cache
def gettext_pairs() -> tuple[tuple[str, str], ...]:
    """(English msgid, French msgstr) of the French catalogs of `DEFAULT_DOMAINS` (the packages
    `make catalogs` installs: other software, such as the GTK that the browser test's chromium
    brings, must not change the strings the tests draw), first translation of each msgid kept,
    sorted by msgid. Plural entries and the header are left out."""
    from mmseq.data.gettext_corpus import DEFAULT_DOMAINS

    pairs: dict[str, str] = {}
    catalogs = LOCALE_DIR.glob("fr/LC_MESSAGES/*.mo")
    for path in sorted(p for p in catalogs if p.stem in DEFAULT_DOMAINS):
        try:
            with path.open("rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog  # msgid -> msgstr
        except (OSError, ValueError, struct.error):  # bad magic, unknown charset
            continue
        for msgid, msgstr in catalog.items():
            if isinstance(msgid, str) and msgid.strip() and isinstance(msgstr, str) and msgstr:
                pairs.setdefault(msgid, msgstr)
    return tuple(sorted(pairs.items()))


_FEATURES = (
    lambda s: "%s" in s or "%d" in s,
    lambda s: "\n" in s,
    lambda s: any(c.isdigit() for c in s),
    lambda s: any(ord(c) > 127 for c in s),
    lambda s: any(c in "()[]{}<>\"'`:;!?/\\|*#&@=+-_" for c in s),
)


def gettext_strings(n: int, seed: int = 0, *, french: bool = False) -> list[str]:
    """`n` distinct strings from the catalogs in a seeded order: English msgids, or their French
    translations with `french=True` (accents, non-breaking spaces, typographic quotes).

    A tenth of `n` is taken, where available, from each of: strings with a %s/%d placeholder,
    with a newline, with a digit, with non-ASCII text, with punctuation; the rest at random.
    """
    pairs = gettext_pairs()
    pool = sorted({pair[1 if french else 0] for pair in pairs})
    if len(pool) < n:
        raise ValueError(
            f"the gettext catalogs under {LOCALE_DIR} hold {len(pool)} strings, not {n}"
        )
    rng = random.Random(seed)
    rng.shuffle(pool)
    chosen: dict[str, None] = {}
    for feature in _FEATURES:
        matching = [s for s in pool if feature(s) and s not in chosen]
        chosen.update(dict.fromkeys(matching[: n // 10]))
    for s in pool:
        if len(chosen) >= n:
            break
        chosen.setdefault(s)
    strings = list(chosen)[:n]
    rng.shuffle(strings)
    return strings


def _corpus(side: str) -> list[str]:
    """Training lines: English ("en"), French ("fr") or both ("both") sides of a fixed sample of
    the catalogs, one line per string (newlines inside messages become spaces)."""
    pairs = list(gettext_pairs())
    random.Random(1234).shuffle(pairs)
    pairs = pairs[:_CORPUS_PAIRS]
    sides = {"en": (0,), "fr": (1,), "both": (0, 1)}[side]
    return [" ".join(pair[i].split()) for pair in pairs for i in sides]


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="mmseq-text-fixtures-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def sentencepiece_model(layout: str, side: str = "both") -> bytes:
    """A serialized SentencePiece unigram model of ~1500 pieces trained on the catalogs.

    layout "t5": <pad>=0, </s>=1, <unk>=2, no <s> (T5 and Pegasus);
    layout "fairseq": <unk>=0, <s>=1, </s>=2, no <pad> (mBART, Marian).
    """
    import sentencepiece

    ids = {
        "t5": {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1},
        "fairseq": {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1},
    }[layout]
    work = _workdir() / f"spm-{layout}-{side}"
    work.mkdir(exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(_corpus(side)) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "m"),
        vocab_size=_SPM_VOCAB,
        model_type="unigram",
        character_coverage=0.9995,  # the rarest characters stay unknown: <unk> is exercised
        num_threads=1,  # deterministic
        minloglevel=2,
        **ids,
    )
    return (work / "m.model").read_bytes()


@functools.cache
def byte_level_bpe() -> tuple[str, str]:
    """(vocab.json, merges.txt) contents of a byte-level BPE of 2000 tokens trained on the
    catalogs, with BART's special tokens <s>=0, <pad>=1, </s>=2, <unk>=3 first and <mask> last."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _corpus("both"),
        vocab_size=2000,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
    )
    work = _workdir() / "bpe"
    work.mkdir(exist_ok=True)
    bpe.save_model(str(work))
    vocab = json.loads((work / "vocab.json").read_text(encoding="utf-8"))
    vocab["<mask>"] = len(vocab)
    return json.dumps(vocab, ensure_ascii=False), (work / "merges.txt").read_text(encoding="utf-8")


def make_tokenizer_folder(kind: str, folder: Path) -> Path:
    """Writes the tokenizer of family `kind` ("t5", "bart", "mbart", "marian", "pegasus") into
    `folder` (created if needed) with transformers' `save_pretrained`, and returns `folder`.

    Vocabulary sizes: t5 1600 (1500 pieces + 100 <extra_id_N>), pegasus 1603 (offset 103),
    mbart 1527 (+ 25 language codes and <mask>), bart 2001, marian 2511 (the union of the
    English source and French target pieces, 4 language codes, <pad> last).

    "marian-separate" (not in KINDS) is Marian with `separate_vocabs`: vocab.json for the
    English source, target_vocab.json for the French target.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    builders = {
        "t5": _save_t5,
        "pegasus": _save_pegasus,
        "mbart": _save_mbart,
        "bart": _save_bart,
        "marian": _save_marian,
        "marian-separate": functools.partial(_save_marian, separate_vocabs=True),
    }
    if kind not in builders:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {tuple(builders)}")
    builders[kind](folder)
    return folder


@functools.cache
def tokenizer_folder(kind: str) -> Path:
    """The folder of `make_tokenizer_folder(kind, ...)`, built once per process. Read-only by
    convention: copy it before adding files."""
    return make_tokenizer_folder(kind, _workdir() / f"tokenizer-{kind}")


def _spm_file(layout: str, side: str = "both") -> Path:
    path = _workdir() / f"{layout}-{side}.model"
    if not path.exists():
        path.write_bytes(sentencepiece_model(layout, side))
    return path


def _from_spm(cls, vocab_name: str, layout: str, **kwargs):
    """transformers' `cls.from_pretrained` on a folder holding only the SentencePiece model,
    as a hub repository that has no tokenizer.json yet."""
    src = _workdir() / f"src-{cls.__name__}"
    src.mkdir(exist_ok=True)
    shutil.copyfile(_spm_file(layout), src / vocab_name)
    return cls.from_pretrained(str(src), **kwargs)


def _save_t5(folder: Path) -> None:
    from transformers import T5TokenizerFast

    _from_spm(T5TokenizerFast, "spiece.model", "t5", extra_ids=100).save_pretrained(folder)


def _save_pegasus(folder: Path) -> None:
    from transformers import PegasusTokenizerFast

    _from_spm(PegasusTokenizerFast, "spiece.model", "t5").save_pretrained(folder)


def _save_mbart(folder: Path) -> None:
    from transformers import MBartTokenizerFast

    tok = _from_spm(
        MBartTokenizerFast, "sentencepiece.bpe.model", "fairseq", src_lang="en_XX", tgt_lang="fr_XX"
    )
    tok.save_pretrained(folder)


def _save_bart(folder: Path) -> None:
    from transformers import BartTokenizerFast

    vocab, merges = byte_level_bpe()
    src = _workdir() / "src-bart"
    src.mkdir(exist_ok=True)
    (src / "vocab.json").write_text(vocab, encoding="utf-8")
    (src / "merges.txt").write_text(merges, encoding="utf-8")
    BartTokenizerFast.from_pretrained(str(src)).save_pretrained(folder)


def _marian_vocabs(source: Path, target: Path, separate: bool) -> list[dict[str, int]]:
    """vocab.json as the opus-mt conversion writes it: Marian's joint vocabulary (</s> 0,
    <unk> 1, then the pieces of both models) with <pad> appended last; or, with `separate`,
    one vocabulary per side (<pad> at 2 in both, so that its id is shared)."""
    import sentencepiece

    models = [sentencepiece.SentencePieceProcessor(model_file=str(p)) for p in (source, target)]
    pieces = [
        [
            sp.id_to_piece(i)
            for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))
        ]
        for sp in models
    ]
    target_pieces = set(pieces[1])
    source_only = [p for p in pieces[0] if p not in target_pieces and len(p) > 3]
    step = len(source_only) // MARIAN_DROPPED_PIECES
    dropped = set(source_only[step // 2 :: step][:MARIAN_DROPPED_PIECES])
    sides = [[*pieces[0], *pieces[1]]] if not separate else pieces
    vocabs = []
    for side, side_pieces in enumerate(sides):
        vocab = {"</s>": 0, "<unk>": 1}
        if separate:
            vocab["<pad>"] = 2
        if side == 0:
            vocab.update((code, len(vocab) + i) for i, code in enumerate(MARIAN_LANGUAGE_CODES))
        for piece in side_pieces:
            if piece not in vocab and piece not in dropped:
                vocab[piece] = len(vocab)
        vocab.setdefault("<pad>", len(vocab))
        vocabs.append(vocab)
    return vocabs


def _save_marian(folder: Path, separate_vocabs: bool = False) -> None:
    from transformers import MarianTokenizer

    src = _workdir() / f"src-marian-{separate_vocabs}"
    src.mkdir(exist_ok=True)
    source, target = src / "source.spm", src / "target.spm"
    source.write_bytes(sentencepiece_model("fairseq", "en"))
    target.write_bytes(sentencepiece_model("fairseq", "fr"))
    vocab_files = [src / "vocab.json", src / "target_vocab.json"]
    vocabs = _marian_vocabs(source, target, separate_vocabs)  # one or two
    for path, vocab in zip(vocab_files, vocabs, strict=False):
        path.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tok = MarianTokenizer(
            source_spm=str(source),
            target_spm=str(target),
            vocab=str(vocab_files[0]),
            target_vocab_file=str(vocab_files[1]) if separate_vocabs else None,
            separate_vocabs=separate_vocabs,
            source_lang="en",
            target_lang="fr",
        )
    tok.save_pretrained(folder)

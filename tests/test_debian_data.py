"""The Debian text corpora: `mmseq data make-translation` (gettext catalogs) and
`make-summarization` (package descriptions), on small synthetic catalogs and apt indexes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from mmseq.cli import main
from mmseq.data.corpus_files import SPLITS, split_groups
from mmseq.data.debian_descriptions import document, make_summarization
from mmseq.data.errors import DataError
from mmseq.data.gettext_corpus import make_translation, strip_mnemonics
from mmseq.data.text_pairs import TextPairDataset

HEADER = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n > 1);\n"


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo catalog: msgid -> msgstr; plurals as "one\\0many" on both sides, contexts as
    "ctx\\x04msgid" (the format gettext.GNUTranslations reads: header, two offset tables)."""
    items = sorted((k.encode(), v.encode()) for k, v in {"": HEADER, **messages}.items())
    n = len(items)
    originals, translations = 28, 28 + 8 * n
    offset = 28 + 16 * n
    blob, tables = b"", [b"", b""]
    for side in (0, 1):
        for item in items:
            tables[side] += struct.pack("<2I", len(item[side]), offset + len(blob))
            blob += item[side] + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, originals, translations, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + tables[0] + tables[1] + blob)


def catalog(domain: str) -> dict[str, str]:
    """Messages every synthetic catalog has, some made unique by the domain name."""
    return {
        f"Open the {domain} file": f"Ouvrir le fichier {domain}",
        f"Read the {domain} settings": f"Lire les réglages de {domain}",
        f"%d {domain} item\0%d {domain} items": f"%d élément {domain}\0%d éléments {domain}",
        f"menu\x04Quit {domain}": f"Quitter {domain}",
        f"Line one of {domain}\n  and line two": f"Ligne un de {domain}\net ligne deux",
        "Save the file": "Enregistrer le fichier",  # the same pair in every catalog
        "Close": f"Fermer ({domain})",  # the same source, another target per catalog
        "Cancel": "Cancel",  # untranslated
        "%s: %s": "%s : %s",  # placeholders only
        "Blank": "   ",
        "Long " + "word " * 100: "Long " + "mot " * 100,
    }


DOMAINS = ["sed", "grep", "tar", "bash", "make", "wget", "extra-not-default"]


@pytest.fixture
def locale_dir(tmp_path: Path) -> Path:
    root = tmp_path / "locale"
    for domain in DOMAINS:
        write_mo(root / "fr/LC_MESSAGES" / f"{domain}.mo", catalog(domain))
        de = {
            k: v.replace("Ouvrir le fichier", "Öffne die Datei") for k, v in catalog(domain).items()
        }
        write_mo(root / "de/LC_MESSAGES" / f"{domain}.mo", de)
    os.symlink("sed.mo", root / "fr/LC_MESSAGES/sed_alias.mo")
    (root / "fr/LC_MESSAGES/broken.mo").write_bytes(b"this is not a catalog")
    return root


def read_split(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_translation_cleans_splits_and_is_deterministic(locale_dir: Path, tmp_path: Path) -> None:
    stats = make_translation(tmp_path / "a", target="fr", locale_dir=locale_dir, all_catalogs=True)
    make_translation(tmp_path / "b", target="fr", locale_dir=locale_dir, all_catalogs=True)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    rows = {name: read_split(tmp_path / "a", name) for name in SPLITS}
    assert all(rows.values()), "train, val and test all hold pairs"
    catalogs = {name: {r["id"].split(":")[0] for r in rows[name]} for name in SPLITS}
    assert not (catalogs["train"] & catalogs["val"] or catalogs["train"] & catalogs["test"])
    assert not catalogs["val"] & catalogs["test"]
    train_sources = {r["source"] for r in rows["train"]}
    assert not train_sources & {r["source"] for r in rows["val"] + rows["test"]}
    pairs = {(r["source"], r["target"]) for r in rows["train"]}
    sed = {r["source"]: r["target"] for name in SPLITS for r in rows[name] if "sed" in r["id"]}
    assert sed["%d sed item"] == "%d élément sed"  # plural: singular forms
    assert sed["Quit sed"] == "Quitter sed"  # context dropped
    assert sed["Line one of sed and line two"] == "Ligne un de sed et ligne deux"
    sources = {s for s, _ in pairs} | {r["source"] for name in SPLITS for r in rows[name]}
    assert not sources & {"Cancel", "%s: %s", "Blank", ""} and not any("Long" in s for s in sources)
    all_pairs = [(r["source"], r["target"]) for name in SPLITS for r in rows[name]]
    assert (
        len(all_pairs) == len(set(all_pairs))
        and all_pairs.count(("Save the file", "Enregistrer le fichier")) == 1
    )
    # stats: languages, aliases, the corrupt catalog, drop reasons, per-split figures
    assert (stats["source_language"], stats["target_language"]) == ("en", "fr")
    assert stats["aliases_skipped"] == {"sed_alias": "sed"}
    assert "broken" in stats["unreadable_catalogs"]
    n = len(DOMAINS)
    assert stats["dropped"]["untranslated"] == n and stats["dropped"]["no_letters"] == n
    assert stats["dropped"]["empty"] == n and stats["dropped"]["too_long"] == n
    n_train = len(catalogs["train"])  # "Save the file" repeats in train; held out, it and
    assert stats["dropped"]["duplicate"] == n_train - 1  # "Close" are dropped as seen in train
    assert stats["dropped"]["source_in_earlier_split"] == 2 * (n - n_train)
    for name in SPLITS:
        assert stats["splits"][name]["pairs"] == len(rows[name])
        assert stats["splits"][name]["catalogs"] == sorted(catalogs[name])
        assert stats["splits"][name]["source_chars"] == sum(len(r["source"]) for r in rows[name])
    assert len(TextPairDataset(tmp_path / "a" / "train.jsonl")) == len(rows["train"])


def test_translation_default_domains_and_other_source(locale_dir: Path, tmp_path: Path) -> None:
    stats = make_translation(tmp_path / "d", target="fr", locale_dir=locale_dir)
    used = {c for split in stats["splits"].values() for c in split["catalogs"]}
    assert used == set(DOMAINS) - {"extra-not-default"}
    assert "coreutils" in stats["default_catalogs_not_installed"]
    stats = make_translation(tmp_path / "x", "de", "fr", locale_dir=locale_dir, all_catalogs=True)
    rows = [r for name in SPLITS for r in read_split(tmp_path / "x", name)]
    assert ("Öffne die Datei sed", "Ouvrir le fichier sed") in {
        (r["source"], r["target"]) for r in rows
    }


def test_translation_bad_input(locale_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(DataError, match="languages with catalogs.*de fr"):
        make_translation(tmp_path / "o", target="xx", locale_dir=locale_dir)
    empty = tmp_path / "empty"
    write_mo(empty / "fr/LC_MESSAGES/only-fr.mo", {"Yes": "Oui"})
    write_mo(empty / "de/LC_MESSAGES/only-de.mo", {"Yes": "Ja"})
    with pytest.raises(DataError, match="no catalog domain exists for both"):
        make_translation(tmp_path / "o", "de", "fr", locale_dir=empty, all_catalogs=True)
    argv = ["data", "make-translation", "--target", "xx", "--locale-dir", str(locale_dir)]
    assert main([*argv, str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmseq: error:") and "Traceback" not in err


def test_mnemonics_are_stripped_only_when_safe() -> None:
    assert strip_mnemonics("_Save", "_Enregistrer")[:2] == ("Save", "Enregistrer")
    assert strip_mnemonics("De_lete", "_Supprimer")[:2] == ("Delete", "Supprimer")
    assert not strip_mnemonics("pam_item failed", "échec de pam_item")[2]  # an identifier
    assert not strip_mnemonics("__ep symbol", "symbole __ep")[2]
    assert not strip_mnemonics("_Save", "Enregistrer")[2]


def test_split_groups_keeps_groups_whole() -> None:
    sizes = {f"g{i}": 10 + i for i in range(40)}
    split = split_groups(sizes, 0.04)
    assert split == split_groups(dict(reversed(sizes.items())), 0.04)
    for name in ("val", "test"):
        share = sum(sizes[g] for g, s in split.items() if s == name)
        assert 0 < share <= 0.04 * sum(sizes.values())
    split = split_groups({"huge": 1000, "big": 900, "a": 100}, 0.04)  # none fits: the smallest
    assert split == {"huge": "train", "big": "test", "a": "val"}


# --- summarisation -------------------------------------------------------------------------


def stanza(package: str, synopsis: str, lines: list[str]) -> str:
    text = "\n".join(f"Description-en: {synopsis}".split("\n") + [f" {line}" for line in lines])
    md5 = hashlib.md5((synopsis + "\n" + "\n".join(lines)).encode()).hexdigest()
    return f"Package: {package}\nDescription-md5: {md5}\n{text}\n"


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "lists"
    folder.mkdir()
    translations, packages = [], []
    for s in range(12):
        for suffix in ("", "-doc", "-dev"):
            package = f"src{s}{suffix}"
            body = [f"Tool number {s} does{suffix or ' the'} work", "in many ways", "and well."]
            translations.append(stanza(package, f"tool {s}{suffix}", body))
            source = {0: f"src{s} (1.{s}-1)", 1: f"src{s}"}.get(s % 3)  # s % 3 == 2: no Source
            if suffix and source is None:
                source = f"src{s}"
            packages.append(f"Package: {package}\n" + (f"Source: {source}\n" if source else ""))
    translations.append(stanza("short", "too short", ["one line", "two lines"]))
    listing = ["Features:", " * fast", "   and small", " * safe", ".", "More text", "here."]
    translations.append(stanza("listy", "has a list", listing))
    (folder / "x_dists_main_i18n_Translation-en").write_text("\n".join(translations))
    again = stanza("src3", "tool 3", ["Tool number 3 does the work", "in many ways", "and well."])
    with gzip.open(folder / "x_dists_updates_main_i18n_Translation-en.gz", "wt") as f:
        f.write(again)  # the same description in a second index: kept once
    (folder / "x_dists_main_binary-amd64_Packages").write_text("\n".join(packages))
    (folder / "x_dists_main_InRelease").write_text("Origin: Test\nDate: Sat, 11 Jul 2026\n")
    return folder


def test_summarization_splits_by_source_and_is_deterministic(
    lists_dir: Path, tmp_path: Path
) -> None:
    stats = make_summarization(tmp_path / "a", lists_dir=lists_dir)
    make_summarization(tmp_path / "b", lists_dir=lists_dir)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    rows = {name: read_split(tmp_path / "a", name) for name in SPLITS}
    assert all(rows.values())
    source_of = {f"src{s}{x}": f"src{s}" for s in range(12) for x in ("", "-doc", "-dev")}
    source_of["listy"] = "listy"
    groups = {name: {source_of[r["id"]] for r in rows[name]} for name in SPLITS}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"])
    assert not groups["val"] & groups["test"]
    ids = [r["id"] for name in SPLITS for r in rows[name]]
    assert sorted(ids) == sorted(source_of) and "short" not in ids  # 3+ lines only, each once
    assert stats["dropped"]["fewer_lines"] == 1 and stats["dropped"]["duplicate_description"] == 1
    assert stats["dropped"]["source_unknown_used_package_name"] == 1  # listy
    assert stats["release_dates"] == {"x_dists_main_InRelease": "Sat, 11 Jul 2026"}
    assert stats["splits"]["train"]["median_synopsis_words"] > 0
    row = next(r for name in SPLITS for r in rows[name] if r["id"] == "src1-doc")
    assert row == {
        "id": "src1-doc",
        "source": "Tool number 1 does-doc work in many ways and well.",
        "target": "tool 1-doc",
    }
    assert len(TextPairDataset(tmp_path / "a" / "val.jsonl")) == len(rows["val"])


def test_document_keeps_paragraphs_and_lists() -> None:
    lines = ("Features:", " * fast", "   and small", " * safe", ".", "More text", "here.")
    assert document(lines) == "Features:\n* fast and small\n* safe\nMore text here."


def test_summarization_bad_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("mmseq.data.debian_descriptions.shutil.which", lambda name: None)
    with pytest.raises(DataError, match="apt-get not found"):
        make_summarization(tmp_path / "o")
    with pytest.raises(DataError, match="lists folder not found"):
        make_summarization(tmp_path / "o", lists_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Translation-en index"):
        make_summarization(tmp_path / "o", lists_dir=tmp_path / "empty")


REAL_FR = Path("/usr/share/locale/fr/LC_MESSAGES/coreutils.mo")


@pytest.mark.skipif(not REAL_FR.exists(), reason="no French catalogs installed (make catalogs)")
def test_real_catalogs_en_fr(tmp_path: Path) -> None:
    """The system's catalogs, where installed; the synthetic tests above are the proof."""
    stats = make_translation(tmp_path / "real", target="fr")
    assert sum(s["pairs"] for s in stats["splits"].values()) > 1000
    catalogs = [set(stats["splits"][name]["catalogs"]) for name in SPLITS]
    assert not (catalogs[0] & catalogs[1] or catalogs[0] & catalogs[2] or catalogs[1] & catalogs[2])

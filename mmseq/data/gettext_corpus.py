"""Parallel text from the gettext catalogs a Debian system installs (``mmseq data
make-translation``): `<locale dir>/<lang>/LC_MESSAGES/<domain>.mo`, read with Python's `gettext`.

The source side is the English msgid (or, for another source language, that language's msgstr
of the same message); the target is the msgstr of the target language's catalog of the same
domain. Pairs are cleaned (see `clean_pair`), deduplicated and split by catalog, so that no
catalog's messages are in two splits, and no held-out source sentence occurs in train.

By default only `DEFAULT_DOMAINS` are read: the catalogs of the packages that ``make catalogs``
installs (`CATALOG_PACKAGES` in the Makefile), so that other installed software does not change
the corpus; ``all_catalogs=True`` reads every catalog. Output: OUT/{train,val,test}.jsonl with
``{"id": "<domain>:<n>", "source", "target"}`` (`TextPairDataset`'s format) and OUT/stats.json.
"""

from __future__ import annotations

import gettext
import logging
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmseq.data.corpus_files import (
    SPLITS,
    prepare_out,
    split_groups,
    write_json_atomic,
    write_jsonl_atomic,
)
from mmseq.data.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_LOCALE_DIR = "/usr/share/locale"
DEFAULT_MAX_CHARS = 400
DEFAULT_HELD_OUT = 0.04

# The French and German catalogs of the packages in the Makefile's CATALOG_PACKAGES (Debian 12),
# found with `dpkg -S /usr/share/locale/{fr,de}/LC_MESSAGES/`. Aliases (iso_639_3 -> iso_639-3)
# are symlinks and skipped anyway. Update both lists together.
DEFAULT_DOMAINS = frozenset(
    """
    Linux-PAM PackageKit adduser appstream apt at-spi2-core avahi bash bfd binutils coreutils
    diffutils dpkg dpkg-dev elfutils findutils gas gdk-pixbuf gettext-runtime gettext-tools git
    glib20 gnupg2 gnutls30 gold gprof grep gsettings-desktop-schemas gstreamer-1.0 gtk20
    gtk20-properties initdb-15 iso_15924 iso_3166-1 iso_3166-2 iso_3166-3 iso_4217 iso_639-2
    iso_639-3 iso_639-5 ld libapt-pkg6.0 libc libidn2 libpq5-15 make man-db man-db-gnulib
    mit-krb5 net-tools opcodes pg_amcheck-15 pg_archivecleanup-15 pg_basebackup-15
    pg_checksums-15 pg_config-15 pg_controldata-15 pg_ctl-15 pg_dump-15 pg_resetwal-15
    pg_rewind-15 pg_test_fsync-15 pg_test_timing-15 pg_upgrade-15 pg_verifybackup-15
    pg_waldump-15 pgscripts-15 plpgsql-15 polkit-1 postgres-15 procps-ng psmisc psql-15
    python-apt sed shadow shared-mime-info software-properties systemd tar wget wget-gnulib
    xdg-user-dirs xkeyboard-config xz zvbi
    """.split()
)

_LETTER = re.compile(r"[^\W\d_]")
# Format placeholders carry letters (%s, %(name)d, {count}, <b>) that are not words.
_PLACEHOLDER = re.compile(
    r"%(?:\([^)]*\))?(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:hh|h|ll|l|L|q|j|z|t|I64)?[a-zA-Z%]"
    r"|\{[^{}]*\}|</?[A-Za-z][^<>]*>|&[a-z]+;"
)
# A GTK mnemonic: one underscore before a letter, as in "_File" or "A_nnuler".
_MNEMONIC = re.compile(r"_(?=[^\W\d_])")


@dataclass
class Corpus:
    """Cleaned pairs per domain, and what was dropped or skipped on the way."""

    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    unreadable: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    mnemonics_stripped: int = 0


def read_catalog(path: Path) -> dict[str, str]:
    """msgid (with its context as ``ctx\\x04msgid``) -> msgstr, singular form; no header.

    Python's `GNUTranslations` keys plural entries ``(msgid, n)``; form 0 stands for the entry.
    Raises DataError naming the file when it is not a readable .mo catalog.
    """
    try:
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # noqa: SLF001 - the only raw access
    except UnicodeDecodeError as err:  # gettext decodes the header as UTF-8 before its charset
        raise DataError(f"{path}: catalog header is not UTF-8 ({err.reason})") from None
    except (OSError, ValueError, struct.error, IndexError) as err:
        raise DataError(f"{path}: not a readable .mo catalog ({err})") from None
    messages = {}
    for key, value in catalog.items():
        if isinstance(key, tuple):
            if key[1] != 0:
                continue
            key = key[0]
        if key:
            messages[key] = value
    return messages


def without_context(msgid: str) -> str:
    return msgid.split("\x04", 1)[-1]


def normalise(text: str) -> str:
    """Every run of Unicode whitespace (newlines, tabs, no-break spaces) as one space."""
    return " ".join(text.split())


def strip_mnemonics(source: str, target: str) -> tuple[str, str, bool]:
    """Drop GTK keyboard accelerators ("_File" / "_Fichier") when it is safe: each side has
    exactly one underscore, before a letter, and the words holding them differ (the same word on
    both sides is an identifier such as "pam_item", not a mnemonic). KDE-style "&File" is left
    alone: "&" also writes entities and "R&D"."""
    if source.count("_") != 1 or target.count("_") != 1:
        return source, target, False
    if not (_MNEMONIC.search(source) and _MNEMONIC.search(target)):
        return source, target, False
    word = [next(w for w in text.split() if "_" in w) for text in (source, target)]
    if word[0] == word[1]:
        return source, target, False
    return source.replace("_", ""), target.replace("_", ""), True


def has_words(text: str) -> bool:
    return bool(_LETTER.search(_PLACEHOLDER.sub(" ", text)))


def clean_pair(source: str, target: str, max_chars: int) -> tuple[str, str, str | None]:
    """The cleaned pair and the reason to drop it (None to keep it)."""
    source, target = normalise(source), normalise(target)
    if not source or not target:
        return source, target, "empty"
    if not has_words(source) or not has_words(target):
        return source, target, "no_letters"
    if source == target:
        return source, target, "untranslated"
    if len(source) > max_chars or len(target) > max_chars:
        return source, target, "too_long"
    return source, target, None


def catalog_files(locale_dir: Path, language: str) -> dict[str, Path]:
    """domain -> .mo file of `language`; DataError listing the languages there if none."""
    folder = locale_dir / language / "LC_MESSAGES"
    files = {p.stem: p for p in sorted(folder.glob("*.mo"))} if folder.is_dir() else {}
    if not files:
        available = sorted(
            p.parent.name for p in locale_dir.glob("*/LC_MESSAGES") if any(p.glob("*.mo"))
        )
        raise DataError(
            f"{folder}: no gettext catalogs for language '{language}'; languages with catalogs "
            f"in {locale_dir}: {' '.join(available) or 'none'}"
        )
    return files


def find_aliases(files: dict[str, Path]) -> dict[str, str]:
    """Catalogs that are symlinks to another catalog of the same folder (iso-codes installs
    iso_639_3.mo -> iso_639-3.mo): alias -> domain, read once under the real name."""
    by_file = {path.resolve(): domain for domain, path in files.items() if not path.is_symlink()}
    aliases = {}
    for domain, path in files.items():
        real = by_file.get(path.resolve()) if path.is_symlink() else None
        if real is not None and real != domain:
            aliases[domain] = real
    return aliases


def read_corpus(
    locale_dir: Path,
    source: str,
    target: str,
    domains: frozenset[str] | None,
    max_chars: int,
) -> Corpus:
    """Cleaned, per-domain deduplicated pairs of the domains both languages have."""
    target_files = catalog_files(locale_dir, target)
    source_files = target_files if source == "en" else catalog_files(locale_dir, source)
    corpus = Corpus(aliases=find_aliases(target_files))
    common = sorted(set(target_files) & set(source_files) - set(corpus.aliases))
    if domains is not None:
        common = [d for d in common if d in domains]
    if not common:
        raise DataError(
            f"{locale_dir}: no catalog domain exists for both '{source}' and '{target}'"
            + (" among the default domains (--all-catalogs takes every one)" if domains else "")
        )
    for domain in common:
        try:
            messages = read_catalog(target_files[domain])
            originals = messages if source == "en" else read_catalog(source_files[domain])
        except DataError as err:
            log.warning("skipping a catalog: %s", err)
            corpus.unreadable[domain] = str(err)
            continue
        corpus.pairs[domain] = _domain_pairs(messages, originals, source == "en", max_chars, corpus)
    return corpus


def _domain_pairs(
    messages: dict[str, str],
    originals: dict[str, str],
    english: bool,
    max_chars: int,
    corpus: Corpus,
) -> list[tuple[str, str]]:
    pairs = set()
    for msgid in sorted(messages):
        if english:
            text = without_context(msgid)
        elif msgid in originals:
            text = originals[msgid]
        else:
            corpus.dropped["not_in_source_catalog"] += 1
            continue
        src, tgt, reason = clean_pair(text, messages[msgid], max_chars)
        if reason is None:
            src, tgt, stripped = strip_mnemonics(src, tgt)
            corpus.mnemonics_stripped += stripped
        if reason is None and (src, tgt) in pairs:
            reason = "duplicate"
        if reason:
            corpus.dropped[reason] += 1
        else:
            pairs.add((src, tgt))
    return sorted(pairs)


def make_translation(
    out: str | os.PathLike,
    source: str = "en",
    target: str = "fr",
    locale_dir: str | os.PathLike = DEFAULT_LOCALE_DIR,
    max_chars: int = DEFAULT_MAX_CHARS,
    all_catalogs: bool = False,
    held_out: float = DEFAULT_HELD_OUT,
) -> dict:
    """Write OUT/{train,val,test}.jsonl and OUT/stats.json; returns the stats."""
    if source == target:
        raise DataError(f"source and target language are both '{source}'")
    if max_chars < 1:
        raise DataError(f"--max-chars must be positive, got {max_chars}")
    locale_dir = Path(locale_dir)
    if not locale_dir.is_dir():
        raise DataError(f"{locale_dir}: locale folder not found")
    domains = None if all_catalogs else DEFAULT_DOMAINS
    corpus = read_corpus(locale_dir, source, target, domains, max_chars)
    unique = len({pair for pairs in corpus.pairs.values() for pair in pairs})
    split_of = split_groups({d: len(p) for d, p in corpus.pairs.items()}, held_out)
    rows = _split_rows(corpus, split_of)
    folder = prepare_out(out)
    for name in SPLITS:
        write_jsonl_atomic(folder / f"{name}.jsonl", rows[name])
    # A default domain without a catalog in any language is not installed; one that only lacks
    # this language's translation is not a problem.
    installed = {p.stem for p in locale_dir.glob("*/LC_MESSAGES/*.mo")}
    missing = sorted(domains - installed) if domains else []
    if missing:
        log.warning(
            "default catalogs not installed: %s (`make catalogs` installs them)", " ".join(missing)
        )
    stats = {
        "source_language": source,
        "target_language": target,
        "locale_dir": str(locale_dir),
        "catalogs": "all" if all_catalogs else "default (DEFAULT_DOMAINS)",
        "default_catalogs_not_installed": missing,
        "aliases_skipped": corpus.aliases,
        "unreadable_catalogs": corpus.unreadable,
        "max_chars": max_chars,
        "held_out_fraction": held_out,
        "unique_pairs": unique,
        "mnemonics_stripped": corpus.mnemonics_stripped,
        "dropped": dict(sorted(corpus.dropped.items())),
        "splits": {name: _split_stats(rows[name], split_of, name) for name in SPLITS},
    }
    write_json_atomic(folder / "stats.json", stats)
    return stats


def _split_rows(corpus: Corpus, split_of: dict[str, str]) -> dict[str, list[dict]]:
    """Rows per split, in domain then message order. A pair already in the split is dropped as a
    duplicate; a val or test pair whose source is in an earlier split (train, then val) is
    dropped so that held-out sentences are never seen in training."""
    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    earlier: set[str] = set()
    for name in SPLITS:
        seen: set[tuple[str, str]] = set()
        for domain in sorted(d for d in corpus.pairs if split_of[d] == name):
            for n, (src, tgt) in enumerate(corpus.pairs[domain], start=1):
                if (src, tgt) in seen:
                    corpus.dropped["duplicate"] += 1
                elif src in earlier:
                    corpus.dropped["source_in_earlier_split"] += 1
                else:
                    seen.add((src, tgt))
                    rows[name].append({"id": f"{domain}:{n}", "source": src, "target": tgt})
        earlier |= {src for src, _ in seen}
    return rows


def _split_stats(rows: list[dict], split_of: dict[str, str], name: str) -> dict:
    return {
        "pairs": len(rows),
        "catalogs": sorted(d for d, s in split_of.items() if s == name),
        "source_chars": sum(len(r["source"]) for r in rows),
        "target_chars": sum(len(r["target"]) for r in rows),
    }

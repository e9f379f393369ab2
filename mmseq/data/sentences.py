"""English sentences for the speech demo, found offline on the machine itself.

The source is the English message ids of the system's gettext catalogs
(/usr/share/locale/*/LC_MESSAGES/*.mo, and /usr/share/locale-langpack on Ubuntu): program
messages such as "The selected packages may already be installed." Only plain sentences are
kept: 3-15 words of letters (with inner apostrophes or hyphens) and ordinary punctuation, no
acronyms or CamelCase (espeak-ng would spell those out, and the transcript could not say so).
Where the catalogs give too few (a minimal container), `template_sentences` fills up with
simple made-up sentences.

Fortune databases are deliberately not read: they are kept for evaluation.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Iterator
from pathlib import Path

LOCALE_DIRS = (Path("/usr/share/locale"), Path("/usr/share/locale-langpack"))
MIN_WORDS, MAX_WORDS = 3, 15
_WORD = r"[A-Za-z][a-z]*(?:['-][a-z]+)*"
_SENTENCE = re.compile(rf"{_WORD}(?:[,;:]? {_WORD})*[.!?]?")


def is_speakable(text: str) -> bool:
    """A plain sentence of MIN_WORDS-MAX_WORDS words that espeak-ng reads as written."""
    return MIN_WORDS <= len(text.split()) <= MAX_WORDS and _SENTENCE.fullmatch(text) is not None


def catalog_sentences(locale_dirs: tuple[Path, ...] = LOCALE_DIRS) -> list[str]:
    """The speakable English message ids of the gettext catalogs, deduplicated (ignoring case
    and final punctuation) and sorted.

    A catalog only holds the messages translated into its language, so each domain is read
    from its largest catalog: nearly every id of all its catalogs, at a tenth of the time.
    """
    largest: dict[str, tuple[int, Path]] = {}
    for locale_dir in locale_dirs:
        for path in locale_dir.glob("*/LC_MESSAGES/*.mo"):
            if path.name.startswith("iso_"):
                continue  # country and language names, not sentences
            candidate = (path.stat().st_size, path)
            largest[path.name] = max(largest.get(path.name, candidate), candidate)
    found: dict[str, str] = {}
    for _, path in sorted(largest.values(), key=lambda item: item[1]):
        for text in _msgids(path):
            if is_speakable(text):
                found.setdefault(text.lower().rstrip(".!?"), text)
    return sorted(found.values())


def _msgids(path: Path) -> Iterator[str]:
    """The message ids of a compiled catalog (.mo); unreadable files give none."""
    try:
        data = path.read_bytes()
        order = {b"\xde\x12\x04\x95": "<", b"\x95\x04\x12\xde": ">"}[data[:4]]
        count, table = struct.unpack_from(f"{order}II", data, 8)  # after magic and revision
        entries = [struct.unpack_from(f"{order}II", data, table + 8 * i) for i in range(count)]
    except (OSError, KeyError, struct.error):
        return
    for length, offset in entries:
        raw = data[offset : offset + length]
        # msgctxt\x04msgid\x00plural: keep the singular id.
        raw = raw.split(b"\x04")[-1].split(b"\x00")[0]
        try:
            yield raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue


# Ten choices per slot, "|"-separated: 10,000 distinct sentences.
_SLOTS = (
    "the old man|my sister|a small dog|the teacher|our neighbour|the driver|a young girl|"
    "the farmer|his friend|the doctor",
    "found|painted|carried|opened|watched|cleaned|bought|lost|moved|counted",
    "a green box|the heavy table|some fresh bread|the broken window|a long letter|"
    "the red bicycle|an empty bottle|the garden gate|a warm coat|the wooden chair",
    "this morning|after lunch|near the river|in the kitchen|last winter|before the storm|"
    "at the station|without a word|on the hill|yesterday",
)
_CHOICES = [slot.split("|") for slot in _SLOTS]


def template_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct simple sentences ("My sister found a green box near the river."), for
    machines without enough gettext catalogs (up to 10,000 distinct ones)."""
    if not 0 <= n <= 10**4:
        raise ValueError(f"template_sentences makes 0 to 10000 sentences, not {n}")
    combos = random.Random(seed).sample(range(10**4), n)
    sentences = []
    for combo in combos:
        words = [choices[combo // 10**k % 10] for k, choices in enumerate(_CHOICES)]
        text = " ".join(words) + "."
        sentences.append(text[0].upper() + text[1:])
    return sentences


def demo_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences in a seeded random order: from the gettext catalogs, topped up
    with template sentences when they hold fewer than `n`."""
    sentences = catalog_sentences()
    random.Random(seed).shuffle(sentences)
    if len(sentences) < n:
        seen = {s.lower() for s in sentences}
        extra = [s for s in template_sentences(10**4, seed) if s.lower() not in seen]
        sentences += extra[: n - len(sentences)]
    if len(sentences) < n:
        raise ValueError(f"asked for {n} distinct sentences; only {len(sentences)} are available")
    return sentences[:n]

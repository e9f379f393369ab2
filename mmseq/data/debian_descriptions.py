"""Document-summary pairs from Debian's package descriptions (``mmseq data make-summarization``):
the long description is the document, the one-line synopsis its summary.

They come from the ``Translation-en`` indexes of an apt lists folder, fetched by `fetch_lists`
into a side folder (the system's /var/lib/apt/lists is never touched) or read from
``--lists-dir``. Only descriptions of `DEFAULT_MIN_LINES` or more lines are kept. Splits are by
source package (from the ``Packages`` indexes of the same folder), so that sibling binaries,
which share most of their text, are never in two splits. Output: OUT/{train,val,test}.jsonl with
``{"id": "<package>", "source": document, "target": synopsis}`` and OUT/stats.json.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmseq.data.corpus_files import (
    SPLITS,
    prepare_out,
    split_groups,
    write_json_atomic,
    write_jsonl_atomic,
)
from mmseq.data.errors import DataError

DEFAULT_MIN_LINES = 3
DEFAULT_HELD_OUT = 0.04
BULLETS = ("* ", "- ", "+ ", "o ", "• ")

# apt-get update into a side folder. The image's apt.conf.d sets Acquire::Languages "none" and
# keeps indexes compressed (lz4, which Python cannot read); both are overridden here, and no
# package cache is written, so the system's lists and caches stay as they are.
APT_OPTIONS = (
    "Acquire::Languages=en",
    "Acquire::GzipIndexes=false",
    "Dir::Cache::pkgcache=",
    "Dir::Cache::srcpkgcache=",
)


@dataclass(frozen=True)
class Description:
    package: str
    md5: str
    synopsis: str
    lines: tuple[str, ...]  # the long description, each line without its first space


def fetch_lists(lists_dir: Path) -> None:
    """Download the Packages and Translation-en indexes of the system's apt sources into
    `lists_dir` with apt-get (as root; apt drops to its _apt user for the download)."""
    if shutil.which("apt-get") is None:
        raise DataError("apt-get not found: pass --lists-dir with Translation-en indexes")
    (lists_dir / "partial").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mmseq-apt-cache-") as cache:
        command = ["apt-get", "update", "-q", "-o", f"Dir::State::Lists={lists_dir.resolve()}"]
        command += ["-o", f"Dir::Cache={cache}"]
        for option in APT_OPTIONS:
            command += ["-o", option]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise DataError(
            f"apt-get update into {lists_dir} failed (exit {done.returncode}); it needs root and "
            f"network. {' '.join(command)}\n{tail}"
        )


def read_index(path: Path) -> str:
    """The text of an apt index, plain or compressed (.gz, .xz, .bz2, .lz4 through lz4(1))."""
    try:
        if path.suffix == ".lz4":
            if shutil.which("lz4") is None:
                raise DataError(f"{path}: lz4-compressed and lz4 is not installed")
            data = subprocess.run(["lz4", "-dc", str(path)], capture_output=True, check=True).stdout
        else:
            opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
            with opener(path, "rb") as f:
                data = f.read()
        return data.decode("utf-8")
    except (OSError, EOFError, lzma.LZMAError, subprocess.CalledProcessError) as err:
        raise DataError(f"{path}: cannot read this index ({err})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 at byte {err.start}") from None


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as field -> value; continuation lines are kept, joined by newlines."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        name = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and name is not None:
                fields[name] += "\n" + line
            elif ":" in line:
                name, value = line.split(":", 1)
                fields[name] = value.strip()
        if fields:
            yield fields


def index_files(lists_dir: Path, kind: str) -> list[Path]:
    """The indexes of one kind ("Translation-en", "Packages") in a lists folder, sorted."""
    return sorted(
        p for p in lists_dir.glob(f"*_{kind}*") if p.is_file() and not p.name.endswith("Release")
    )


def read_descriptions(files: list[Path]) -> Iterator[Description]:
    for path in files:
        for fields in stanzas(read_index(path)):
            text = fields.get("Description-en")
            if "Package" not in fields or text is None:
                continue
            synopsis, *lines = text.split("\n")
            body = tuple(line[1:] if line[:1] == " " else line for line in lines)
            yield Description(fields["Package"], fields.get("Description-md5", ""), synopsis, body)


def source_packages(files: list[Path]) -> dict[str, str]:
    """binary package -> source package name (``Source: name (version)`` loses its version;
    without a Source field the binary is its own source). The first index wins."""
    sources: dict[str, str] = {}
    for path in files:
        for fields in stanzas(read_index(path)):
            if "Package" in fields:
                source = fields.get("Source", "").split(" ")[0] or fields["Package"]
                sources.setdefault(fields["Package"], source)
    return sources


def document(lines: tuple[str, ...]) -> str:
    """The long description as text: paragraphs (`` .``) and list items each on their own line,
    the word-wrapped lines of a paragraph or item joined by spaces."""
    out: list[str] = []
    in_item, new_line = False, True
    for line in lines:
        text = " ".join(line.split())
        if text == ".":
            new_line, in_item = True, False
            continue
        if not text:
            continue
        bullet = text.startswith(BULLETS)
        indented = line[:1].isspace()
        # An indented line continues a list item; otherwise it is verbatim text of its own.
        if new_line or bullet or (indented and not in_item) or (in_item and not indented):
            out.append(text)
            in_item = bullet or (in_item and indented)
        else:
            out[-1] += " " + text
        new_line = False
    return "\n".join(out)


def long_lines(description: Description) -> int:
    """Lines of the long description, paragraph separators (`` .``) not counted."""
    return sum(1 for line in description.lines if line.strip() not in ("", "."))


def make_summarization(
    out: str | os.PathLike,
    lists_dir: str | os.PathLike | None = None,
    fetch: bool = False,
    min_lines: int = DEFAULT_MIN_LINES,
    held_out: float = DEFAULT_HELD_OUT,
) -> dict:
    """Write OUT/{train,val,test}.jsonl and OUT/stats.json; returns the stats. Without
    `lists_dir`, the indexes are fetched into a temporary folder; with `fetch`, into
    `lists_dir` (kept, so that a rerun can read the very same indexes)."""
    if lists_dir is None:
        with tempfile.TemporaryDirectory(prefix="mmseq-apt-lists-") as tmp:
            fetch_lists(Path(tmp))
            return _make(out, Path(tmp), min_lines, held_out, "fetched into a temporary folder")
    lists_dir = Path(lists_dir)
    if fetch:
        fetch_lists(lists_dir)
    elif not lists_dir.is_dir():
        raise DataError(f"{lists_dir}: lists folder not found (add --fetch to download into it)")
    return _make(out, lists_dir, min_lines, held_out, str(lists_dir))


def _make(
    out: str | os.PathLike, lists_dir: Path, min_lines: int, held_out: float, origin: str
) -> dict:
    translations = index_files(lists_dir, "Translation-en")
    if not translations:
        raise DataError(
            f"{lists_dir}: no Translation-en index (files named *_Translation-en[.gz|.xz|...]); "
            "add --fetch to download them"
        )
    packages = index_files(lists_dir, "Packages")
    sources = source_packages(packages)
    kept, dropped = _select(read_descriptions(translations), min_lines)
    groups = {d.package: sources.get(d.package, d.package) for d in kept}
    dropped["source_unknown_used_package_name"] = sum(d.package not in sources for d in kept)
    split_of = split_groups(Counter(groups.values()), held_out)
    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    earlier: set[str] = set()
    for name in SPLITS:
        chosen = sorted((d for d in kept if split_of[groups[d.package]] == name), key=_by_package)
        for description in chosen:
            text = document(description.lines)
            if text in earlier:  # the same document under another synopsis
                dropped["document_in_earlier_split"] += 1
                continue
            rows[name].append(
                {"id": description.package, "source": text, "target": description.synopsis}
            )
        earlier |= {row["source"] for row in rows[name]}
    folder = prepare_out(out)
    for name in SPLITS:
        write_jsonl_atomic(folder / f"{name}.jsonl", rows[name])
    stats = {
        "lists_dir": origin,
        "indexes": [p.name for p in translations + packages],
        "release_dates": _release_dates(lists_dir),
        "min_lines": min_lines,
        "held_out_fraction": held_out,
        "documents": sum(len(r) for r in rows.values()),
        "dropped": dict(sorted(dropped.items())),
        "splits": {name: _split_stats(rows[name], groups) for name in SPLITS},
    }
    write_json_atomic(folder / "stats.json", stats)
    return stats


def _by_package(description: Description) -> tuple[str, str]:
    return description.package, description.md5


def _select(
    descriptions: Iterator[Description], min_lines: int
) -> tuple[list[Description], Counter]:
    """Descriptions of `min_lines`+ lines, each text (Description-md5) and package once."""
    dropped: Counter = Counter()
    kept, md5s, names = [], set(), set()
    for d in descriptions:
        if d.md5 and d.md5 in md5s:
            dropped["duplicate_description"] += 1
        elif long_lines(d) < min_lines:
            dropped["fewer_lines"] += 1
        elif not d.synopsis.strip():
            dropped["empty_synopsis"] += 1
        elif d.package in names:
            dropped["other_description_of_package"] += 1
        else:
            kept.append(d)
            names.add(d.package)
        md5s.add(d.md5)
    return kept, dropped


def _release_dates(lists_dir: Path) -> dict[str, str]:
    """The Date of each InRelease/Release file: which archive state the indexes are."""
    dates = {}
    for path in sorted(lists_dir.glob("*Release")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Date:"):
                dates[path.name] = line.split(":", 1)[1].strip()
                break
    return dates


def _split_stats(rows: list[dict], groups: dict[str, str]) -> dict:
    synopsis_words = [len(r["target"].split()) for r in rows]
    return {
        "pairs": len(rows),
        "source_packages": len({groups[r["id"]] for r in rows}),
        "document_words": sum(len(r["source"].split()) for r in rows),
        "median_synopsis_words": float(statistics.median(synopsis_words)) if rows else 0.0,
        "median_document_words": (
            float(statistics.median(len(r["source"].split()) for r in rows)) if rows else 0.0
        ),
    }

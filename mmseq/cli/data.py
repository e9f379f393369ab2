"""`mmseq data`: the embedded demo data, translation and summarization sets from Debian's
text, and checking manifests."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("mmseq")


def _make_demo(args: argparse.Namespace) -> int:

    from mmseq.data.demo import make_demo

    summary = make_demo(
        args.out,
        shapes=not args.no_shapes,
        n_shapes_train=args.shapes,
        speech=not args.no_speech,
        n_speech_train=args.speech,
        digits=not args.no_digits,
        n_digits_train=args.digits,
        seed=args.seed,
        progress=not args.quiet,
        force=args.force,
    )
    if summary.get("reused"):
        log.info("%s: the demo data is there and complete; kept (--force rebuilds)", args.out)
    print(json.dumps(summary, indent=1))
    return 0


def _make_translation(args: argparse.Namespace) -> int:
    from mmseq.data.gettext_corpus import make_translation

    stats = make_translation(
        args.out,
        source=args.source,
        target=args.target,
        locale_dir=args.locale_dir,
        max_chars=args.max_chars,
        all_catalogs=args.all_catalogs,
        held_out=args.held_out,
    )
    _print_splits(args.out, stats, "pairs")
    return 0


def _make_summarization(args: argparse.Namespace) -> int:
    from mmseq.data.debian_descriptions import make_summarization

    stats = make_summarization(
        args.out,
        lists_dir=args.lists_dir,
        fetch=args.fetch,
        min_lines=args.min_lines,
        held_out=args.held_out,
    )
    _print_splits(args.out, stats, "documents")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from mmseq.data.check import run_check

    return run_check(args.manifests, args.kind, args.tokenizer, args.max_tokens)


def _print_splits(out: str, stats: dict, unit: str) -> None:
    counts = ", ".join(f"{name} {split['pairs']}" for name, split in stats["splits"].items())
    print(f"{out}: {counts} {unit} (details in {Path(out) / 'stats.json'})")


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = commands.add_parser(
        "data", help="datasets: the embedded demo data, Debian text, checking manifests"
    )
    data = d.add_subparsers(dest="data_command", required=True)
    m = data.add_parser(
        "make-demo",
        help="spoken sentences, shapes scenes and handwritten digits, no download",
        parents=[common],
    )
    m.add_argument("out", help="output folder, e.g. data/demo")
    m.add_argument(
        "--shapes", type=int, default=20000, help="training scenes (default: %(default)s)"
    )
    m.add_argument("--no-shapes", action="store_true", help="no shapes captioning task")
    m.add_argument("--speech", type=int, default=1500, help="training clips (default: %(default)s)")
    m.add_argument("--no-speech", action="store_true", help="no speech (no espeak-ng needed)")
    m.add_argument(
        "--digits", type=int, default=20000, help="training digit strings (default: %(default)s)"
    )
    m.add_argument("--no-digits", action="store_true", help="no handwritten digits task")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument(
        "--force", action="store_true", help="rebuild even when OUT is complete for these options"
    )
    m.set_defaults(run=_make_demo)
    held_out = {
        "type": float,
        "default": 0.04,
        "help": "share of pairs for val and for test each, by whole groups (default: %(default)s)",
    }
    mt = data.add_parser(
        "make-translation",
        help="parallel text from the system's gettext catalogs, split by catalog",
        parents=[common],
    )
    mt.add_argument("out", help="output folder: train/val/test.jsonl and stats.json")
    mt.add_argument("--source", default="en", help="source language (default: %(default)s)")
    mt.add_argument("--target", required=True, help="target language, e.g. fr")
    mt.add_argument("--locale-dir", default="/usr/share/locale", help="(default: %(default)s)")
    mt.add_argument(
        "--max-chars", type=int, default=400, help="longest side kept (default: %(default)s)"
    )
    mt.add_argument(
        "--all-catalogs",
        action="store_true",
        help="every installed catalog, not only those of `make catalogs` (machine-dependent)",
    )
    mt.add_argument("--held-out", **held_out)
    mt.set_defaults(run=_make_translation)
    ms = data.add_parser(
        "make-summarization",
        help="Debian package descriptions (document) and synopses (summary), split by source",
        parents=[common],
    )
    ms.add_argument("out", help="output folder: train/val/test.jsonl and stats.json")
    ms.add_argument(
        "--lists-dir",
        help="apt lists folder with Translation-en and Packages indexes (default: fetch them "
        "with apt-get into a temporary folder; needs root and network)",
    )
    ms.add_argument("--fetch", action="store_true", help="first fetch the indexes into --lists-dir")
    ms.add_argument(
        "--min-lines", type=int, default=3, help="shortest long description (default: %(default)s)"
    )
    ms.add_argument("--held-out", **held_out)
    ms.set_defaults(run=_make_summarization)
    dc = data.add_parser(
        "check",
        help="every bad row of speech, caption and text-pair manifests, and what they hold",
        parents=[common],
    )
    dc.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSON lines, TSV or CSV")
    dc.add_argument(
        "--kind",
        choices=["speech", "caption", "text"],
        help="what the manifests hold (default: told by the fields: audio_filepath, "
        "image_filepath, source/target)",
    )
    dc.add_argument(
        "--tokenizer", help="tokenizer.json (or whisper) to count tokens (default: words)"
    )
    dc.add_argument(
        "--max-tokens",
        type=int,
        default=448,
        help="longest transcript, caption or target, in tokens (words without --tokenizer); "
        "0: no limit (default: %(default)s, the decoder's default n_ctx)",
    )
    dc.set_defaults(run=_check_data)

"""`mmseq tokenizer train`: byte-level BPE or unigram tokenizers from manifests."""

from __future__ import annotations

import argparse
from pathlib import Path


def _train_tokenizer(args: argparse.Namespace) -> int:
    from mmseq.data.tokenizer import TOKENIZER_KINDS, read_texts

    # not given: read_texts' and the tokenizers' own defaults
    texts = read_texts(args.manifests, **({} if args.fields is None else {"field": args.fields}))
    tasks = {} if args.tasks is None else {"tasks": tuple(args.tasks)}
    tokenizer = TOKENIZER_KINDS[args.kind](texts, args.vocab_size, **tasks)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(args.out)
    kind = {"bpe": "byte-level BPE", "unigram": "unigram"}[args.kind]
    print(f"{args.out}: {kind}, {tokenizer.vocab_size} tokens from {len(texts)} texts")
    return 0


def _names(text: str) -> list[str]:
    """'source,target' -> ['source', 'target']; '' -> []."""
    return [name.strip() for name in text.split(",") if name.strip()]


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    k = commands.add_parser(
        "tokenizer", help="train a tokenizer (byte-level BPE or SentencePiece-style unigram)"
    )
    tok = k.add_subparsers(dest="tokenizer_command", required=True)
    tr = tok.add_parser("train", help="from the text of JSON-lines manifests", parents=[common])
    tr.add_argument("manifests", nargs="+", help="JSON-lines manifests")
    tr.add_argument("--out", required=True, help="tokenizer.json to write")
    tr.add_argument("--vocab-size", type=int, default=4000, help="(default: %(default)s)")
    tr.add_argument(
        "--kind",
        choices=["bpe", "unigram"],
        default="bpe",
        help="byte-level BPE, or a SentencePiece-style unigram model with byte fallback "
        "(default: %(default)s)",
    )
    tr.add_argument(
        "--field",
        "--fields",
        dest="fields",
        type=_names,
        action="extend",  # one value each time: a list would take the manifests after it
        default=None,
        metavar="FIELD[,FIELD]",
        help="text field(s) to read, e.g. `--fields source,target` (or `--field source "
        "--field target`) for one vocabulary shared by both sides of text pairs; lines with "
        "none of them give their caption(s) (default: text)",
    )
    tr.add_argument(
        "--tasks",
        type=_names,
        action="extend",
        default=None,
        metavar="TASK[,TASK]",
        help="task tokens to reserve, comma-separated or repeated; '' for none (default: "
        "transcribe,caption,translate)",
    )
    tr.set_defaults(run=_train_tokenizer)

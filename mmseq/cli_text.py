"""`mmseq translate` and `mmseq summarize`: text-to-text models from the command line.

translate reads lines (files, or stdin) and writes one line per input line, in order; an empty
line gives an empty line. summarize reads documents (a file, its paragraphs or its lines each).
Inputs are read and checked before the model loads, so a bad file costs no model time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmseq.cli import add_compute_type_option, add_device_option

_LINE_BREAKS = re.compile(r"[\r\n]+")


@dataclass
class Document:
    source: str  # file name, or "-" for stdin
    index: int  # line number (translate, --split line) or paragraph/document number, from 1
    text: str


def read_lines(name: str) -> list[str]:
    """The lines of a UTF-8 file (or stdin for "-"), without line ends; a BOM is dropped.

    ValueError naming the file and the line when a line is not UTF-8."""
    if name == "-":
        raw_lines = sys.stdin.buffer.read().splitlines()
    else:
        path = Path(name)
        if path.is_dir():
            raise ValueError(f"{name}: is a directory; give text files")
        try:
            raw_lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            raise ValueError(f"{name}: no such file") from None
    lines = []
    for number, raw in enumerate(raw_lines, 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{name}: line {number}: not UTF-8 text (byte {err.start + 1}: "
                f"{raw[err.start : err.start + 1]!r}); convert the file to UTF-8, e.g. with iconv"
            ) from None
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return lines


def documents(files: Iterable[str], split: str) -> list[Document]:
    """Each file whole, or its paragraphs (blank-line separated), or its lines."""
    out = []
    for name in files:
        lines = read_lines(name)
        if split == "line":
            out += [Document(name, i, line) for i, line in enumerate(lines, 1)]
        elif split == "paragraph":
            paragraphs, current = [], []
            for line in [*lines, ""]:
                if line.strip():
                    current.append(line.strip())
                elif current:
                    paragraphs.append(" ".join(current))
                    current = []
            out += [Document(name, i, p) for i, p in enumerate(paragraphs, 1)]
        else:
            out.append(Document(name, 1, " ".join(line.strip() for line in lines if line.strip())))
    return out


def _generator(args: argparse.Namespace, task: str | None = None):  # noqa: ANN202
    from mmseq.precision import check_device
    from mmseq.text.generator import TextGenerator

    check_device(args.device, args.compute_type)
    generator = TextGenerator(
        args.model,
        device=args.device,
        compute_type=args.compute_type,
        source_lang=getattr(args, "source_lang", None),
        target_lang=getattr(args, "target_lang", None),
        compile=args.compile,
    )
    if task is not None and task in generator.task_params and not generator.text_prefix:
        generator.use_task(task)  # T5's "summarize: " prefix and its settings
    return generator


def _run(args: argparse.Namespace, docs: list[Document], field: str, task: str | None) -> int:
    from mmseq.cli import _counter

    generator = _generator(args, task)
    options = {"num_beams": args.beam_size, "max_new_tokens": args.max_new_tokens}
    truncated = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*were truncated")  # counted below
        results = generator.iter_results(
            [d.text for d in docs], batch_size=args.batch_size, **options
        )
        with _counter(len(docs), field, args.quiet) as advance:
            for doc, result in zip(docs, results, strict=True):
                advance()
                truncated += result.truncated
                if args.output_format == "jsonl":
                    row = {"file": doc.source, "index": doc.index, field: result.text}
                    row |= {"score": round(result.score, 4), "truncated": result.truncated}
                    print(json.dumps(row, ensure_ascii=False), flush=True)
                else:
                    # one line out per input: line breaks in a generated text become spaces
                    print(_LINE_BREAKS.sub(" ", result.text), flush=True)
    if truncated:
        limit = generator.model.config.text.n_ctx
        print(
            f"mmseq: warning: {truncated} input(s) longer than the model's {limit} source "
            "tokens were truncated",
            file=sys.stderr,
        )
    return 0


def _translate(args: argparse.Namespace) -> int:
    files = args.files or ["-"]
    docs = [Document(name, i, line) for name in files for i, line in _numbered(name)]
    return _run(args, docs, "translation", None)


def _numbered(name: str) -> list[tuple[int, str]]:
    return list(enumerate(read_lines(name), 1))


def _summarize(args: argparse.Namespace) -> int:
    return _run(args, documents(args.files, args.split), "summary", "summarization")


def _add_generation_options(add, model_help: str) -> None:  # noqa: ANN001
    add("--model", required=True, metavar="DIR|CKPT", help=model_help)
    add("--beam-size", type=_positive, default=None, help="1 = greedy (default: the model's)")
    add("--max-new-tokens", type=_positive, default=None, help="(default: the model's)")
    add("--batch-size", type=_positive, default=32, help="inputs decoded together (default: 32)")
    add_compute_type_option(add, "int8: CPU only; bfloat16 is fast on CPUs with AVX-512 BF16/AMX")
    add_device_option(add)
    add(
        "--compile",
        action="store_true",
        help="decode through torch.compile: 20-60 s to compile first, then faster steps "
        "(most at small batches and in bfloat16; not with int8)",
    )
    add(
        "--output-format",
        choices=["txt", "jsonl"],
        default="txt",
        help="txt: one line per input; jsonl: objects with file, index, text, score",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


MODEL_HELP = (
    "a Hugging Face folder (t5, mt5, bart, mbart, marian, pegasus: config.json, weights, "
    "tokenizer files) or a .ckpt written by `mmseq fit` for a text model"
)


def add_text_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    t = commands.add_parser(
        "translate",
        help="translate lines of text (files or stdin) with a seq2seq model",
        parents=[common],
        allow_abbrev=False,
    )
    t.add_argument(
        "files", nargs="*", help="UTF-8 text files, one sentence a line (default: stdin)"
    )
    _add_generation_options(t.add_argument, MODEL_HELP)
    t.add_argument("--source-lang", default=None, help="multilingual models: the source language")
    t.add_argument(
        "--target-lang",
        default=None,
        help="multilingual models: Marian's >>xx<< code, mBART's code (fr_XX), or with "
        "--source-lang T5's translation task",
    )
    t.set_defaults(run=_translate)

    s = commands.add_parser(
        "summarize",
        help="summarise documents with a seq2seq model",
        parents=[common],
        allow_abbrev=False,
    )
    s.add_argument("files", nargs="+", help="UTF-8 text files")
    _add_generation_options(s.add_argument, MODEL_HELP)
    s.add_argument(
        "--split",
        choices=["file", "paragraph", "line"],
        default="file",
        help="what one document is (default: %(default)s)",
    )
    s.set_defaults(run=_summarize)

    e = commands.add_parser(
        "export",
        help="write a checkpoint as a folder without pickle: mmseq's, or Hugging Face's",
        parents=[common],
        allow_abbrev=False,
    )
    e.add_argument("checkpoint", help="a .ckpt written by `mmseq fit`")
    e.add_argument("out", help="the folder to write (must not exist, or be empty)")
    e.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="mmseq",
        help="mmseq: config.json, tokenizer.json, model.safetensors, read by every mmseq "
        "command; hf: the Hugging Face folder a model fine-tuned from one (`pretrained:`) came "
        "from, for transformers (default: %(default)s)",
    )
    e.set_defaults(run=_export)


EXPORT_FORMATS = ("mmseq", "hf")


def _export(args: argparse.Namespace) -> int:
    if args.format == "hf":
        from mmseq.text.export import export_hf

        out = export_hf(args.checkpoint, args.out)
        print(f"{out}: Hugging Face folder written from {args.checkpoint}")
        return 0
    from mmseq.checkpoint import load_trained, save_folder

    out = save_folder(load_trained(args.checkpoint), args.out)
    print(f"{out}: mmseq folder written from {args.checkpoint} (no pickle; --model {out})")
    return 0

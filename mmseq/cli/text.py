"""`mmseq translate` and `mmseq summarize`: text-to-text models from the command line.

translate reads lines (files, or stdin) and writes one line per input line, in order; an empty
line gives an empty line. summarize reads documents (a file, its paragraphs or its lines each).
Files are read and checked before the model loads, so a bad file costs no model time; then
inputs stream through a window at a time (`--window`), each result written as soon as it and
all before it are done, so memory does not grow with the input (stdin is read once, as it
comes: a bad line there stops the run where it is reached).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from mmseq.cli.common import (
    _counter,
    _positive,
    add_compute_type_option,
    add_device_option,
    parameter_default,
)
from mmseq.jobs.options import add_job_options, is_job
from mmseq.terminal import for_stream, json_line

_LINE_BREAKS = re.compile(r"[\r\n]+")


@dataclass
class Document:
    source: str  # file name, or "-" for stdin
    index: int  # line number (translate, --split line) or paragraph/document number, from 1
    text: str


def read_lines(name: str) -> list[str]:
    """The lines of a UTF-8 file (or stdin for "-"), without line ends; a BOM is dropped.

    ValueError naming the file and the line when a line is not UTF-8."""
    return list(iter_lines(name))


def iter_lines(name: str) -> Iterator[str]:
    """As `read_lines`, one line at a time: a file of any size in bounded memory.

    A missing file or a directory is refused at the first `next`; a line that is not UTF-8
    when it is reached (lines before it are given)."""
    if name == "-":
        yield from _decoded(name, sys.stdin.buffer)
        return
    path = Path(name)
    if path.is_dir():
        raise ValueError(f"{name}: is a directory; give text files")
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file") from None
    with stream:
        yield from _decoded(name, stream)


def _decoded(name: str, stream: BinaryIO) -> Iterator[str]:
    """Lines split as bytes.splitlines splits them (at LF, CR LF and CR), decoded."""
    number = 0
    for chunk in stream:  # up to each LF; a CR inside splits it further
        for raw in chunk.splitlines():
            number += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{name}: line {number}: not UTF-8 text (byte {err.start + 1}: "
                    f"{raw[err.start : err.start + 1]!r}); convert the file to UTF-8, e.g. with "
                    "iconv"
                ) from None
            yield line[1:] if number == 1 and line.startswith("\ufeff") else line


def documents(files: Iterable[str], split: str) -> Iterator[Document]:
    """Each file whole, or its paragraphs (blank-line separated), or its lines; read lazily."""
    for name in files:
        lines = iter_lines(name)
        if split == "line":
            yield from (Document(name, i, line) for i, line in enumerate(lines, 1))
        elif split == "paragraph":
            number, current = 0, []
            for line in chain(lines, [""]):
                if line.strip():
                    current.append(line.strip())
                elif current:
                    number += 1
                    yield Document(name, number, " ".join(current))
                    current = []
        else:
            text = " ".join(line.strip() for line in lines if line.strip())
            yield Document(name, 1, text)


def _checked(files: list[str], split: str) -> int:
    """Read every named file once before the model loads (a bad file costs no model time)
    and count the documents, holding none; 0 (no count) with stdin, which is read once."""
    count = sum(1 for _ in documents([f for f in files if f != "-"], split))
    return 0 if "-" in files else count


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


def _run(
    args: argparse.Namespace, files: list[str], split: str, field: str, task: str | None
) -> int:
    """Documents streamed in, a window at a time, and their results streamed out in order."""
    total = _checked(files, split)
    if is_job(args):  # --devices, --num-nodes, --resume: Lightning's predict loop
        from mmseq.jobs import run_job

        return run_job(args.command, args, files)
    generator = _generator(args, task)
    options = {"num_beams": args.beam_size, "max_new_tokens": args.max_new_tokens}
    truncated = 0
    docs = _Sources(documents(files, split))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*were truncated")  # counted below
        results = generator.iter_results(
            docs.texts(), batch_size=args.batch_size, window=args.window, **options
        )
        with _counter(total, field, args.quiet) as advance:
            for result in results:
                doc = docs.pending.popleft()
                advance()
                truncated += result.truncated
                print_result(doc, field, result, args.output_format)
    warn_truncated(truncated, generator.model.config.text.n_ctx)
    return 0


def print_result(doc: Document, field: str, result: Any, output_format: str) -> None:  # noqa: ANN401
    """One document's result (`.text`, `.score`, `.truncated`) on stdout: a jsonl object with
    its file and index, or one line (line breaks in a generated text become spaces)."""
    if output_format == "jsonl":
        row = {"file": doc.source, "index": doc.index, field: result.text}
        row |= {"score": round(result.score, 4), "truncated": result.truncated}
        print(json_line(json.dumps(row, ensure_ascii=False)), flush=True)
    else:
        print(for_stream(_LINE_BREAKS.sub(" ", result.text)), flush=True)


def warn_truncated(count: int, limit: int) -> None:
    """Said once, at the end: `count` inputs were cut to the model's `limit` source tokens."""
    if count:
        print(
            f"mmseq: warning: {count} input(s) longer than the model's {limit} source "
            "tokens were truncated",
            file=sys.stderr,
        )


class _Sources:
    """Documents given to the generator as texts; the ones read and not yet answered wait in
    `pending` (at most a window of them) for their file and index."""

    def __init__(self, docs: Iterable[Document]) -> None:
        self.docs = docs
        self.pending: deque[Document] = deque()

    def texts(self) -> Iterator[str]:
        for doc in self.docs:
            self.pending.append(doc)
            yield doc.text


def _translate(args: argparse.Namespace) -> int:
    return _run(args, args.files or ["-"], "line", "translation", None)


def _summarize(args: argparse.Namespace) -> int:
    return _run(args, args.files, args.split, "summary", "summarization")


def _add_generation_options(add, model_help: str) -> None:  # noqa: ANN001
    """The options translate and summarize share; the defaults not the model's own (its
    generation config) are TextGenerator's."""
    from mmseq.text.generator import TextGenerator

    add("--model", required=True, metavar="DIR|CKPT", help=model_help)
    add("--beam-size", type=_positive, default=None, help="1 = greedy (default: the model's)")
    add("--max-new-tokens", type=_positive, default=None, help="(default: the model's)")
    add(
        "--batch-size",
        type=_positive,
        default=parameter_default(TextGenerator.iter_results, "batch_size"),
        help="inputs decoded together (default: %(default)s)",
    )
    add(
        "--window",
        type=_positive,
        default=parameter_default(TextGenerator.iter_results, "window"),
        help="inputs read and sorted by length together, then written in order, before the "
        "next are read: memory stays bounded; 1 answers each line as it comes "
        "(default: %(default)s)",
    )
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


MODEL_HELP = (
    "a Hugging Face folder (t5, mt5, bart, mbart, marian, pegasus: config.json, weights, "
    "tokenizer files) or a .ckpt written by `mmseq fit` for a text model"
)


def add_translate_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser, options: bool = True
) -> None:
    """`mmseq translate`; its options only with `options` (their defaults import torch)."""
    t = commands.add_parser(
        "translate",
        help="translate lines of text (files or stdin) with a seq2seq model",
        parents=[common],
        allow_abbrev=False,
    )
    t.set_defaults(run=_translate)
    if not options:
        return
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
    add_job_options(t.add_argument_group("many processes (mmseq.jobs)"))


def add_summarize_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser, options: bool = True
) -> None:
    """`mmseq summarize`; its options only with `options` (their defaults import torch)."""
    s = commands.add_parser(
        "summarize",
        help="summarise documents with a seq2seq model",
        parents=[common],
        allow_abbrev=False,
    )
    s.set_defaults(run=_summarize)
    if not options:
        return
    s.add_argument("files", nargs="+", help="UTF-8 text files")
    _add_generation_options(s.add_argument, MODEL_HELP)
    s.add_argument(
        "--split",
        choices=["file", "paragraph", "line"],
        default="file",
        help="what one document is (default: %(default)s)",
    )
    add_job_options(s.add_argument_group("many processes (mmseq.jobs)"))

"""`mmseq caption`: image to text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmseq.cli.common import (
    IMAGE_SUFFIXES,
    _counter,
    _make_explain_dir,
    _peek,
    add_device_option,
    iter_inputs,
    parameter_default,
)
from mmseq.jobs.options import add_job_options, is_job
from mmseq.terminal import escape_controls, for_stream, json_line


def _caption(args: argparse.Namespace) -> int:
    """Images named or found below folders, read lazily: each batch is decoded, captioned and
    written (flushed) before the next is listed, so memory does not grow with their number."""

    from mmseq.inference import Captioner
    from mmseq.precision import check_device

    first, files = _peek(iter_inputs(args.images, IMAGE_SUFFIXES), 2)
    if not first:
        raise ValueError("no images to caption")
    if is_job(args):  # --devices, --num-nodes, --resume: Lightning's predict loop
        from mmseq.jobs import run_job

        return run_job("caption", args, list(iter_inputs(args.images, IMAGE_SUFFIXES)))
    single = len(first) == 1
    check_device(args.device)
    max_pixels = None if args.max_pixels == 0 else args.max_pixels
    captioner = Captioner(
        args.model,
        device=args.device,
        num_beams=args.beam_size,
        max_new_tokens=args.max_new_tokens,
        max_pixels=max_pixels,
    )
    figures = None
    if args.explain:  # a figure per image is written anyway: the names are listed first
        from mmseq.explain import explain_caption, explanation_paths

        files = list(files)
        figures = iter(explanation_paths(files, args.explain))
        _make_explain_dir(args.explain)
    shown = not args.quiet and sys.stderr.isatty()  # the bar's total: one more listing
    total = sum(1 for _ in iter_inputs(args.images, IMAGE_SUFFIXES, warn=False)) if shown else 0
    failed = 0
    with _counter(total, "captioning", args.quiet) as advance:
        for result in captioner.iter_caption(files, batch_size=args.batch_size):
            advance()
            figure = None if figures is None else next(figures)
            if result.error:
                failed += 1
                print(escape_controls(f"mmseq: error: {result.error}"), file=sys.stderr)
                continue
            if figure is not None:
                explain_caption(captioner, result).save(figure)
            print_caption(result.image, result.caption, single, args.output_format, figure)
    return 1 if failed else 0


def print_caption(
    image: str, caption: str, single: bool, output_format: str, explanation: Path | None = None
) -> None:
    """One image's caption on stdout: a jsonl object, or a line (`image<TAB>caption` unless
    `single`, the only image of the run)."""
    if output_format == "jsonl":
        row = {"image": image, "caption": caption}
        if explanation is not None:
            row["explanation"] = str(explanation)
        print(json_line(json.dumps(row, ensure_ascii=False)), flush=True)
    else:
        print(for_stream(caption if single else f"{image}\t{caption}"), flush=True)


def add_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser, options: bool = True
) -> None:
    """`mmseq caption`; its options only with `options` (their defaults are Captioner's,
    imported with torch)."""
    c = commands.add_parser(
        "caption", help="image to text with a model trained by `mmseq fit`", parents=[common]
    )
    c.set_defaults(run=_caption)
    if options:
        add_options(c)
        add_job_options(c.add_argument_group("many processes (mmseq.jobs)"))


def add_options(c: argparse.ArgumentParser) -> None:
    """The flags; those that reach Captioner take their defaults from its signature."""
    from mmseq.inference import Captioner

    add = c.add_argument
    add("images", nargs="+", help="image files or directories")
    add(
        "--model",
        required=True,
        help="a .ckpt written by `mmseq fit`, or a Hugging Face VisionEncoderDecoderModel "
        "folder (ViT + GPT-2, with its tokenizer files)",
    )
    add(
        "--beam-size",
        type=int,
        default=parameter_default(Captioner, "num_beams"),
        help="1 = greedy (default: %(default)s)",
    )
    add(
        "--batch-size",
        type=int,
        default=parameter_default(Captioner.iter_caption, "batch_size"),
        help="images decoded together (default: %(default)s)",
    )
    add(
        "--max-new-tokens",
        type=int,
        default=parameter_default(Captioner, "max_new_tokens"),
        help="(default: %(default)s)",
    )
    add(
        "--output-format",
        choices=["text", "jsonl"],
        default="text",
        help='text, or JSON lines {"image", "caption"} (default: %(default)s)',
    )
    add(
        "--max-pixels",
        type=int,
        default=parameter_default(Captioner, "max_pixels"),
        help="refuse larger images before decoding (decompression bombs); 0: no limit "
        "(default: %(default)s)",
    )
    add(
        "--explain",
        metavar="DIR",
        default=None,
        help="save DIR/<image name>.png per image: the decoder's cross-attention for each "
        "generated word over the image",
    )
    add_device_option(add)

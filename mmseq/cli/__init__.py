"""`mmseq` command line. Results go to stdout; logs, progress and errors to stderr.

One module per command (transcribe, caption, text: translate and summarize, export, data,
tokenizer; serve in mmseq.serve.cli), each with its `add_command` and the function it runs;
`common` holds what they share (and `add_field`, which makes a flag from a field of an
options dataclass: its default, type and choices) and `compat` openai-whisper's and
faster-whisper's spellings. Training commands (fit, validate, test, predict) go to
LightningCLI (mmseq.training.cli). transcribe, caption, translate and summarize also take the
job flags (--devices, --num-nodes, --resume: mmseq.jobs), which run them on many processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from mmseq import __version__
from mmseq.cli import caption, data, export, text, tokenizer, transcribe
from mmseq.cli.common import (  # noqa: F401 - imported from mmseq.cli by other modules
    add_compute_type_option,
    add_device_option,
    expand_inputs,
    iter_inputs,
)
from mmseq.cli.compat import _fp16_compute_type, _openai_verbose  # noqa: F401
from mmseq.cli.transcribe import (  # noqa: F401 - and by the tests
    VerboseTranscriber,
    _from_args,
    _transcribe_options,
)
from mmseq.config import fallback_temperatures  # noqa: F401
from mmseq.terminal import EscapingFormatter, escape_controls


class NoAbbrevParser(argparse.ArgumentParser):
    """argparse without prefix matching, for the parser and (as their class) every
    subcommand's: `--word` is a typo, not `--word-timestamps`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `mmseq` parser, with every command's options (None), or only those of `command`
    ("": none), the others listed by name for `mmseq --help`. The options of transcribe,
    caption, translate and summarize take their defaults from the library's option
    dataclasses and signatures, whose modules import torch: parsing imports what running the
    command does, and `mmseq --help` and the light commands no more than before."""
    parser = NoAbbrevParser(
        prog="mmseq",
        description="Multimodal sequence-to-sequence models: speech, images and text to text.",
        epilog=f"Bad input is reported in one line; {DEBUG_FLAG} anywhere on the command line "
        "(or MMSEQ_DEBUG=1) shows the traceback instead.",
    )
    parser.add_argument("--version", action="version", version=f"mmseq {__version__}")
    common = NoAbbrevParser(add_help=False)
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only results and errors on the terminal",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe.add_command(commands, common, options=command in (None, "transcribe"))
    caption.add_command(commands, common, options=command in (None, "caption"))
    text.add_translate_command(commands, common, options=command in (None, "translate"))
    text.add_summarize_command(commands, common, options=command in (None, "summarize"))
    export.add_command(commands, common)

    from mmseq.serve.cli import add_serve_command  # here: it imports mmseq.cli

    add_serve_command(commands, common)
    data.add_command(commands, common)
    tokenizer.add_command(commands, common)
    for name, summary in TRAINING_HELP.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


TRAINING_HELP = {
    "fit": "train: mmseq fit --config configs/X.yaml (LightningCLI; --help for every option)",
    "validate": "validation metrics of a checkpoint: --config X.yaml --ckpt_path C.ckpt",
    "test": "test metrics of a checkpoint: --config X.yaml --ckpt_path C.ckpt",
    "predict": "decode a split to JSON lines: --config X.yaml --ckpt_path C.ckpt",
}


DEBUG_FLAG = "--debug"  # anywhere on the command line: a traceback instead of the one line


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("MMSEQ_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if argv and argv[0] in TRAINING_HELP:  # LightningCLI parses its own arguments
        from mmseq.data.errors import DataError
        from mmseq.errors import CheckpointError, NonFiniteError
        from mmseq.training.cli import run

        try:
            run(argv)
        except (CheckpointError, DataError, NonFiniteError) as err:  # not a bug: no traceback
            if debug:
                raise
            print(escape_controls(f"mmseq {argv[0]}: error: {err}"), file=sys.stderr)
            return 2
        return 0
    argv = _openai_verbose(argv)
    # the command, after -q say; "" (no command's options) for `mmseq --help` and --version
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("%(message)s"))  # names and texts from the inputs
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    try:
        return args.run(args)
    except (ValueError, OSError) as err:  # bad input: say what was expected, no traceback
        if debug:
            raise
        print(escape_controls(f"mmseq: error: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

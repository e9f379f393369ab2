"""`mmseq export`: a checkpoint written without Lightning or pickle (mmseq), or as Hugging Face
or openai-whisper."""

from __future__ import annotations

import argparse

EXPORT_FORMATS = ("mmseq", "hf", "openai")


def _export(args: argparse.Namespace) -> int:
    from mmseq.checkpoint import load_trained, save_folder

    trained = load_trained(args.checkpoint)
    if args.format == "hf":
        from mmseq.text.export import export_hf

        out = export_hf(trained, args.out)
        print(f"{out}: Hugging Face folder written from {args.checkpoint}")
    elif args.format == "openai":
        from mmseq.whisper.export import export_openai

        out = export_openai(trained, args.out)
        print(f"{out}: openai-whisper checkpoint written from {args.checkpoint}")
    else:
        out = save_folder(trained, args.out)
        print(f"{out}: mmseq folder written from {args.checkpoint} (no pickle; --model {out})")
    return 0


def add_command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    e = commands.add_parser(
        "export",
        help="write a checkpoint without Lightning: as mmseq, Hugging Face or openai-whisper",
        parents=[common],
        allow_abbrev=False,
    )
    e.add_argument("checkpoint", help="a .ckpt written by `mmseq fit`")
    e.add_argument(
        "out",
        help="the folder to write (must not exist, or be empty); --format openai: the .pt file "
        "(OUT/model.pt if OUT is a folder)",
    )
    e.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="mmseq",
        help="mmseq: config.json, tokenizer.json, model.safetensors, read by every mmseq "
        "command; hf: the Hugging Face folder a model fine-tuned from one (`pretrained:`) came "
        "from, or a fine-tuned Whisper's, for transformers; openai: a fine-tuned Whisper as an "
        "openai-whisper .pt, with NAME.tokenizer.json beside it (default: %(default)s)",
    )
    e.set_defaults(run=_export)

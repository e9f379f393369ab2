"""`mmseq` command line. Results go to stdout; logs, progress and errors to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("mmseq")


def _transcribe(args: argparse.Namespace) -> int:
    from mmseq.transcribe import TranscribeOptions, Transcriber

    started = time.perf_counter()
    transcriber = Transcriber(args.model, device=args.device)
    log.info("loaded %s in %.1f s", transcriber.whisper.source, time.perf_counter() - started)
    options = TranscribeOptions(
        beam_size=args.beam_size, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
    )
    started = time.perf_counter()
    failed = 0
    audio_seconds = 0.0
    for result in transcriber.iter_transcribe(args.files, options):
        if result.error:
            failed += 1
            print(f"mmseq: error: {result.error}", file=sys.stderr)
            continue
        audio_seconds += result.duration
        print(
            result.text if len(args.files) == 1 else f"{result.source}\t{result.text}", flush=True
        )
    wall = time.perf_counter() - started
    log.info(
        "transcribed %.1f s of audio in %.1f s (%.1fx real time)%s",
        audio_seconds,
        wall,
        audio_seconds / wall if wall else 0.0,
        f"; {failed} of {len(args.files)} file(s) failed" if failed else "",
    )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmseq",
        description="Multimodal sequence-to-sequence models: speech and images to text.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only print results and errors")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="speech to text with a Whisper model")
    t.add_argument(
        "files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...), up to 30 s each"
    )
    t.add_argument(
        "--model",
        default="tiny.en",
        help="'tiny.en' (embedded) or a checkpoint path: "
        "openai .pt, Hugging Face or CTranslate2 directory (default: %(default)s)",
    )
    t.add_argument("--beam-size", type=int, default=1, help="1 = greedy (default: %(default)s)")
    t.add_argument(
        "--batch-size", type=int, default=8, help="clips decoded together (default: %(default)s)"
    )
    t.add_argument(
        "--max-new-tokens", type=int, default=None, help="default: the model's n_ctx // 2"
    )
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")
    t.set_defaults(run=_transcribe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except (ValueError, OSError) as err:  # bad input: say what was expected, no traceback
        print(f"mmseq: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

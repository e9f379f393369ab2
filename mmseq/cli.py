"""`mmseq` command line. Results go to stdout; logs, progress and errors to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("mmseq")

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif", ".au"}


def expand_inputs(paths: Sequence[str]) -> list[str]:
    """Files as given; directories replaced by the audio files below them, sorted."""
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                suffixes = ", ".join(sorted(AUDIO_SUFFIXES))
                print(f"mmseq: warning: {name}: no audio files ({suffixes})", file=sys.stderr)
            files.extend(str(p) for p in found)
        else:
            files.append(name)
    return files


def _transcribe(args: argparse.Namespace) -> int:
    from mmseq.transcribe import TranscribeOptions, Transcriber
    from mmseq.writers import FORMATS, write_transcript

    files = expand_inputs(args.files)
    if not files:
        raise ValueError("no audio files to transcribe")
    options = TranscribeOptions(
        beam_size=args.beam_size,
        best_of=args.best_of,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperatures=tuple(args.temperature),
        condition_on_previous_text=args.condition_on_previous_text,
        without_timestamps=args.without_timestamps,
        initial_prompt=args.initial_prompt,
        word_timestamps=args.word_timestamps,
        vad=args.vad,
    )
    # an output folder without a format means every format, as in openai-whisper
    output_format = args.output_format or ("all" if args.output_dir else None)
    formats = list(FORMATS) if output_format == "all" else [output_format]
    output_dir = Path(args.output_dir or ".") if output_format else None

    started = time.perf_counter()
    transcriber = Transcriber(args.model, device=args.device, compute_type=args.compute_type)
    log.info("loaded %s in %.1f s", transcriber.whisper.source, time.perf_counter() - started)
    started = time.perf_counter()
    failed, audio_seconds = 0, 0.0
    with _progress(files, args.quiet) as advance:
        for result in transcriber.iter_transcribe(files, options, progress=advance):
            if result.error:
                failed += 1
                print(f"mmseq: error: {result.error}", file=sys.stderr)
                continue
            audio_seconds += result.duration
            line = result.text if len(files) == 1 else f"{result.source}\t{result.text}"
            print(line, flush=True)
            if output_dir is not None:
                write_transcript(result, output_dir, formats)
    wall = time.perf_counter() - started
    log.info(
        "transcribed %.1f s of audio in %.1f s (%.1fx real time)%s",
        audio_seconds,
        wall,
        audio_seconds / wall if wall else 0.0,
        f"; {failed} of {len(files)} file(s) failed" if failed else "",
    )
    return 1 if failed else 0


class _progress:
    """A rich progress bar on stderr over seconds of audio, with the real-time factor."""

    def __init__(self, files: list[str], quiet: bool) -> None:
        self.total = sum(_duration(f) for f in files)
        self.enabled = not quiet and sys.stderr.isatty()

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.started = time.perf_counter()
        self.bar = Progress(
            TextColumn("transcribing"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s audio"),
            TextColumn("{task.fields[rtf]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("audio", total=self.total or None, rtf="")
        return self.advance

    def advance(self, seconds: float) -> None:
        task = self.bar.tasks[0]
        rate = (task.completed + seconds) / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=seconds, rtf=f"{rate:.1f}x real time")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


def _duration(path: str) -> float:
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the transcriber
        return 0.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmseq",
        description="Multimodal sequence-to-sequence models: speech and images to text.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only results and errors on the terminal",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser(
        "transcribe", help="speech to text with a Whisper model", parents=[common]
    )
    add = t.add_argument
    add("files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...) or directories")
    add(
        "--model",
        default="tiny.en",
        help="'tiny.en' (embedded) or a checkpoint path: openai "
        ".pt, Hugging Face or CTranslate2 directory (default: %(default)s)",
    )
    add("--beam-size", type=int, default=1, help="1 = greedy (default: %(default)s)")
    add(
        "--best-of",
        type=int,
        default=5,
        help="samples per window when falling back to temperature > 0 (default: %(default)s)",
    )
    add(
        "--temperature",
        type=float,
        nargs="+",
        default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        help="temperatures tried in turn when a window's text looks wrong (default: 0 .. 1)",
    )
    add(
        "--no-condition-on-previous-text",
        dest="condition_on_previous_text",
        action="store_false",
        help="do not prompt each window with the previous text",
    )
    add("--without-timestamps", action="store_true", help="one segment per 30 s window")
    add("--initial-prompt", default=None, help="text to prompt the first window with")
    add("--word-timestamps", action="store_true", help="time each word (JSON output has them)")
    add(
        "--vad",
        action="store_true",
        help="batched path: transcribe only the speech that "
        "Silero VAD finds, in chunks of up to 30 s decoded together",
    )
    add("--batch-size", type=int, default=8, help="files decoded together (default: %(default)s)")
    add("--max-new-tokens", type=int, default=None, help="default: the model's n_ctx // 2")
    add(
        "--output-format",
        choices=["txt", "srt", "vtt", "tsv", "json", "all"],
        default=None,
        help="also write <output-dir>/<input stem>.<format> files",
    )
    add("--output-dir", default=None, help="where to write files (default: .; alone: all formats)")
    add("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")
    add(
        "--compute-type",
        default="float32",
        choices=["float32", "bfloat16", "float16", "int8"],
        help="weights' precision (default: %(default)s)",
    )
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

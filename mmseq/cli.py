"""`mmseq` command line. Results go to stdout; logs, progress and errors to stderr."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from itertools import chain, islice
from pathlib import Path
from typing import Any

from mmseq import __version__
from mmseq.config import (
    COMPUTE_TYPES,
    DEFAULT_WHISPER,
    TEMPERATURE_INCREMENT,
    fallback_temperatures,
)
from mmseq.terminal import EscapingFormatter, escape_controls, for_stream, json_line

log = logging.getLogger("mmseq")

# = mmseq.data.images.DEFAULT_MAX_PIXELS (Pillow's limit), without importing torchvision here
DEFAULT_MAX_PIXELS = 89_478_485

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aiff", ".aif", ".au"}


def expand_inputs(paths: Sequence[str], suffixes: set[str] = AUDIO_SUFFIXES) -> list[str]:
    """Files as given; directories replaced by the files below them with `suffixes`, sorted.

    ValueError naming the first path that does not exist: checked here, before any model
    loads, so that a typo costs no loading time."""
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise ValueError(f"{name}: no such file or directory")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
            if not found:
                wanted = ", ".join(sorted(suffixes))
                warning = f"mmseq: warning: {name}: no matching files ({wanted})"
                print(escape_controls(warning), file=sys.stderr)
            files.extend(str(p) for p in found)
        else:
            files.append(name)
    return files


def _transcribe(args: argparse.Namespace) -> int:
    from mmseq.transcription import Transcriber
    from mmseq.writers import FORMATS, write_transcript

    files = expand_inputs(args.files)
    if not files:
        raise ValueError("no audio files to transcribe")
    if args.explain:
        _check_explain_dir(args.explain)  # before the model loads
    if args.vad and importlib.util.find_spec("silero_vad") is None:
        raise ValueError("--vad needs the silero-vad package: pip install 'mmseq[vad]'")
    _refuse_openai_only(args)
    try:
        options, subtitles = _transcribe_options(args)
    except ValueError as err:  # name the flags, not the Python fields
        raise ValueError(_as_flags(str(err))) from None
    if args.threads:  # 0 or absent: PyTorch's default, as openai-whisper's --threads 0
        if args.threads < 0:
            raise ValueError(f"--threads: expected a positive number, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    # an output folder without a format means every format, as in openai-whisper
    output_format = args.output_format or ("all" if args.output_dir else None)
    formats = list(FORMATS) if output_format == "all" else [output_format]
    output_dir = Path(args.output_dir or ".") if output_format else None
    if output_dir is not None:
        _check_outputs(files, output_dir)  # before the model loads, not after the work

    from mmseq.checkpoint import is_trained
    from mmseq.precision import check_device

    args.compute_type = _fp16_compute_type(args)
    # before the model loads; "auto" becomes the device it picked
    args.device = check_device(args.device, args.compute_type)
    started = time.perf_counter()
    model = args.model

    if is_trained(model):  # a .ckpt or an mmseq folder written by `mmseq export`
        from mmseq.checkpoint import load_trained
        from mmseq.inference import whisper_from_trained

        trained = load_trained(model, args.device)
        model = whisper_from_trained(trained)
        if model is None:  # trained from scratch: no Whisper long-form conventions
            return _transcribe_chunks(trained, files, args, options)
    transcriber = Transcriber(
        model, device=args.device, compute_type=args.compute_type, compile=args.compile
    )
    log.info("loaded %s in %.1f s", transcriber.whisper.source, time.perf_counter() - started)
    # --verbose lines are the results on a terminal; in a pipe they are progress, on stderr,
    # and stdout gets the transcripts as without --verbose
    shown = args.verbose and sys.stdout.isatty()
    if args.verbose:
        transcriber = VerboseTranscriber(transcriber, sys.stdout if shown else sys.stderr)
    figures = None
    if args.explain:
        from mmseq.explain import explain_transcript, explanation_paths

        _make_explain_dir(args.explain)
        figures = iter(explanation_paths(files, args.explain))
    started = time.perf_counter()
    failed, audio_seconds = 0, 0.0
    with _progress(files, args.quiet) as advance:
        for result in transcriber.iter_transcribe(files, options=options, progress=advance):
            figure = None if figures is None else next(figures)
            if result.error:
                failed += 1
                print(escape_controls(f"mmseq: error: {result.error}"), file=sys.stderr)
                continue
            audio_seconds += result.duration
            if args.language is None and transcriber.whisper.tokenizer.is_multilingual:
                log.info("%s: detected language %s", result.source, result.language)
            line = result.text if len(files) == 1 else f"{result.source}\t{result.text}"
            if not shown:
                print(for_stream(line), flush=True)
            if output_dir is not None:
                for path in write_transcript(result, output_dir, formats, subtitles):
                    if not args.output_dir:  # files in the working folder: say which
                        log.info("wrote %s", os.path.join(".", path))
            if figure is not None:
                explain_transcript(result).save(figure)
    wall = time.perf_counter() - started
    log.info(
        "transcribed %.1f s of audio in %.1f s (%.1fx real time)%s",
        audio_seconds,
        wall,
        audio_seconds / wall if wall else 0.0,
        f"; {failed} of {len(files)} file(s) failed" if failed else "",
    )
    return 1 if failed else 0


def _transcribe_options(args: argparse.Namespace):  # noqa: ANN202 - two option types
    from mmseq.transcription import TranscribeOptions
    from mmseq.writers import SubtitleOptions

    if args.vad_parameters is not None and not args.vad:
        raise ValueError("--vad-parameters: they tune --vad; add --vad")
    vad_options = {} if args.vad_parameters is None else {"vad_options": args.vad_parameters}
    options = _from_args(
        TranscribeOptions,
        args,
        temperatures=fallback_temperatures(
            args.temperature, args.temperature_increment_on_fallback
        ),
        keep_alignments=bool(args.explain),  # the transcripts stay as asked
        **vad_options,
    )
    subtitles = _from_args(SubtitleOptions, args)
    if subtitles != SubtitleOptions() and not args.word_timestamps:
        raise ValueError(
            "--max-line-width, --max-line-count, --max-words-per-line and --highlight-words "
            "cut subtitles by their words: add --word-timestamps"
        )
    return options, subtitles


def _from_args(cls: type, args: argparse.Namespace, **overrides: object):  # noqa: ANN202
    """An options dataclass from the flags named like its fields (--beam-size: beam_size)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**(given | overrides))


# openai-whisper's defaults, which `mmseq transcribe` equals
DEFAULT_TEMPERATURE = 0.0


class VerboseTranscriber:
    """A Transcriber whose iter_transcribe also prints each segment as its window is decided,
    as `[00:00.000 --> 00:04.000] text` (openai-whisper's --verbose lines); files go one at a
    time, as in openai-whisper, so that their lines do not interleave. With vad the chunks of
    a file are decoded together and put back on the recording at its end: its lines come then.
    """

    def __init__(self, transcriber: Any, stream: Any) -> None:  # noqa: ANN401
        self.transcriber, self.stream = transcriber, stream

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - .whisper and the rest
        return getattr(self.transcriber, name)

    def iter_transcribe(
        self,
        inputs: Sequence[str],
        options: Any = None,  # noqa: ANN401
        *,
        progress: Any = None,  # noqa: ANN401
    ) -> Iterator[Any]:
        from mmseq.transcription import LiveBatch, TranscribeOptions

        options = options or TranscribeOptions()
        if options.vad:
            for transcript in self.transcriber.iter_transcribe(
                inputs, options=options, progress=progress
            ):
                self._show(transcript.segments)
                yield transcript
            return
        for index, item in enumerate(inputs):
            live = LiveBatch(self.transcriber, options, progress)
            transcript, shown = live.add(index, item), 0
            while transcript is None:
                finished = live.step()
                current = finished[0][1] if finished else live.transcript(index)
                self._show(current.segments[shown:])
                shown = len(current.segments)
                transcript = current if finished else None
            yield transcript

    def _show(self, segments: Sequence[Any]) -> None:
        for segment in segments:
            line = f"[{_clock(segment.start)} --> {_clock(segment.end)}] {segment.text}"
            print(for_stream(line, self.stream), file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    """openai-whisper's verbose timestamps: 64.5 -> '01:04.500'; hours only when there are."""
    from mmseq.writers import format_timestamp

    text = format_timestamp(seconds, ".")
    return text[3:] if text.startswith("00:") else text


# openai-whisper transcribe options that mmseq lacks -> (its default value, why it is refused
# otherwise). Their default values are taken, so scripts that spell them out run unchanged.
OPENAI_ONLY = {
    "model_dir": (None, "mmseq downloads nothing: give the checkpoint file or folder to --model"),
    "suppress_tokens": ("-1", "mmseq suppresses openai-whisper's default set, -1"),
    "prepend_punctuations": ("\"'“¿([{-", "mmseq merges its default set"),
    "append_punctuations": ("\"'.。,，!！?？:：”)]}、", "mmseq merges its default set"),
}


def _refuse_openai_only(args: argparse.Namespace) -> None:
    for name, (default, why) in OPENAI_ONLY.items():
        value = getattr(args, f"openai_{name}", None)  # absent unless given
        if value is not None and value not in (default, "None"):
            raise ValueError(f"--{name} {value}: not supported ({why})")


def _fp16_compute_type(args: argparse.Namespace) -> str:
    """openai-whisper's --fp16 (True there by default, so ported scripts often spell it out):
    True is --compute-type float16 on a GPU, and on the CPU float32 with openai-whisper's
    warning; False is float32. Either way it must agree with an explicit --compute-type."""
    if args.fp16 is None:
        return args.compute_type
    if args.compute_type != "float32":
        raise ValueError(f"--fp16 {args.fp16} with --compute-type {args.compute_type}: give one")
    if not args.fp16:
        return "float32"
    import torch

    device = str(args.device)
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "float16"
    log.warning("--fp16 True: FP16 is not supported on CPU; using float32 (as openai-whisper)")
    return "float32"


# option fields whose CLI flag is not simply --the-field-name
_FLAGS = {"temperatures": "--temperature", "vad_options": "--vad-parameters"}
_FLAGGED = (
    "beam_size best_of batch_size max_new_tokens temperatures initial_prompt "
    "carry_initial_prompt word_timestamps hallucination_silence_threshold clip_timestamps "
    "compression_ratio_threshold logprob_threshold no_speech_threshold max_line_width "
    "max_line_count max_words_per_line highlight_words patience length_penalty"
).split()


def _as_flags(message: str) -> str:
    """'max_line_count needs max_line_width' -> '--max-line-count needs --max-line-width'."""
    pattern = r"\b(" + "|".join(_FLAGGED) + r")\b"
    return re.sub(pattern, lambda m: _FLAGS.get(m[1], "--" + m[1].replace("_", "-")), message)


def _check_outputs(files: list[str], output_dir: Path) -> None:
    """Refuse inputs that would overwrite each other's files (same stem), and a folder that
    cannot be written, before any work is done."""
    by_stem: dict[str, str] = {}
    for name in files:
        stem = Path(name).stem
        if stem in by_stem:
            raise ValueError(
                f"{by_stem[stem]} and {name} would both write {output_dir / stem}.*: "
                "transcribe them into different --output-dir folders"
            )
        by_stem[stem] = name
    _make_dir("--output-dir", output_dir)
    if not os.access(output_dir, os.W_OK):
        raise ValueError(f"--output-dir {output_dir}: not writable")


# what a speech model trained from scratch follows of the transcription options (the others
# need Whisper's conventions: timestamps, languages, prompts, temperature fallback, VAD)
_CHUNK_OPTIONS = {
    "beam_size",
    "batch_size",
    "max_new_tokens",
    "keep_alignments",
    "vad",
    "vad_options",
}
CHUNK_MAX_NEW_TOKENS = 128  # ChunkTranscriber's default


def _transcribe_chunks(trained, files: list[str], args: argparse.Namespace, options) -> int:  # noqa: ANN001
    """Speech models trained from scratch with `mmseq fit`: text only, 30 s chunks. Options
    they cannot follow are refused, not dropped."""
    from mmseq.inference import ChunkTranscriber
    from mmseq.serialization import write_text_atomic
    from mmseq.transcription import TranscribeOptions

    defaults = TranscribeOptions()
    unfollowed = [
        _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        for f in fields(options)
        if f.name not in _CHUNK_OPTIONS and getattr(options, f.name) != getattr(defaults, f.name)
    ]
    unfollowed += ["--compute-type"] if args.compute_type != "float32" else []
    unfollowed += ["--compile"] if args.compile else []
    unfollowed += ["--verbose"] if args.verbose else []  # its lines come from Whisper's windows
    if unfollowed:
        raise ValueError(
            f"{args.model} is a speech model trained from scratch (its own tokenizer, text "
            f"only, 30 s chunks): it cannot follow {', '.join(unfollowed)}; those need a "
            "Whisper model or fine-tune (it follows --beam-size, --batch-size, --max-new-tokens, "
            "--vad, --vad-parameters)"
        )
    if args.explain:
        raise ValueError(
            f"--explain: {args.model} is a speech model trained from scratch (its own "
            "tokenizer, no 30 s windows): it decodes no timestamps and has no alignment heads, "
            "so there is no word alignment to draw; --explain needs a Whisper model or fine-tune"
        )

    if args.output_format not in (None, "txt"):
        raise ValueError(
            f"--output-format {args.output_format}: a model trained from scratch gives text "
            "only (no timestamps); use txt"
        )
    transcriber = ChunkTranscriber(
        trained,
        num_beams=args.beam_size,
        max_new_tokens=args.max_new_tokens or CHUNK_MAX_NEW_TOKENS,
    )
    failed = 0
    for name in files:
        vad = options.vad_options if options.vad else None
        result = transcriber.transcribe(name, batch_size=args.batch_size, vad=vad)
        if result.error:
            failed += 1
            print(escape_controls(f"mmseq: error: {result.error}"), file=sys.stderr)
            continue
        line = result.text if len(files) == 1 else f"{name}\t{result.text}"
        print(for_stream(line), flush=True)
        if args.output_dir or args.output_format:
            out = Path(args.output_dir or ".")
            out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / f"{Path(name).stem}.txt", result.text + "\n")
            if not args.output_dir:  # the working folder: say which file
                log.info("wrote %s", os.path.join(".", out / f"{Path(name).stem}.txt"))
    return 1 if failed else 0


def _check_explain_dir(name: str) -> None:
    if Path(name).exists() and not Path(name).is_dir():
        raise ValueError(f"--explain {name}: exists and is not a directory")


def _make_explain_dir(name: str) -> None:
    _check_explain_dir(name)
    _make_dir("--explain", Path(name))


def _make_dir(flag: str, path: Path) -> None:
    """Create the folder given to `flag`, or say why it cannot be created."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot create the directory ({err.strerror})") from None


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def _caption(args: argparse.Namespace) -> int:
    """Images named or found below folders, read lazily: each batch is decoded, captioned and
    written (flushed) before the next is listed, so memory does not grow with their number."""
    import json

    from mmseq.inference import Captioner
    from mmseq.precision import check_device

    first, files = _peek(iter_inputs(args.images, IMAGE_SUFFIXES), 2)
    if not first:
        raise ValueError("no images to caption")
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
            if args.output_format == "jsonl":
                row = {"image": result.image, "caption": result.caption}
                if figure is not None:
                    row["explanation"] = str(figure)
                print(json_line(json.dumps(row, ensure_ascii=False)), flush=True)
            else:
                line = result.caption if single else f"{result.image}\t{result.caption}"
                print(for_stream(line), flush=True)
    return 1 if failed else 0


def iter_inputs(paths: Sequence[str], suffixes: set[str], warn: bool = True) -> Iterator[str]:
    """`expand_inputs`, one name at a time: the same names in the same order, folders listed
    as they are reached. ValueError naming the first path that does not exist, at once."""
    for name in paths:
        if not Path(name).exists():
            raise ValueError(f"{name}: no such file or directory")
    return _walk_inputs(paths, suffixes, warn)


def _walk_inputs(paths: Sequence[str], suffixes: set[str], warn: bool) -> Iterator[str]:
    for name in paths:
        if not Path(name).is_dir():
            yield name
            continue
        found = 0
        for item in _below(Path(name), suffixes):
            found += 1
            yield item
        if not found and warn:
            wanted = ", ".join(sorted(suffixes))
            warning = f"mmseq: warning: {name}: no matching files ({wanted})"
            print(escape_controls(warning), file=sys.stderr)


def _below(folder: Path, suffixes: set[str]) -> Iterator[str]:
    """sorted(folder.rglob("*")) with `suffixes`, as str, one folder's listing at a time:
    entries by name, each folder's contents right after it (links to folders not followed)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except PermissionError:
        return
    for entry in entries:
        path = folder / entry.name
        if path.suffix.lower() in suffixes:
            yield str(path)
        if entry.is_dir() and not entry.is_symlink():
            yield from _below(path, suffixes)


def _peek(items: Iterator[str], n: int) -> tuple[list[str], Iterator[str]]:
    """The first `n` items, and an iterator over all of them (those first included)."""
    first = list(islice(items, n))
    return first, chain(first, items)


def _make_demo(args: argparse.Namespace) -> int:
    import json

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


class _counter:
    """A rich progress bar on stderr over a number of files (only on a terminal)."""

    def __init__(self, total: int, label: str, quiet: bool) -> None:
        self.total, self.label = total, label
        self.enabled = not quiet and sys.stderr.isatty() and total > 1

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        self.bar = Progress(transient=True, console=None)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


class _progress:
    """A rich progress bar on stderr over seconds of audio, with the real-time factor."""

    def __init__(self, files: list[str], quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = sum(map(_duration, files)) if self.enabled else 0.0

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
    from mmseq.data.audio import header_seconds

    return header_seconds(path)  # 0.0 when unreadable: the transcriber reports those


def _optional_float(text: str) -> float | None:
    """A float, or None for 'none' (a threshold switched off)."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


FORMAT_CHOICES = ("txt", "srt", "vtt", "tsv", "json", "all")

TRANSCRIBE_EPILOG = (
    "openai-whisper's spellings work too (not listed above): every --a-b option as --a_b "
    "(--beam_size 5, --output_format srt, --temperature_increment_on_fallback 0.2), a flag's "
    "with True or False (--word_timestamps True, --condition_on_previous_text False, --verbose "
    "True), -o DIR, -f FORMAT. --fp16 True is --compute-type float16 on a GPU, float32 on the "
    "CPU (with a warning, as openai-whisper); --model_dir, "
    "--suppress_tokens, --prepend_punctuations and --append_punctuations are accepted at "
    "openai-whisper's defaults only (what mmseq does)."
)


def add_device_option(add: Callable[..., Any]) -> None:
    """`--device` as every model-running command takes it (mmseq.precision.check_device reads
    it before a model loads)."""
    add(
        "--device",
        default="auto",
        help="auto (CUDA when present, else cpu), cpu, cuda, cuda:1, ... (default: %(default)s)",
    )


def add_compute_type_option(add: Callable[..., Any], what: str) -> None:
    """`--compute-type` (COMPUTE_TYPES, float32 by default); `what` opens its help."""
    add(
        "--compute-type",
        default="float32",
        choices=COMPUTE_TYPES,
        help=f"{what} (default: %(default)s)",
    )


def _str2bool(text: str) -> bool:
    """openai-whisper's True/False option values (any case)."""
    value = {"true": True, "false": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return value


def _add_underscore_aliases(parser: argparse.ArgumentParser) -> None:
    """Hidden openai-whisper spellings of every --hyphenated option: --beam_size for
    --beam-size; a flag's takes openai-whisper's True/False value and is named by what it sets
    (--word_timestamps True, --condition_on_previous_text False for --no-condition-...)."""
    for action in list(parser._actions):
        names = [s for s in action.option_strings if s.startswith("--") and "-" in s[2:]]
        if not names:
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            name = f"--{action.dest}"
            alias = {"dest": action.dest, "type": _str2bool, "metavar": "True|False"}
        else:
            name = "--" + names[0][2:].replace("-", "_")
            alias = {"dest": action.dest, "type": action.type, "choices": action.choices}
        if name[2:].replace("_", "") == name[2:] or name in parser._option_string_actions:
            continue  # --vad, say: the same in both spellings
        parser.add_argument(name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias)


def _openai_verbose(argv: list[str]) -> list[str]:
    """openai-whisper's `--verbose True|False` as mmseq's --verbose flag, which cannot take a
    value: an optional value (nargs="?") would take the input file that follows the flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        if arg == "--":  # the rest are inputs
            return out + argv[i:]
        if arg.startswith("--verbose="):
            value = arg.partition("=")[2]
        elif arg == "--verbose" and i + 1 < len(argv) and argv[i + 1].lower() in ("true", "false"):
            value, i = argv[i + 1], i + 1
        if value is None or value.lower() not in ("true", "false"):
            out.append(arg)  # argparse names a bad --verbose=VALUE
        elif value.lower() == "true":
            out.append("--verbose")
        i += 1
    return out


# faster-whisper's vad_parameters names (and mmseq's max_gap_s) -> mmseq's VadOptions fields
VAD_PARAMETERS = {
    "threshold": "threshold",
    "neg_threshold": "neg_threshold",
    "min_speech_duration_ms": "min_speech_ms",
    "min_silence_duration_ms": "min_silence_ms",
    "speech_pad_ms": "speech_pad_ms",
    "max_speech_duration_s": "max_chunk_s",
    "max_gap_s": "max_gap_s",
}


def vad_parameters(text: str):  # noqa: ANN201 - a VadOptions, imported with torch
    """'threshold=0.6,min_silence_duration_ms=1000' or the JSON object -> VadOptions; the
    parameters not given keep mmseq's defaults. ArgumentTypeError names a bad key or value."""
    import json

    from mmseq.data.vad import VadOptions

    if text.strip().startswith("{"):
        try:
            given = json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"not a JSON object ({err})") from None
    else:
        given = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
            given[key.strip()] = value.strip()
    if not isinstance(given, dict):
        raise argparse.ArgumentTypeError(f"expected key=value,... or a JSON object, got {text!r}")
    longest = VadOptions.max_chunk_s  # one Whisper window
    checks = {  # field -> (valid, what is expected)
        "threshold": (lambda x: 0 < x < 1, "a probability between 0 and 1"),
        "neg_threshold": (lambda x: 0 < x < 1, "a probability between 0 and 1"),
        "min_speech_ms": (lambda x: x >= 0, "milliseconds >= 0"),
        "min_silence_ms": (lambda x: x >= 0, "milliseconds >= 0"),
        "speech_pad_ms": (lambda x: x >= 0, "milliseconds >= 0"),
        "max_chunk_s": (lambda x: 1 < x <= longest, f"seconds > 1, at most {longest:g} (a window)"),
        "max_gap_s": (lambda x: x >= 0, "seconds >= 0"),
    }
    options = {}
    for key, value in given.items():
        if key not in VAD_PARAMETERS:
            raise argparse.ArgumentTypeError(
                f"unknown parameter {key!r}; accepted: {', '.join(VAD_PARAMETERS)}"
            )
        name = VAD_PARAMETERS[key]
        if name == "neg_threshold" and str(value).lower() in ("none", "null"):
            options[name] = None  # faster-whisper's default: silero's threshold - 0.15
            continue
        valid, expected = checks[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if name.endswith("_ms") and number.is_integer():
            number = int(number)
        elif name.endswith("_ms"):
            number = math.nan  # milliseconds are whole
        if not valid(number):
            raise argparse.ArgumentTypeError(f"{key}: expected {expected}, got {value!r}")
        options[name] = number
    return VadOptions(**options)


def _names(text: str) -> list[str]:
    """'source,target' -> ['source', 'target']; '' -> []."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _seconds_list(text: str) -> tuple[float, ...]:
    """'5,20,30.5' -> (5.0, 20.0, 30.5)"""
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds separated by commas (start,end,...), got {text!r}"
        ) from None


class NoAbbrevParser(argparse.ArgumentParser):
    """argparse without prefix matching, for the parser and (as their class) every
    subcommand's: `--word` is a typo, not `--word-timestamps`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
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

    t = commands.add_parser(
        "transcribe",
        help="speech to text with a Whisper model",
        parents=[common],
        epilog=TRANSCRIBE_EPILOG,
    )
    add = t.add_argument
    add("files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...) or directories")
    add(
        "--model",
        default=DEFAULT_WHISPER,
        help="embedded: 'tiny.en' (English) or 'base' (99 languages; extra 'base'); or a "
        "checkpoint path: openai .pt, Hugging Face or CTranslate2 directory "
        "(default: %(default)s)",
    )
    add(
        "--beam-size",
        type=int,
        default=1,
        help="beams at temperature 0, openai-whisper's beam search; 1 = greedy "
        "(default: %(default)s; openai-whisper's and faster-whisper's command lines use 5)",
    )
    add(
        "--patience",
        type=_optional_float,
        default=None,
        help="beam search: stop once beam size x patience hypotheses have finished (default: 1.0)",
    )
    add(
        "--length-penalty",
        type=_optional_float,
        default=None,
        metavar="ALPHA",
        help="rank finished beams and best-of samples by log-probability / ((5 + length) / 6) "
        "** ALPHA, ALPHA from 0 to 1 (default: log-probability / length)",
    )
    add(
        "--best-of",
        type=int,
        default=5,
        help="samples per window when falling back to temperature > 0 (default: %(default)s)",
    )
    add(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help="sampling temperature of each window's first decoding (default: %(default)s)",
    )
    add(
        "--temperature-increment-on-fallback",
        type=_optional_float,
        default=TEMPERATURE_INCREMENT,
        metavar="INCREMENT",
        help="decode a window again this much hotter, up to 1.0, while its text looks wrong "
        "(see the thresholds); 'none': never (default: %(default)s: 0, 0.2, ..., 1.0)",
    )
    add(
        "--no-condition-on-previous-text",
        dest="condition_on_previous_text",
        action="store_false",
        help="do not prompt each window with the previous text",
    )
    add(
        "--without-timestamps",
        action="store_true",
        help="no timestamp tokens: one segment per 30 s window, whose text may stop before "
        "the window's end (as openai-whisper); with --vad one per speech chunk, or per "
        "sentence with --word-timestamps (faster, and with tiny.en as accurate, measured)",
    )
    add(
        "--initial-prompt",
        default=None,
        help="text to prompt the first window with (names, spellings, style), as if said before",
    )
    add(
        "--carry-initial-prompt",
        action="store_true",
        help="prompt every window with --initial-prompt, not only the first",
    )
    add(
        "--compression-ratio-threshold",
        type=_optional_float,
        default=2.4,
        help="fall back to the next temperature when a window's text compresses better than "
        "this with gzip: a loop ('none': never) (default: %(default)s)",
    )
    add(
        "--logprob-threshold",
        type=_optional_float,
        default=-1.0,
        help="fall back when a window's average token log-probability is lower ('none': "
        "never) (default: %(default)s)",
    )
    add(
        "--no-speech-threshold",
        type=_optional_float,
        default=0.6,
        help="skip a window as silence when its no-speech probability is higher and its "
        "log-probability is below --logprob-threshold ('none': never) (default: %(default)s)",
    )
    add(
        "--language",
        default=None,
        help="spoken language code (en, de, zh, ...) of a multilingual model (default: "
        "detected per file from its first 30 s; per speech chunk with --vad)",
    )
    add(
        "--task",
        choices=["transcribe", "translate"],
        default="transcribe",
        help="translate: English text from speech in any language (multilingual models)",
    )
    add("--word-timestamps", action="store_true", help="time each word (JSON output has them)")
    add(
        "--raw-timestamps",
        action="store_true",
        help="keep openai-whisper's segment times, which can run over silence and noise "
        "(default: each segment is tightened onto the words heard in it; tokens are the same)",
    )
    add(
        "--hallucination-silence-threshold",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --word-timestamps: skip silences longer than this before text whose words "
        "look invented (improbable, too short or too long), as openai-whisper's option",
    )
    add(
        "--explain",
        metavar="DIR",
        default=None,
        help="save DIR/<input stem>.png per file: a word-by-time alignment plot, the "
        "cross-attention of the alignment heads that word timestamps use (a fine-tune's: every "
        "head of the upper half of the decoder layers) with the DTW path, one panel per 30 s "
        "window. Transcripts are unchanged. Refused for a model trained from scratch (no "
        "timestamps to align)",
    )
    add(
        "--vad",
        action="store_true",
        help="batched path: transcribe only the speech that Silero VAD finds, packed into "
        "chunks of up to 30 s of speech (pauses over 3 s start a new one) decoded together",
    )
    add(
        "--vad-parameters",
        type=vad_parameters,
        default=None,
        metavar="KEY=VALUE,...",
        help="with --vad, as faster-whisper's vad_parameters: threshold, neg_threshold, "
        "min_speech_duration_ms, min_silence_duration_ms, speech_pad_ms, max_speech_duration_s "
        "(at most 30), or mmseq's max_gap_s; as key=value,... or a JSON object; the others "
        "keep mmseq's defaults (mmseq.data.vad.VadOptions)",
    )
    add(
        "--clip-timestamps",
        type=_seconds_list,
        default=(),
        metavar="START,END,...",
        help="transcribe only these parts, in seconds: start,end,start,end,... (an odd last "
        "start runs to the end of the file); as openai-whisper's option, not with --vad",
    )
    add("--batch-size", type=int, default=8, help="files decoded together (default: %(default)s)")
    add("--max-new-tokens", type=int, default=None, help="default: the model's n_ctx // 2")
    add(
        "--output-format",
        choices=FORMAT_CHOICES,
        default=None,
        help="also write <output-dir>/<input stem>.<format> files",
    )
    add("--output-dir", default=None, help="where to write files (default: .; alone: all formats)")
    add("-o", dest="output_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # openai's
    add("-f", dest="output_format", choices=FORMAT_CHOICES, help=argparse.SUPPRESS)  # openai's
    cues = t.add_argument_group(
        "subtitles", "how SRT/VTT cues are cut, by their words (needs --word-timestamps)"
    )
    cues.add_argument("--max-line-width", type=int, help="characters per line")
    cues.add_argument("--max-line-count", type=int, help="lines per cue (with --max-line-width)")
    cues.add_argument(
        "--max-words-per-line", type=int, help="words per cue (not with --max-line-width)"
    )
    cues.add_argument(
        "--highlight-words", action="store_true", help="underline each word as it is spoken"
    )
    add_device_option(add)
    add("--threads", type=int, default=None, help="CPU threads (default, or 0: PyTorch's)")
    add_compute_type_option(add, "weights' precision")
    add(
        "--compile",
        action="store_true",
        help="run the model through torch.compile: tens of seconds to compile first, then "
        "faster decoding (worth it for long or many files)",
    )
    add(
        "--verbose",
        action="store_true",
        help="print each segment as '[00:00.000 --> 00:04.000] text' once decided (on stderr "
        "when stdout is not a terminal, where the transcripts go as without it)",
    )
    # openai-whisper's options that mmseq has no flag for: see _fp16_compute_type, OPENAI_ONLY
    add("--fp16", type=_str2bool, default=None, metavar="True|False", help=argparse.SUPPRESS)
    for name in OPENAI_ONLY:
        add(f"--{name}", dest=f"openai_{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    _add_underscore_aliases(t)
    t.set_defaults(run=_transcribe)

    c = commands.add_parser(
        "caption", help="image to text with a model trained by `mmseq fit`", parents=[common]
    )
    add = c.add_argument
    add("images", nargs="+", help="image files or directories")
    add(
        "--model",
        required=True,
        help="a .ckpt written by `mmseq fit`, or a Hugging Face VisionEncoderDecoderModel "
        "folder (ViT + GPT-2, with its tokenizer files)",
    )
    add("--beam-size", type=int, default=3, help="1 = greedy (default: %(default)s)")
    add("--batch-size", type=int, default=16, help="images decoded together (default: %(default)s)")
    add("--max-new-tokens", type=int, default=48, help="(default: %(default)s)")
    add(
        "--output-format",
        choices=["text", "jsonl"],
        default="text",
        help='text, or JSON lines {"image", "caption"} (default: %(default)s)',
    )
    add(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
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
    c.set_defaults(run=_caption)

    from mmseq.cli_text import add_text_commands

    add_text_commands(commands, common)

    from mmseq.serve.cli import add_serve_command

    add_serve_command(commands, common)

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

    for name, text in TRAINING_HELP.items():
        commands.add_parser(name, help=text, add_help=False)
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
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

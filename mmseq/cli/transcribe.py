"""`mmseq transcribe`: speech to text with a Whisper model (or a speech model trained by
`mmseq fit`)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from mmseq.cli.common import (
    _check_explain_dir,
    _make_dir,
    _make_explain_dir,
    _optional_float,
    _progress,
    add_compute_type_option,
    add_device_option,
    add_field,
    expand_inputs,
    field_default,
    parameter_default,
)
from mmseq.cli.compat import (
    OPENAI_ONLY,
    TRANSCRIBE_EPILOG,
    _add_underscore_aliases,
    _fp16_compute_type,
    _refuse_openai_only,
    _str2bool,
    vad_parameters,
)
from mmseq.config import DEFAULT_WHISPER, TEMPERATURE_INCREMENT, fallback_temperatures
from mmseq.jobs.options import add_job_options, is_job
from mmseq.terminal import escape_controls, for_stream

log = logging.getLogger("mmseq")


def _transcribe(args: argparse.Namespace) -> int:
    from mmseq.transcription import Transcriber
    from mmseq.writers import write_transcript

    files = expand_inputs(args.files)
    if not files:
        raise ValueError("no audio files to transcribe")
    if is_job(args):  # --devices, --num-nodes, --resume: Lightning's predict loop
        from mmseq.jobs import run_job

        return run_job("transcribe", args, files)
    if args.explain:
        _check_explain_dir(args.explain)  # before the model loads
    options, subtitles = checked_options(args)
    if args.threads:  # 0 or absent: PyTorch's default, as openai-whisper's --threads 0
        if args.threads < 0:
            raise ValueError(f"--threads: expected a positive number, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    formats, output_dir = checked_outputs(args, files)

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


def checked_options(args: argparse.Namespace):  # noqa: ANN201 - two option types
    """The TranscribeOptions and SubtitleOptions of `args`, or ValueError naming the flag;
    checked before any model loads (by the command and by its jobs, mmseq.jobs)."""
    if args.vad and importlib.util.find_spec("silero_vad") is None:
        raise ValueError("--vad needs the silero-vad package: pip install 'mmseq[vad]'")
    _refuse_openai_only(args)
    try:
        return _transcribe_options(args)
    except ValueError as err:  # name the flags, not the Python fields
        raise ValueError(_as_flags(str(err))) from None


def checked_outputs(args: argparse.Namespace, files: list[str]) -> tuple[list[str], Path | None]:
    """The transcript formats and the folder they are written to (None: stdout only), the
    files there checked writable before the model loads, not after the work. An output
    folder without a format means every format, as in openai-whisper."""
    from mmseq.writers import FORMATS

    output_format = args.output_format or ("all" if args.output_dir else None)
    formats = list(FORMATS) if output_format == "all" else [output_format]
    output_dir = Path(args.output_dir or ".") if output_format else None
    if output_dir is not None:
        _check_outputs(files, output_dir)
    return formats, output_dir


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
        max_new_tokens=args.max_new_tokens or parameter_default(ChunkTranscriber, "max_new_tokens"),
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


def add_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser, options: bool = True
) -> None:
    """`mmseq transcribe`; its options only with `options` (they import torch, with the
    option dataclasses that give their defaults)."""
    t = commands.add_parser(
        "transcribe",
        help="speech to text with a Whisper model",
        parents=[common],
        epilog=TRANSCRIBE_EPILOG,
    )
    t.set_defaults(run=_transcribe)
    if options:
        add_options(t)
        add_job_options(t.add_argument_group("many processes (mmseq.jobs)"))


def add_options(t: argparse.ArgumentParser) -> None:
    """The flags, in the order of `--help`. Those of TranscribeOptions' and SubtitleOptions'
    fields come from the fields (`add_field`: default, type); the rest are the command's."""
    from mmseq.transcription import TranscribeOptions
    from mmseq.whisper.decoding import TASKS
    from mmseq.writers import FORMATS, SubtitleOptions

    formats = (*FORMATS, "all")  # all: every format
    add = t.add_argument

    def field(name: str, help: str, **settings: object) -> None:
        add_field(add, TranscribeOptions, name, help, **settings)

    add("files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...) or directories")
    add(
        "--model",
        default=DEFAULT_WHISPER,
        help="embedded: 'tiny.en' (English) or 'base' (99 languages; extra 'base'); or a "
        "checkpoint path: openai .pt, Hugging Face or CTranslate2 directory "
        "(default: %(default)s)",
    )
    field(
        "beam_size",
        "beams at temperature 0, openai-whisper's beam search; 1 = greedy "
        "(default: %(default)s; openai-whisper's and faster-whisper's command lines use 5)",
    )
    field(
        "patience",
        "beam search: stop once beam size x patience hypotheses have finished (default: 1.0)",
    )
    field(
        "length_penalty",
        "rank finished beams and best-of samples by log-probability / ((5 + length) / 6) "
        "** ALPHA, ALPHA from 0 to 1 (default: log-probability / length)",
        metavar="ALPHA",
    )
    field(
        "best_of", "samples per window when falling back to temperature > 0 (default: %(default)s)"
    )
    # the field `temperatures` is the schedule that these two give (fallback_temperatures)
    add(
        "--temperature",
        type=float,
        default=field_default(TranscribeOptions, "temperatures")[0],
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
    field("condition_on_previous_text", "do not prompt each window with the previous text")
    field(
        "without_timestamps",
        "no timestamp tokens: one segment per 30 s window, whose text may stop before "
        "the window's end (as openai-whisper); with --vad one per speech chunk, or per "
        "sentence with --word-timestamps (faster, and with tiny.en as accurate, measured)",
    )
    field(
        "initial_prompt",
        "text to prompt the first window with (names, spellings, style), as if said before",
    )
    field("carry_initial_prompt", "prompt every window with --initial-prompt, not only the first")
    field(
        "compression_ratio_threshold",
        "fall back to the next temperature when a window's text compresses better than "
        "this with gzip: a loop ('none': never) (default: %(default)s)",
    )
    field(
        "logprob_threshold",
        "fall back when a window's average token log-probability is lower ('none': "
        "never) (default: %(default)s)",
    )
    field(
        "no_speech_threshold",
        "skip a window as silence when its no-speech probability is higher and its "
        "log-probability is below --logprob-threshold ('none': never) (default: %(default)s)",
    )
    field(
        "language",
        "spoken language code (en, de, zh, ...) of a multilingual model (default: "
        "detected per file from its first 30 s; per speech chunk with --vad)",
    )
    field(
        "task",
        "translate: English text from speech in any language (multilingual models)",
        choices=list(TASKS),
    )
    field("word_timestamps", "time each word (JSON output has them)")
    field(
        "raw_timestamps",
        "keep openai-whisper's segment times, which can run over silence and noise "
        "(default: each segment is tightened onto the words heard in it; tokens are the same)",
    )
    field(
        "hallucination_silence_threshold",
        "with --word-timestamps: skip silences longer than this before text whose words "
        "look invented (improbable, too short or too long), as openai-whisper's option",
        metavar="SECONDS",
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
    field(
        "vad",
        "batched path: transcribe only the speech that Silero VAD finds, packed into "
        "chunks of up to 30 s of speech (pauses over 3 s start a new one) decoded together",
    )
    add(
        "--vad-parameters",
        type=vad_parameters,
        default=None,  # the field `vad_options`' default
        metavar="KEY=VALUE,...",
        help="with --vad, as faster-whisper's vad_parameters: threshold, neg_threshold, "
        "min_speech_duration_ms, min_silence_duration_ms, speech_pad_ms, max_speech_duration_s "
        "(at most 30), or mmseq's max_gap_s; as key=value,... or a JSON object; the others "
        "keep mmseq's defaults (mmseq.data.vad.VadOptions)",
    )
    field(
        "clip_timestamps",
        "transcribe only these parts, in seconds: start,end,start,end,... (an odd last "
        "start runs to the end of the file); as openai-whisper's option, not with --vad",
        metavar="START,END,...",
    )
    field("batch_size", "files decoded together (default: %(default)s)")
    field("max_new_tokens", "default: the model's n_ctx // 2")
    add(
        "--output-format",
        choices=formats,
        default=None,
        help="also write <output-dir>/<input stem>.<format> files",
    )
    add("--output-dir", default=None, help="where to write files (default: .; alone: all formats)")
    add("-o", dest="output_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # openai's
    add("-f", dest="output_format", choices=formats, help=argparse.SUPPRESS)  # openai's
    cues = t.add_argument_group(
        "subtitles", "how SRT/VTT cues are cut, by their words (needs --word-timestamps)"
    )
    for name, help in SUBTITLE_HELP.items():
        add_field(cues.add_argument, SubtitleOptions, name, help)
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


SUBTITLE_HELP = {  # SubtitleOptions' fields
    "max_line_width": "characters per line",
    "max_line_count": "lines per cue (with --max-line-width)",
    "max_words_per_line": "words per cue (not with --max-line-width)",
    "highlight_words": "underline each word as it is spoken",
}

"""openai-whisper's and faster-whisper's spellings of `mmseq transcribe`: underscore aliases,
True/False values, --fp16, --verbose True, the options mmseq lacks, --vad-parameters."""

from __future__ import annotations

import argparse
import json
import logging
import math

log = logging.getLogger("mmseq")


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


TRANSCRIBE_EPILOG = (
    "openai-whisper's spellings work too (not listed above): every --a-b option as --a_b "
    "(--beam_size 5, --output_format srt, --temperature_increment_on_fallback 0.2), a flag's "
    "with True or False (--word_timestamps True, --condition_on_previous_text False, --verbose "
    "True), -o DIR, -f FORMAT. --fp16 True is --compute-type float16 on a GPU, float32 on the "
    "CPU (with a warning, as openai-whisper); --model_dir, "
    "--suppress_tokens, --prepend_punctuations and --append_punctuations are accepted at "
    "openai-whisper's defaults only (what mmseq does)."
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

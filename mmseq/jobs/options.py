"""The job flags (`--devices`, `--num-nodes`, `--strategy`, `--resume`, `--job-dir`), their
checks, and the fingerprint of the options that decide a job's outputs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

STRATEGIES = ("ddp",)

# flags that change where or how fast the work runs, never what it gives: a job resumed with
# another of them keeps the outputs made so far
_NOT_IN_FINGERPRINT = {
    "devices",
    "num_nodes",
    "strategy",
    "resume",
    "job_dir",
    "quiet",
    "verbose",
    "threads",
    "batch_size",
    "window",
    "device",
    "compile",
    "output_dir",
    "output_format",  # how records are printed; transcribe's files: Task.decides
    "run",
    "command",
    "files",
    "images",
}


def add_job_options(parser: Any) -> None:  # noqa: ANN401 - a parser or an argument group
    """Add the job flags to `parser` (an ArgumentParser or an argument group); a parser that
    has them already is left as it is."""
    if "--devices" in getattr(parser, "_option_string_actions", {}):
        return
    add = parser.add_argument
    add(
        "--devices",
        type=_count("--devices"),
        default=1,
        help="processes per node (one per GPU, or CPU processes); more than 1 runs the job on "
        "Lightning's Trainer.predict, each process on its share of the inputs (default: 1)",
    )
    add("--num-nodes", type=_count("--num-nodes"), default=1, help="machines (default: 1)")
    add("--strategy", choices=STRATEGIES, default="ddp", help="(default: %(default)s)")
    add(
        "--resume",
        action="store_true",
        help="skip the inputs the job folder holds results for, made with the same options",
    )
    add(
        "--job-dir",
        default=None,
        metavar="DIR",
        help="where each process writes its results before they are merged in input order "
        "(default: ./mmseq-COMMAND.job); on a file system every node reads",
    )


def _count(flag: str):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text}")
        return value

    parse.__name__ = flag  # argparse names the type in its message
    return parse


def is_job(args: argparse.Namespace) -> bool:
    """Whether a command runs as a job (`run_job`) rather than in this process as usual."""
    return (
        getattr(args, "devices", 1) != 1
        or getattr(args, "num_nodes", 1) != 1
        or bool(getattr(args, "resume", False))
    )


def check_job_options(args: argparse.Namespace) -> None:
    """ValueError naming the flag for values argparse did not check (a Namespace built in
    Python, say)."""
    for flag in ("devices", "num_nodes"):
        value = getattr(args, flag, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            name = "--" + flag.replace("_", "-")
            raise ValueError(f"{name} {value}: expected a number >= 1")
    strategy = getattr(args, "strategy", "ddp")
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy}: expected one of {', '.join(STRATEGIES)}")


def job_dir(command: str, args: argparse.Namespace) -> Path:
    return Path(getattr(args, "job_dir", None) or f"mmseq-{command}.job")


def job_options(
    command: str, args: argparse.Namespace, decides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The options that decide the outputs, as plain JSON values (flags by their names);
    `decides`: what else the task's results depend on."""
    options: dict[str, Any] = {"command": command} | _plain(decides or {})
    for name, value in sorted(vars(args).items()):
        if name in _NOT_IN_FINGERPRINT or name.startswith("_") or callable(value):
            continue
        options["--" + name.replace("_", "-")] = _plain(value)
    options["model identity"] = model_identity(getattr(args, "model", None))
    return options


def fingerprint(options: dict[str, Any]) -> str:
    text = json.dumps(options, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_flags(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'--beam-size 2 -> 4' for each option that differs between two `job_options`."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            if name == "model identity":
                changes.append("the model's files changed")
            else:
                changes.append(f"{name} {old.get(name)} -> {new.get(name)}")
    return changes


def model_identity(model: Any) -> Any:  # noqa: ANN401
    """A model named by path is known by its files' sizes and times (a checkpoint retrained
    in place makes new outputs); a name (tiny.en) by itself."""
    if model is None:
        return None
    path = Path(model)
    try:
        if path.is_file():
            return [_stat(path)]
        if path.is_dir():
            return [_stat(p) for p in sorted(path.iterdir()) if p.is_file()]
    except OSError:
        pass
    return str(model)


def input_identity(path: str) -> list[Any]:
    """A file input: its name, size and modification time (an edited file is redone)."""
    try:
        return _stat(Path(path))
    except OSError:
        return [path, None, None]


def _stat(path: Path) -> list[Any]:
    stat = path.stat()
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _plain(value: Any) -> Any:  # noqa: ANN401
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    return repr(value)  # an options dataclass (--vad-parameters): its fields, in order

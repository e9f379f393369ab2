"""Offline jobs on many processes: `transcribe`, `caption`, `translate` and `summarize` on
Lightning's `Trainer.predict` (`--devices N [--num-nodes K] [--strategy ddp]`, `--resume`).

The commands (mmseq.cli.transcribe, .caption, .text) add the flags with `add_job_options` and,
when `is_job(args)` (devices or num_nodes other than 1, or --resume), hand their inputs to
`run_job(command, args, inputs)` before any model loads; `inputs` is what the command reads:
the audio files or images once folders are listed, the text files (stdin is refused: every
process must read the inputs). `run_job` returns the command's exit status on rank 0 and 0 on
the other ranks (which print nothing); bad options raise ValueError naming the flag before
any process starts, as the commands' own errors do.

With `--devices 1 --num-nodes 1` and no `--resume` nothing here runs (the usual path).
Otherwise each process (rank) takes its share of the inputs' units (a file for transcribe,
a `--batch-size` batch of images for caption, a `--window` of lines for translate), writes
each unit's results atomically under `--job-dir` (default `./mmseq-COMMAND.job`) with the
fingerprint of the options that decide them, and rank 0 merges them in input order into the
command's outputs, the same as one process gives. `--resume` skips the units whose results
exist with the same options and inputs (a changed option or input is redone, said once on
stderr). Lightning is imported by `mmseq.jobs.predict` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmseq.jobs.options import add_job_options, is_job

if TYPE_CHECKING:
    import argparse

__all__ = ["add_job_options", "is_job", "run_job"]


def run_job(command: str, args: argparse.Namespace, inputs: list[str], **kwargs: Any) -> int:
    """See `mmseq.jobs.predict.run_job` (imported here on first use, with Lightning)."""
    from mmseq.jobs.predict import run_job as run

    return run(command, args, inputs, **kwargs)

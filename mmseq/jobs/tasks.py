"""What each command's job does, without Lightning: its inputs cut into units (what the
single-process command decodes together), a unit turned into JSON records, and the records
of every unit turned, in input order, into the command's own outputs (stdout lines, stderr
errors, transcript files), the same as the command gives in one process.

A unit is one audio file (transcribe), one `--batch-size` batch of images (caption), one
`--window` of documents (translate, summarize): each is decoded as the command decodes it."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmseq.jobs.options import input_identity
from mmseq.terminal import escape_controls, for_stream


@dataclass
class Unit:
    inputs: list[int]  # the input indices it covers, in order
    key: str  # what its inputs are (names, sizes, times or texts): a changed input is redone


def _key(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode()).hexdigest()[:16]


def _error(message: str) -> None:
    print(escape_controls(f"mmseq: error: {message}"), file=sys.stderr)


class Task:
    """One command's job. `units` lists the work; `load(device)` readies the model in a
    process that has units to do; `run(unit)` gives one record per input of the unit;
    `emit(records)` writes the command's outputs from every input's record and returns its
    exit status."""

    def __init__(self, args: argparse.Namespace, inputs: list[str]) -> None:
        self.args = args
        self.inputs = inputs
        self.units: list[Unit] = []
        self.decides: dict[str, Any] = {}  # what the records depend on besides the flags

    def check(self) -> None:
        """Refuse bad options before any process starts (ValueError naming the flag)."""

    def load(self, device: str) -> None:
        raise NotImplementedError

    def run(self, unit: Unit) -> list[dict[str, Any]]:
        raise NotImplementedError

    def emit(self, records: list[dict[str, Any]]) -> int:
        raise NotImplementedError

    def _refuse(self, flags: dict[str, Any]) -> None:
        for flag, value in flags.items():
            if value:
                raise ValueError(
                    f"{flag}: not with --devices, --num-nodes or --resume (it is written as "
                    "the work runs); run the command without them"
                )


class TranscribeTask(Task):
    def __init__(self, args: argparse.Namespace, inputs: list[str]) -> None:
        super().__init__(args, inputs)
        self.units = [Unit([i], _key(input_identity(f))) for i, f in enumerate(inputs)]

    def check(self) -> None:
        from mmseq.cli.transcribe import checked_options, checked_outputs

        args = self.args
        if not self.inputs:
            raise ValueError("no audio files to transcribe")
        self._refuse(
            {
                "--explain": getattr(args, "explain", None),
                "--verbose": getattr(args, "verbose", False),
            }
        )
        if getattr(args, "fp16", None) is not None:
            raise ValueError("--fp16: give --compute-type with --devices, --num-nodes, --resume")
        self.options, self.subtitles = checked_options(args)
        self.formats, self.output_dir = checked_outputs(args, self.inputs)
        self.decides = {"files": self.formats if self.output_dir is not None else []}

    def load(self, device: str) -> None:
        from mmseq.loading import load
        from mmseq.transcription import Transcriber

        loaded = load(
            self.args.model,
            device=device,
            compute_type=self.args.compute_type,
            compile=self.args.compile,
        )
        if not isinstance(loaded, Transcriber):
            raise ValueError(
                f"--model {self.args.model}: a {type(loaded).__name__}; jobs on several "
                "processes transcribe with Whisper models and fine-tunes (run a model trained "
                "from scratch without --devices, --num-nodes, --resume)"
            )
        self.transcriber = loaded

    def run_many(self, units: list[Unit]) -> list[list[dict[str, Any]]]:
        """Several files at once, their windows batched together as the command batches them."""
        from functools import partial

        from mmseq.writers import CUE_FORMATS, WRITERS

        files = [self.inputs[u.inputs[0]] for u in units]
        out = []
        for result in self.transcriber.iter_transcribe(files, options=self.options):
            record: dict[str, Any] = {"source": result.source, "error": result.error}
            if not result.error:
                record["text"] = result.text
                record["files"] = {}
                for fmt in self.formats if self.output_dir is not None else []:
                    writer = WRITERS[fmt]
                    if fmt in CUE_FORMATS:
                        writer = partial(writer, options=self.subtitles)
                    record["files"][fmt] = writer(result)
            out.append([record])
        return out

    def run(self, unit: Unit) -> list[dict[str, Any]]:
        return self.run_many([unit])[0]

    def emit(self, records: list[dict[str, Any]]) -> int:
        from mmseq.serialization import write_text_atomic

        failed = 0
        for record in records:
            if record["error"]:
                failed += 1
                _error(record["error"])
                continue
            text = record["text"]
            line = text if len(records) == 1 else f"{record['source']}\t{text}"
            print(for_stream(line), flush=True)
            if self.output_dir is not None:
                stem = Path(record["source"]).stem
                self.output_dir.mkdir(parents=True, exist_ok=True)
                for fmt, content in record["files"].items():
                    write_text_atomic(self.output_dir / f"{stem}.{fmt}", content)
        return 1 if failed else 0


class CaptionTask(Task):
    def __init__(self, args: argparse.Namespace, inputs: list[str]) -> None:
        super().__init__(args, inputs)
        size = max(1, int(args.batch_size))
        for start in range(0, len(inputs), size):
            indices = list(range(start, min(start + size, len(inputs))))
            self.units.append(Unit(indices, _key([input_identity(inputs[i]) for i in indices])))

    def check(self) -> None:
        if not self.inputs:
            raise ValueError("no images to caption")
        self._refuse({"--explain": getattr(self.args, "explain", None)})

    def load(self, device: str) -> None:
        from mmseq.inference import Captioner

        args = self.args
        self.captioner = Captioner(
            args.model,
            device=device,
            num_beams=args.beam_size,
            max_new_tokens=args.max_new_tokens,
            max_pixels=None if args.max_pixels == 0 else args.max_pixels,
        )

    def run(self, unit: Unit) -> list[dict[str, Any]]:
        images = [self.inputs[i] for i in unit.inputs]
        results = self.captioner.iter_caption(images, batch_size=len(images))
        return [{"image": r.image, "caption": r.caption, "error": r.error} for r in results]

    def emit(self, records: list[dict[str, Any]]) -> int:
        from mmseq.cli.caption import print_caption

        failed = 0
        for record in records:
            if record["error"]:
                failed += 1
                _error(record["error"])
            else:
                single = len(records) == 1
                print_caption(record["image"], record["caption"], single, self.args.output_format)
        return 1 if failed else 0


class TextTask(Task):
    """translate (a line is a document) and summarize (`--split`)."""

    def __init__(self, args: argparse.Namespace, inputs: list[str], command: str) -> None:
        from mmseq.cli.text import documents

        super().__init__(args, inputs)
        self.command = command
        self.field = "translation" if command == "translate" else "summary"
        if "-" in inputs or not inputs:
            raise ValueError(
                f"{command} with --devices, --num-nodes or --resume reads files, not stdin: "
                "name the text files"
            )
        split = "line" if command == "translate" else args.split
        self.docs = list(documents(inputs, split))  # files checked here, before any model
        window = max(1, int(args.window))
        for start in range(0, len(self.docs), window):
            indices = list(range(start, min(start + window, len(self.docs))))
            keys = [[self.docs[i].source, self.docs[i].index, self.docs[i].text] for i in indices]
            self.units.append(Unit(indices, _key(keys)))

    def load(self, device: str) -> None:
        from mmseq.text.generator import TextGenerator

        args = self.args
        self.generator = TextGenerator(
            args.model,
            device=device,
            compute_type=args.compute_type,
            source_lang=getattr(args, "source_lang", None),
            target_lang=getattr(args, "target_lang", None),
            compile=args.compile,
        )
        task = None if self.command == "translate" else "summarization"
        if task in self.generator.task_params and not self.generator.text_prefix:
            self.generator.use_task(task)

    def run(self, unit: Unit) -> list[dict[str, Any]]:
        texts = [self.docs[i].text for i in unit.inputs]
        options = {"num_beams": self.args.beam_size, "max_new_tokens": self.args.max_new_tokens}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*were truncated")  # counted in emit
            results = self.generator.iter_results(
                texts, batch_size=self.args.batch_size, window=len(texts), **options
            )
            limit = self.generator.model.config.text.n_ctx
            return [
                {"text": r.text, "score": r.score, "truncated": r.truncated, "limit": limit}
                for r in results
            ]

    def emit(self, records: list[dict[str, Any]]) -> int:
        from types import SimpleNamespace

        from mmseq.cli.text import print_result, warn_truncated

        for doc, record in zip(self.docs, records, strict=True):
            print_result(doc, self.field, SimpleNamespace(**record), self.args.output_format)
        if records:
            warn_truncated(sum(r["truncated"] for r in records), records[0]["limit"])
        return 0


COMMANDS = ("transcribe", "caption", "translate", "summarize")


def make_task(command: str, args: argparse.Namespace, inputs: list[str]) -> Task:
    if command == "transcribe":
        task: Task = TranscribeTask(args, inputs)
    elif command == "caption":
        task = CaptionTask(args, inputs)
    elif command in ("translate", "summarize"):
        task = TextTask(args, inputs, command)
    else:
        raise ValueError(f"{command}: not a job command; expected one of {', '.join(COMMANDS)}")
    task.check()
    return task

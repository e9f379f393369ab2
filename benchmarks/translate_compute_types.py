"""A trained translator under each compute type: quality and speed on a held-out split.

Method: `TextGenerator(CKPT, compute_type=T)` for T in float32, bfloat16 and int8 translates the
sources of SPLIT (JSON lines with "source" and "target", as `mmseq data make-translation` writes
them) in one pass each, greedy or `--beams`, `--batch-size` sentences at a time, `--threads`
intra-op threads; one warm-up batch first. Figures: sacreBLEU BLEU and chrF against the
references, the share of lines identical to float32's, generated tokens per second (tokenizer
ids of the outputs) and the wall time. The issue's bar: the fastest type's BLEU within 0.5 of
float32's and at least 80% of its lines identical.

    python benchmarks/translate_compute_types.py runs/mmseq/version_N/checkpoints/best-*.ckpt \\
        data/translate_en_fr/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import sacrebleu
import torch

from mmseq.text import TextGenerator

TYPES = ("float32", "bfloat16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by mmseq fit, or a HF folder")
    parser.add_argument("split", help="JSON lines with source and target")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs only")
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.split).read_text("utf-8").splitlines()]
    rows = rows[: args.limit]
    sources, references = [r["source"] for r in rows], [r["target"] for r in rows]
    print(
        f"{len(rows)} pairs from {args.split}; {_cpu_name()}, {args.threads} threads, "
        f"beams {args.beams}, batch {args.batch_size}"
    )
    outputs: dict[str, list[str]] = {}
    print("| type | BLEU | chrF | same as fp32 | tokens/s | wall s |")
    print("|---|---|---|---|---|---|")
    for compute_type in args.types:
        generator = TextGenerator(args.checkpoint, compute_type=compute_type)
        generator.results(sources[: args.batch_size], args.batch_size, num_beams=args.beams)
        start = time.perf_counter()
        results = generator.results(sources, args.batch_size, num_beams=args.beams)
        wall = time.perf_counter() - start
        outputs[compute_type] = [r.text for r in results]
        tokens = sum(len(r.tokens) for r in results)
        bleu = sacrebleu.corpus_bleu(outputs[compute_type], [references]).score
        chrf = sacrebleu.corpus_chrf(outputs[compute_type], [references]).score
        same = _same_share(outputs.get("float32"), outputs[compute_type])
        print(
            f"| {compute_type} | {bleu:.2f} | {chrf:.2f} | {same} | {tokens / wall:.0f} | "
            f"{wall:.1f} |",
            flush=True,
        )


def _same_share(base: list[str] | None, other: list[str]) -> str:
    if base is None:
        return "-"
    return f"{sum(a == b for a, b in zip(base, other, strict=True)) / len(base):.1%}"


def _cpu_name() -> str:
    """The CPU's model name (name it with every figure: bf16 and int8 speeds depend on it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()

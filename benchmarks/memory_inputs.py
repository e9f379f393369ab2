"""Peak memory of `mmseq caption` and `mmseq translate` against the number of inputs.

Method: each run is a fresh `python -c "from mmseq.cli import main; main()"` subprocess; its
peak resident set (the kernel's VmHWM, read by the process itself at exit) is the figure. caption:
N random 32x32 PNGs in one folder, a tiny random ViT + GPT-2 VisionEncoderDecoder folder,
greedy, 4 new tokens. translate: a file of N short lines (Debian gettext strings, repeated), a
tiny random Marian folder (tests/text_fixtures.py's SentencePiece tokenizer), greedy, 2 new
tokens. Outputs go to a file whose line count is checked. `--tree DIR` runs the CLI from
another checkout's `mmseq` package (e.g. `git archive HEAD mmseq | tar -x -C DIR`) to compare
before and after a change.

    python benchmarks/memory_inputs.py                  # 100..10,000 images, 1,000..1,000,000 lines
    python benchmarks/memory_inputs.py --quick          # 100, 1,000 images; 1,000, 10,000 lines
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The CLI, which writes its own VmHWM (peak RSS since its exec) to stderr at exit: wait4's
# ru_maxrss would also count the RSS this process had when it forked the child.
RUN_CLI = (
    "import atexit, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read().splitlines()\n"
    "    sys.stderr.write([s for s in status if s.startswith('VmHWM')][0] + '\\n')\n"
    "atexit.register(peak)\n"
    "from mmseq.cli import main\n"
    "sys.exit(main())"
)


def _fixtures():  # noqa: ANN202
    """tests/text_fixtures.py (gettext strings, tokenizer folders)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import text_fixtures

    return text_fixtures


def build_marian(folder: Path) -> Path:
    """A 1-layer random Marian model (d_model 32) with the fixtures' SentencePiece tokenizer."""
    import torch
    import transformers

    _fixtures().make_tokenizer_folder("marian", folder)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    transformers.MarianMTModel(config).eval().save_pretrained(folder)
    generation = {"decoder_start_token_id": tok.pad_token_id, "eos_token_id": 0}
    (folder / "generation_config.json").write_text(json.dumps(generation | {"max_length": 8}))
    return folder


def build_captioner(folder: Path) -> Path:
    """A random ViT (2 layers, 32 px) + GPT-2 (2 layers) VisionEncoderDecoder folder with a
    byte-level BPE tokenizer, as tests/test_vision_import.py builds one."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["a red circle above a blue square"] * 20, trainer=trainer)
    eot = tokenizer.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    vit = ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        image_size=32, patch_size=8,
    )  # fmt: skip
    gpt2 = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(), n_positions=32, n_embd=64, n_layer=2, n_head=4,
        add_cross_attention=True, is_decoder=True, bos_token_id=eot, eos_token_id=eot,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(vit, gpt2)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = eot, eot, eot
    VisionEncoderDecoderModel(config).eval().save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}})
    )
    return folder


def write_images(folder: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:06d}.png")
    return folder


def write_lines(path: Path, n: int) -> Path:
    strings = [" ".join(s.split()) for s in _fixtures().gettext_strings(500, seed=1)]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(strings[i % len(strings)] + "\n")
    return path


def peak_rss(argv: list[str], out: Path, tree: str | None) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, output lines) of `mmseq ARGV` in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=tree or str(ROOT))
    started = time.perf_counter()
    with out.open("wb") as stdout:  # cwd: not this checkout, whose mmseq `-c` would import
        done = subprocess.run(
            [sys.executable, "-c", RUN_CLI, *argv],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            cwd=out.parent,
        )
    seconds = time.perf_counter() - started
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"mmseq {' '.join(argv)}: {err[-2000:]}")
    with out.open("rb") as lines:
        count = sum(1 for _ in lines)
    peak = [line.split()[1] for line in err.splitlines() if line.startswith("VmHWM:")]
    return int(peak[-1]) / 1024, seconds, count  # VmHWM: kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two smaller sizes of each")
    parser.add_argument("--tree", default=None, help="run the mmseq package found in this folder")
    parser.add_argument("--images", type=int, nargs="*", default=[100, 1_000, 10_000])
    parser.add_argument("--lines", type=int, nargs="*", default=[1_000, 100_000, 1_000_000])
    args = parser.parse_args()
    images, lines = args.images, args.lines
    if args.quick:
        images, lines = [100, 1_000], [1_000, 10_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmseq-memory-") as tmp:
        work = Path(tmp)
        captioner = build_captioner(work / "vit-gpt2")
        marian = build_marian(work / "marian")
        out = work / "out.txt"
        for n in images:
            folder = write_images(work / f"images{n}", n)
            argv = ["caption", str(folder), "--model", str(captioner), "-q", "--device", "cpu"]
            argv += ["--beam-size", "1", "--max-new-tokens", "4", "--batch-size", "16"]
            mib, seconds, count = peak_rss(argv, out, args.tree)
            assert count == n, (count, n)
            rows.append(("caption", f"{n:,} images", mib, seconds))
            print(f"caption   {n:>9,} images  {mib:7.0f} MiB  {seconds:7.1f} s", flush=True)
        for n in lines:
            source = write_lines(work / f"lines{n}.txt", n)
            argv = ["translate", str(source), "--model", str(marian), "-q", "--device", "cpu"]
            argv += ["--beam-size", "1", "--max-new-tokens", "2", "--batch-size", "64"]
            mib, seconds, count = peak_rss(argv, out, args.tree)
            assert count == n, (count, n)
            rows.append(("translate", f"{n:,} lines", mib, seconds))
            print(f"translate {n:>9,} lines   {mib:7.0f} MiB  {seconds:7.1f} s", flush=True)
            source.unlink()
    print("\n| command | inputs | peak RSS (MiB) | wall (s) |\n|---|---:|---:|---:|")
    for command, inputs, mib, seconds in rows:
        print(f"| `mmseq {command}` | {inputs} | {mib:.0f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

"""Training throughput of mmseq against Hugging Face transformers: a Whisper-tiny-sized model,
random weights, the same batches and optimiser, in one process.

Method
------
- Models: mmseq's `EncoderDecoder` from configs/models/whisper_tiny.yaml and Hugging Face's
  `WhisperForConditionalGeneration` from a `WhisperConfig` of the same size (d_model 384, 4 + 4
  layers, 6 heads, MLP 1536, vocabulary 51864; `whisper_config` below). Hugging Face initialises
  the weights (seeded); mmseq loads them through the checkpoint converters (`hf_to_openai`, then
  `openai_to_mmseq`, strictly, which also checks that the YAML describes the same model). Both
  engines therefore start equal and, on equal batches, follow one trajectory up to rounding.
- Data: random log-mels and random label tokens (31 text tokens + end of text), generated before
  timing; decoder inputs are `shift_right(labels)` with Whisper's start token. Cases a and b
  repeat one batch at every step, so the loss curve (memorising that batch) moves enough in a
  few steps to show whether the two engines' trajectories agree.
- Step: forward with labels (mean token cross-entropy), backward, AdamW (`--lr`, default
  1e-3), gradients set to None. bf16 is Lightning's "bf16-mixed": forward and loss under
  `torch.autocast(device, dtype=torch.bfloat16)`, fp32 weights, backward and optimiser outside
  the autocast region.
- Cases:
  a. fp32, batch 8 of 30 s log-mels [8, 80, 3000], 32 label tokens: both engines.
  b. bf16-mixed, the same batch and initial weights: both engines. The loss curves of a and b
     are printed side by side. fp32 parity: mmseq's and Hugging Face's fp32 curves should agree
     to about 1e-4. bf16 "within noise": mmseq's bf16 curve stays at most 2x (+0.01) as far
     from the fp32 reference curve as Hugging Face's bf16 curve does. Running b alone also runs
     a, for the fp32 reference.
  c. Training from scratch without Whisper's 30 s padding: 3-12 s clips (uniform, seeded) in
     length-bucketed batches of 8 (sorted by length, cut into batches, batch order shuffled).
     mmseq with `pad_to_30s: false` encodes each batch only up to its longest clip and masks
     the rest; Hugging Face requires 3000 frames, so it gets the same clips zero-padded to 30 s
     (as mmseq's 30 s models do). Figures are totals over the timed batches.
- Timing: `torch.set_num_threads(--threads)`; engines alternate step by step (so background
  load hits both alike); `--warmup` untimed steps, then `--steps` steps each timed with
  `time.perf_counter` (data already in memory). Figures: mean s/step, samples/s and label
  tokens/s; the ratio is mmseq's samples/s over Hugging Face's.
- Cost on an idle 2-core CPU: a 30 s batch of 8 takes seconds per step per engine, so the
  default (3 warm-up + 10 timed steps, three cases) runs for several minutes; `--quick` runs
  1 + 2 steps to check that everything works, which is no measurement.

Run: `.venv/bin/python benchmarks/train_throughput.py [--steps 10] [--warmup 3] [--threads 2]
[--cases a b c] [--quick] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn
from transformers import WhisperConfig, WhisperForConditionalGeneration

from mmseq.encoders.audio_features import FRAMES_PER_SECOND, N_FRAMES
from mmseq.model import EncoderDecoder, ModelConfig, count_parameters, shift_right
from mmseq.whisper.checkpoints import WhisperDims, hf_to_openai, openai_to_mmseq

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "models" / "whisper_tiny.yaml"
SOT, EOT = 50257, 50256  # Whisper's <|startoftranscript|> and <|endoftext|> (English-only)
N_LABELS = 32


@dataclass
class Batch:
    mel: Tensor  # [B, n_mels, T] log-mel
    lengths: Tensor | None  # [B] frames, for mmseq without 30 s padding
    tokens: Tensor  # [B, L] decoder inputs
    labels: Tensor  # [B, L] targets

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device) -> Batch:
        lengths = None if self.lengths is None else self.lengths.to(device)
        return Batch(self.mel.to(device), lengths, self.tokens.to(device), self.labels.to(device))


@dataclass
class Result:
    engine: str
    seconds: list[float] = field(default_factory=list)  # timed steps
    samples: int = 0
    tokens: int = 0
    losses: list[float] = field(default_factory=list)  # every step, warm-up included

    def figures(self) -> dict[str, float]:
        total = sum(self.seconds)
        return {
            "s_per_step": total / len(self.seconds),
            "samples_per_s": self.samples / total,
            "tokens_per_s": self.tokens / total,
        }


# ---------------------------------------------------------------------------------------------
# Models


def whisper_config(config: ModelConfig) -> WhisperConfig:
    """A Hugging Face WhisperConfig with the dimensions of an mmseq Whisper-style ModelConfig."""
    audio, dec = config.audio, config.decoder
    return WhisperConfig(
        vocab_size=dec.vocab_size,
        num_mel_bins=audio.n_mels,
        d_model=dec.block.d_model,
        encoder_layers=audio.n_layers,
        encoder_attention_heads=audio.block.n_heads,
        encoder_ffn_dim=audio.block.d_ff,
        decoder_layers=dec.n_layers,
        decoder_attention_heads=dec.block.n_heads,
        decoder_ffn_dim=dec.block.d_ff,
        max_source_positions=audio.n_ctx,
        max_target_positions=dec.n_ctx,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=SOT,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )


def build_pair(
    seed: int, pad_to_30s: bool, config: ModelConfig | None = None
) -> tuple[EncoderDecoder, nn.Module]:
    """mmseq (from the YAML, or `config`: a Whisper-style ModelConfig) and Hugging Face, holding
    the same seeded random weights."""
    config = dataclasses.replace(config or ModelConfig.from_yaml(CONFIG))
    config.audio = dataclasses.replace(config.audio, pad_to_30s=pad_to_30s)
    torch.manual_seed(seed)
    hf = WhisperForConditionalGeneration(whisper_config(config))
    audio, dec = config.audio, config.decoder
    dims = WhisperDims(
        audio.n_mels, audio.n_ctx, audio.block.d_model, audio.block.n_heads, audio.n_layers,
        dec.vocab_size, dec.n_ctx, dec.block.d_model, dec.block.n_heads, dec.n_layers,
    )  # fmt: skip
    ours = EncoderDecoder(config)
    ours.load_state_dict(openai_to_mmseq(hf_to_openai(hf.state_dict()), dims))
    return ours.train(), hf.train()


def mmseq_loss(model: nn.Module, batch: Batch) -> Tensor:
    return model("audio", batch.mel, batch.tokens, lengths=batch.lengths, labels=batch.labels).loss


def hf_loss(model: nn.Module, batch: Batch) -> Tensor:
    out = model(
        input_features=batch.mel,
        decoder_input_ids=batch.tokens,
        labels=batch.labels,
        use_cache=False,
    )
    return out.loss


class Trainer:
    """One engine's model, optimiser and step (bf16: Lightning's bf16-mixed)."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, Batch], Tensor],
        lr: float,
        bf16: bool,
        device: torch.device,
    ) -> None:
        self.name, self.loss_fn, self.device = name, loss_fn, device
        self.model = model.to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def step(self, batch: Batch) -> float:
        with self.autocast:
            loss = self.loss_fn(self.model, batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()  # also waits for the device


def race(runs: list[tuple[Trainer, list[Batch]]], warmup: int, steps: int) -> list[Result]:
    """Alternate the engines step by step; batches[i] is each engine's batch at step i."""
    results = [Result(trainer.name) for trainer, _ in runs]
    for i in range(warmup + steps):
        for (trainer, batches), result in zip(runs, results, strict=True):
            batch = batches[i % len(batches)]
            start = time.perf_counter()
            loss = trainer.step(batch)
            seconds = time.perf_counter() - start
            result.losses.append(loss)
            if i >= warmup:
                result.seconds.append(seconds)
                result.samples += batch.size
                result.tokens += int((batch.labels >= 0).sum())
    return results


# ---------------------------------------------------------------------------------------------
# Data


def random_labels(batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(tokens, labels) [B, N_LABELS]: 31 random text tokens then end of text, shifted right."""
    text = torch.randint(0, EOT, (batch_size, N_LABELS - 1), generator=gen)
    labels = torch.cat([text, torch.full((batch_size, 1), EOT)], dim=1)
    return shift_right(labels, SOT, EOT), labels


def padded_batch(batch_size: int, seed: int) -> Batch:
    """Cases a and b: 30 s log-mels [B, 80, 3000]."""
    gen = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch_size, 80, N_FRAMES, generator=gen)
    return Batch(mel, None, *random_labels(batch_size, gen))


def bucketed_batches(batch_size: int, n_batches: int, seed: int) -> list[Batch]:
    """Case c: clips of 3-12 s sorted by length into batches, in shuffled batch order; each
    batch padded to its longest clip, with lengths in frames."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    frames = sorted(
        rng.randint(3 * FRAMES_PER_SECOND, 12 * FRAMES_PER_SECOND)
        for _ in range(batch_size * n_batches)
    )
    groups = [frames[i : i + batch_size] for i in range(0, len(frames), batch_size)]
    rng.shuffle(groups)
    batches = []
    for lengths in groups:
        mel = torch.randn(batch_size, 80, max(lengths), generator=gen)
        mask = torch.arange(mel.shape[-1])[None, :] < torch.tensor(lengths)[:, None]
        mel = mel * mask[:, None, :]  # zeros past each clip's end
        batches.append(Batch(mel, torch.tensor(lengths), *random_labels(batch_size, gen)))
    return batches


def pad_to_30s(batch: Batch) -> Batch:
    """The same clips as Whisper's models see them: log-mel zero-padded to 3000 frames."""
    mel = F.pad(batch.mel, (0, N_FRAMES - batch.mel.shape[-1]))
    return Batch(mel, None, batch.tokens, batch.labels)


# ---------------------------------------------------------------------------------------------
# Cases


def run_case(case: str, args: argparse.Namespace, device: torch.device) -> list[Result]:
    bf16 = case == "b"
    ours, hf = build_pair(args.seed, pad_to_30s=case != "c")
    trainers = [
        Trainer("mmseq", ours, mmseq_loss, args.lr, bf16, device),
        Trainer("hf", hf, hf_loss, args.lr, bf16, device),
    ]
    if case == "c":
        batches = bucketed_batches(args.batch_size, args.warmup + args.steps, args.seed)
        per_engine = [batches, [pad_to_30s(b) for b in batches]]
    else:
        batch = padded_batch(args.batch_size, args.seed)
        per_engine = [[batch], [batch]]
    runs = [
        (trainer, [b.to(device) for b in batches])
        for trainer, batches in zip(trainers, per_engine, strict=True)
    ]
    return race(runs, args.warmup, args.steps)


CASE_TITLES = {
    "a": "a. fp32, batch {b} x 30 s log-mels, {n} label tokens",
    "b": "b. bf16-mixed (autocast), batch {b} x 30 s log-mels, {n} label tokens",
    "c": "c. 3-12 s clips, length-bucketed batches of {b}: mmseq pad_to_30s=false, "
    "Hugging Face padded to 30 s",
}


def print_case(case: str, results: list[Result], args: argparse.Namespace) -> dict:
    print(f"\n{CASE_TITLES[case].format(b=args.batch_size, n=N_LABELS)}")
    print(f"  {'engine':<8}{'s/step':>10}{'samples/s':>12}{'tokens/s':>12}")
    figures = {r.engine: r.figures() for r in results}
    for engine, f in figures.items():
        print(
            f"  {engine:<8}{f['s_per_step']:>10.3f}{f['samples_per_s']:>12.2f}"
            f"{f['tokens_per_s']:>12.1f}"
        )
    ratio = figures["mmseq"]["samples_per_s"] / figures["hf"]["samples_per_s"]
    print(f"  mmseq / hf samples/s: {ratio:.2f}x")
    return {"figures": figures, "ratio": ratio, "losses": {r.engine: r.losses for r in results}}


def compare_losses(fp32: dict[str, list[float]], bf16: dict[str, list[float]]) -> dict:
    """Print the curves of cases a and b and judge fp32 parity and bf16 noise."""
    print("\nloss curves from equal initial weights (cases a and b)")
    print(f"  {'step':>4}{'mmseq fp32':>13}{'hf fp32':>13}{'mmseq bf16':>13}{'hf bf16':>13}")
    curves = [fp32["mmseq"], fp32["hf"], bf16["mmseq"], bf16["hf"]]
    for i, row in enumerate(zip(*curves, strict=True)):
        print(f"  {i:>4}" + "".join(f"{x:>13.5f}" for x in row))

    def distance(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) for x, y in zip(a, b, strict=True))

    parity = distance(fp32["mmseq"], fp32["hf"])
    noise = distance(bf16["hf"], fp32["hf"])  # what bf16 does to the reference
    ours = distance(bf16["mmseq"], fp32["hf"])
    within = ours <= 2 * noise + 0.01
    print(f"  fp32: max |mmseq - hf| = {parity:.2e}")
    print(
        f"  bf16: max |mmseq bf16 - hf fp32| = {ours:.4f}, max |hf bf16 - hf fp32| = "
        f"{noise:.4f}: {'within' if within else 'OUTSIDE'} noise (<= 2x + 0.01)"
    )
    return {"fp32_max_diff": parity, "bf16_mmseq_diff": ours, "bf16_hf_diff": noise,
            "bf16_within_noise": within}  # fmt: skip


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per engine (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--cases", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 steps: a smoke test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", type=Path, help="also write the figures and curves here")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup = 2, 1
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cases = sorted(set(args.cases) | ({"a"} if "b" in args.cases else set()))
    ours, hf = build_pair(args.seed, pad_to_30s=True)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads on {device}; Hugging Face attention: "
        f"{hf.config._attn_implementation}\nparameters: mmseq {count_parameters(ours):,}, "
        f"hf {count_parameters(hf):,} (its tied output projection counted once); "
        f"{args.warmup} warm-up + {args.steps} timed steps per engine"
    )
    del ours, hf
    report = {}
    for case in cases:
        report[case] = print_case(case, run_case(case, args, device), args)
    if "b" in report:
        report["loss_check"] = compare_losses(report["a"]["losses"], report["b"]["losses"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

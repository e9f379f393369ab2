"""One prepared GPU check: transcription, a training step and text generation, against
transformers on the same device and weights, in one run of at most about 8 minutes on an H100.

Method
------
- Sections (`--sections`; run in this order, so that the longest one, transcription, comes last
  and the budget cuts it rather than the others):
  training. One training step of a Whisper-base-sized mmseq model (d_model 512, 8 heads, MLP
     2048, 6 + 6 layers, vocabulary 51864; random weights) and of Hugging Face's
     `WhisperForConditionalGeneration` of the same size holding the same weights
     (`train_throughput.build_pair`): forward with labels, backward, AdamW, `bf16-mixed` on
     CUDA (`torch.autocast` bf16, fp32 weights: Lightning's recipe; `train_throughput.Trainer`),
     fp32 on the CPU. Batch `--train-batch` (CUDA 32) of 30 s log-mels [B, 80, 3000] and 32
     label tokens; `--train-warmup` untimed then `--train-steps` timed steps, each ended by
     `loss.item()` (which waits for the GPU). Figures: samples/s, label tokens/s, and the model
     FLOPs utilisation MFU = model FLOPs per step / step time / peak FLOP/s, where the model
     FLOPs of one sample are
       6 * sum over weight matrices of (weights * positions it is applied to)
         + 12 * d_model * sum over attention layers of (query positions * key positions),
     i.e. 2 FLOPs per multiply-add, backward twice the forward (activations and weights); the
     conv front-end counted at its output frames (3000 and 1500), the encoder blocks and the
     cross-attention key/value projections at the 1500 encoder positions, the decoder at the 32
     label positions, the tied output projection once per label, causal self-attention counted
     in full (as PaLM's MFU does): 302 GFLOP per 30 s sample, 96% of it over the 1500 encoder
     positions. "6 * params * tokens" would say 660 (all 72 M parameters times 1532 positions,
     though the decoder and its 26 M-weight output projection see only the 32 labels). Peak
     (`--peak-tflops`): the H100's (and H200's) dense bf16 989 TFLOPS when the GPU's name
     holds H100 or H200, else none (no MFU).
  text. Greedy text-to-text generation of the text models' shapes from
     `text_generate_vs_peers` (a MarianMT of opus-mt-en-fr's shape and a t5-small-shaped T5,
     random weights with its "length clock" so that outputs end after 5-40 tokens), built by
     transformers and saved without a tokenizer (sources are random ids, the same for both
     engines). mmseq: `load_hf`, `apply_compute_type`, `encode` and `mmseq.generation.decode`
     with the folder's generation config; transformers: `generate()` on padded batches with
     attention masks. fp32 and bf16 on CUDA (fp32 only on a CPU without native bf16), batch 1
     (the first `--text-b1` sources, one at a time) and batch 32 (all `--text-sentences`), at
     most 64 new tokens. Figures: generated tokens (without the start token and EOS) per second;
     `same` is the number of sources whose outputs are equal.
  transcription. tiny.en and base (the embedded CTranslate2 weights, `mmseq.whisper.embedded`),
     fp32 and bf16 on CUDA: mmseq's `Transcriber(name, device, compute_type)` against Hugging
     Face's Whisper built from the same checkpoint (`transcribe_speed.hf_model`) and moved to
     the same device and dtype. Audio: SHORT is the bundled demo clips (3-5 s) repeated
     (`--short-repeat`, default 16: 80 clips, about 5 min), one window per clip, no timestamps,
     batches of `--batch-size` (CUDA 32, CPU 8) for both engines (Hugging Face:
     `transcribe_speed.hf_engine`: mmseq's log-mel, `generate()` with mmseq's suppression).
     LONG is `--long-recordings` (2) recordings of `--long-minutes` (3) made of the same clips
     separated by 1-3 s pauses. mmseq decodes them by the sequential long-form path (30 s
     windows with timestamps; the recordings' windows batched together, `seq`) and by the
     batched VAD path (speech chunks, with timestamps, `--vad-batch` chunks at a time: CUDA 32,
     CPU 8, `vad`); Hugging Face by its sequential long-form `generate()` (whole-recording
     features with an attention mask, timestamps, the recordings batched together), the peer
     of both rows. All greedy at temperature 0 without fallback, language "en", no
     conditioning on previous text. Figures: audio seconds per wall second and WER (the
     references are the clips' transcripts; `transcribe_vs_peers.wer`'s normalisation).
     `--compile` adds mmseq rows with `Transcriber(compile=True)` (compiling happens in the
     warm-up, outside the timed pass).
- Timing: every timed call is preceded by a warm-up call on a small input and wrapped in
  `torch.cuda.synchronize()`; `--trials` (1) timed calls, the fastest kept. Peak memory is
  `torch.cuda.max_memory_allocated()` over the timed call (reset before it), weights included;
  none on the CPU. fp32 matmuls run in full fp32 (TF32 left off, PyTorch's default).
- Robustness: each section runs in try/except: an error is printed with its traceback and the
  next section runs; the exit status is 1 if any section failed. `--budget-s` (450) bounds the
  whole run: once spent, the remaining sections and table rows are skipped with a message.
- Output: one table per section (model, input, compute type, path, mmseq and transformers
  throughput, their ratio: above 1 mmseq is faster), then one line of JSON holding every
  figure (`--json PATH` also writes it to a file) for the README.
- `--device cpu --quick` is the smoke test that `make test` runs (tests/test_gpu_check.py):
  tiny inputs, one repetition, tiny.en only, one 40 s recording, the tiny text models of
  tests/text_models.py, and a base-sized training step on 2 s of audio without Hugging Face
  (it requires 30 s inputs); it measures nothing.

Run on a GPU: `.venv/bin/python benchmarks/gpu_check.py [--device cuda] [--budget-s 450]
[--sections training text transcription] [--peak-tflops 989] [--compile] [--json OUT]`;
`make gpu-check`. Smoke test: `... --device cpu --quick --threads 1`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT / "benchmarks", ROOT / "tests"):  # the sibling benchmarks, text_models
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

SECTIONS = ("training", "text", "transcription")
TITLES = {
    "training": "== training step: Whisper-base-sized model ==",
    "text": "== text generation: greedy, tokens/s ==",
    "transcription": "== transcription: audio seconds per second ==",
}
H100_BF16_TFLOPS = 989.0  # dense bf16, H100 SXM (the H200 has the same tensor cores)
SAMPLE_RATE = 16000
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Row:
    """One line of a section's table: mmseq against transformers on one input."""

    model: str
    input: str
    compute_type: str
    path: str
    unit: str  # "audio s/s" | "tokens/s" | "samples/s"
    mmseq: float | None = None
    peer: float | None = None  # transformers; None: not run
    mmseq_peak_gib: float | None = None
    peer_peak_gib: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.mmseq / self.peer if self.mmseq and self.peer else None


class Budget:
    """The run's time limit: sections and rows ask it before they start."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def allows(self, what: str) -> bool:
        if self.elapsed() < self.seconds:
            return True
        print(f"  budget: {self.elapsed():.0f} s of {self.seconds:.0f} s spent, skipping {what}")
        self.skipped.append(what)
        return False


# ---------------------------------------------------------------------------------------------
# Timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: torch.device, trials: int
) -> tuple[float, Any, float | None]:
    """(fastest wall seconds, its result, peak GiB allocated; None on the CPU) over `trials`
    calls of fn; the caller warms fn up first."""
    best, result, peak = float("inf"), None, None
    for _ in range(trials):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        started = time.perf_counter()
        out = fn()
        synchronize(device)
        seconds = time.perf_counter() - started
        if seconds < best:
            best, result = seconds, out
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) / 2**30
    return best, result, peak


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def compute_types(args: argparse.Namespace, device: torch.device) -> list[str]:
    from transcribe_vs_peers import native_bf16

    if device.type == "cuda" or args.bf16:
        return ["float32", "bfloat16"]
    if args.quick:
        print("  quick: fp32 only on the CPU (--bf16 adds bf16)")
        return ["float32"]
    if native_bf16():
        return ["float32", "bfloat16"]
    print("  bf16: left out, no native bf16 on this CPU (see --bf16)")
    return ["float32"]


# ---------------------------------------------------------------------------------------------
# Training


def base_config():
    """Whisper base's dimensions as an mmseq ModelConfig (the tiny YAML, widened)."""
    from train_throughput import CONFIG

    from mmseq.model import ModelConfig

    config = ModelConfig.from_yaml(CONFIG)
    block = dataclasses.replace(config.audio.block, d_model=512, n_heads=8, d_ff=2048)
    config.audio = dataclasses.replace(config.audio, n_layers=6, block=block)
    config.decoder = dataclasses.replace(config.decoder, n_layers=6, block=block)
    return config


def model_flops(model: torch.nn.Module, frames: int, labels: int) -> float:
    """Training FLOPs (forward + backward) of one sample of mmseq's Whisper-style model with
    `frames` log-mel frames and `labels` decoder positions (see the module docstring)."""
    positions = frames // 2  # after the stride-2 conv
    matmul = 0.0
    for name, p in model.named_parameters():
        if p.dim() < 2 or name.endswith("positions.weight"):
            continue  # biases, norms and position tables: no matmul
        if name.startswith("encoders.audio.conv1"):
            matmul += p.numel() * frames
        elif name.startswith("encoders.") or "cross_attn.kv" in name:
            matmul += p.numel() * positions  # encoder blocks, conv2, cross K/V of the states
        else:
            matmul += p.numel() * labels  # decoder blocks, tied output projection
    config = model.config
    pairs = config.audio.n_layers * positions**2
    pairs += config.decoder.n_layers * (labels**2 + labels * positions)
    return 6 * matmul + 12 * config.decoder.block.d_model * pairs


def training_section(
    args: argparse.Namespace, device: torch.device, budget: Budget, rows: list[Row]
) -> None:
    import train_throughput as tt

    from mmseq.encoders.audio_features import N_FRAMES
    from mmseq.model import count_parameters

    bf16 = device.type == "cuda"  # Lightning's bf16-mixed; fp32 on the CPU
    batch_size, frames = args.train_batch or (32 if bf16 else 8), N_FRAMES
    if args.quick:
        batch_size, frames = 2, 200
        print("  quick: batch 2 of 2 s log-mels (pad_to_30s off), mmseq only: Hugging Face's")
        print("  Whisper takes 30 s inputs only")
    ours, hf = tt.build_pair(args.seed, pad_to_30s=not args.quick, config=base_config())
    print(f"  parameters: mmseq {count_parameters(ours):,}, hf {count_parameters(hf):,}")
    flops = model_flops(ours, frames, tt.N_LABELS)
    gen = torch.Generator().manual_seed(args.seed)
    mel = torch.randn(batch_size, 80, frames, generator=gen)
    lengths = torch.full((batch_size,), frames) if args.quick else None
    batch = tt.Batch(mel, lengths, *tt.random_labels(batch_size, gen)).to(device)
    runs = [(tt.Trainer("mmseq", ours, tt.mmseq_loss, args.lr, bf16, device), [batch])]
    if not args.quick:
        runs.append((tt.Trainer("hf", hf, tt.hf_loss, args.lr, bf16, device), [batch]))
    del ours, hf
    warmup, steps = (1, 1) if args.quick else (args.train_warmup, args.train_steps)
    if bf16:
        torch.cuda.reset_peak_memory_stats(device)
    results = tt.race(runs, warmup, steps)
    row = training_row(results, flops, peak_tflops(args, device))
    row.compute_type = "bf16-mixed" if bf16 else "fp32"
    row.input = f"b{batch_size} x {frames / 100:g} s, {tt.N_LABELS} labels"
    row.mmseq_peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if bf16 else None
    rows.append(row)


def training_row(results: list, flops: float, peak: float | None) -> Row:
    """train_throughput's Results -> a Row of samples/s, with tokens/s, s/step, MFU beside."""
    figures = {r.engine: r.figures() for r in results}
    samples = {engine: f["samples_per_s"] for engine, f in figures.items()}
    row = Row("whisper-base dims", "", "", "train step", "samples/s", samples["mmseq"])
    row.peer = samples.get("hf")
    row.extra = {
        "tokens_per_s": {k: f["tokens_per_s"] for k, f in figures.items()},
        "s_per_step": {k: f["s_per_step"] for k, f in figures.items()},
        "model_tflop_per_sample": flops / 1e12,
        "peak_tflops": peak,
        "mfu": {k: v * flops / (peak * 1e12) if peak else None for k, v in samples.items()},
        "losses": {r.engine: r.losses for r in results},
    }
    return row


def peak_tflops(args: argparse.Namespace, device: torch.device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if "H100" in name or "H200" in name:
            return H100_BF16_TFLOPS
    return None


def print_training(rows: list[Row]) -> None:
    if not rows:
        print("  (no rows)")
        return
    print(
        f"  {'engine':<7}{'precision':>11}{'s/step':>9}{'samples/s':>11}{'tokens/s':>10}"
        f"{'TFLOP/s':>9}{'MFU':>7}"
    )
    for row in rows:
        x = row.extra
        for engine, seconds in x["s_per_step"].items():
            samples = row.mmseq if engine == "mmseq" else row.peer
            mfu = x["mfu"][engine]
            print(
                f"  {engine:<7}{row.compute_type:>11}{seconds:>9.3f}{samples:>11.2f}"
                f"{x['tokens_per_s'][engine]:>10.0f}"
                f"{samples * x['model_tflop_per_sample']:>9.1f}"
                f"{f'{mfu:.1%}' if mfu is not None else '-':>7}"
            )
        if row.ratio:
            print(f"  mmseq / hf samples/s: {row.ratio:.2f}x")
        if row.mmseq_peak_gib is not None:
            print(f"  peak GPU memory (both engines' weights and optimiser states): "
                  f"{row.mmseq_peak_gib:.1f} GiB")  # fmt: skip
        print(f"  model FLOPs per sample: {x['model_tflop_per_sample'] * 1e3:.1f} GFLOP; peak "
              f"{x['peak_tflops'] or 'unknown (--peak-tflops)'} TFLOPS")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Text generation


def random_sources(n: int, eos: int, pad: int, vocab: int, seed: int) -> list[list[int]]:
    """n rows of 4-32 random ids (below 2000, as the models' length clocks were tuned on),
    without EOS or pad inside, each ending with EOS."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(4, 33, (1,), generator=g))
        ids = torch.randint(3, min(vocab - 1, 2000), (length,), generator=g).tolist()
        rows.append([t for t in ids if t not in (eos, pad)] + [eos])
    return rows


def text_models(args: argparse.Namespace, n: int, folder: Path):
    """[(name, Hugging Face folder, n sources)]: the models of text_generate_vs_peers (quick:
    the tiny ones of tests/text_models.py, with their own sources)."""
    if args.quick:
        import text_models as tiny

        print("  quick: the tiny Marian and T5 of tests/text_models.py (d_model 32)")
        return [
            (f"{f}-tiny", tiny.make_hf_model(f, folder / f), tiny.random_sources(n, f, args.seed))
            for f in ("marian", "t5")
        ]
    from text_generate_vs_peers import build_marian, build_t5

    made = []
    for name, build in (("marian opus-mt shape", build_marian), ("t5-small shape", build_t5)):
        out = folder / name.split()[0]
        out.mkdir()
        build(out, tokenizer=False)
        generation = json.loads((out / "generation_config.json").read_text())
        vocab = json.loads((out / "config.json").read_text())["vocab_size"]
        eos, pad = generation["eos_token_id"], generation["pad_token_id"]
        made.append((name, out, random_sources(n, eos, pad, vocab, args.seed)))
    return made


Generate = Callable[[list[list[int]]], list[list[int]]]


def mmseq_generator(hf_dir: Path, device: torch.device, compute_type: str, max_new: int):
    from text_generate_vs_peers import padded, until_eos

    from mmseq.generation import GenerationConfig, decode
    from mmseq.precision import apply_compute_type
    from mmseq.text.hf import load_hf

    imported = load_hf(hf_dir)
    model = apply_compute_type(imported.model.to(device), compute_type)
    config = GenerationConfig.from_hf(imported.generation, num_beams=1, max_new_tokens=max_new)
    start, eos = imported.decoder_start_token_id, imported.generation["eos_token_id"]
    pad = imported.generation["pad_token_id"]

    @torch.inference_mode()
    def run(rows: list[list[int]]) -> list[list[int]]:
        ids, lengths = padded(rows, pad)
        encoded = model.encode("text", ids.to(device), lengths.to(device))
        prefix = torch.full((len(rows), 1), start, dtype=torch.long, device=device)
        out = decode(model.decoder, encoded.states, encoded.mask, prefix, config)
        return [until_eos(s[0, 1:].tolist(), eos) for s in out.sequences]

    return run


def transformers_generator(hf_dir: Path, device: torch.device, compute_type: str, max_new: int):
    import transformers
    from text_generate_vs_peers import padded, until_eos

    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf_dir, dtype=DTYPES[compute_type])
    model = model.to(device).eval()
    eos, pad = model.generation_config.eos_token_id, model.generation_config.pad_token_id

    @torch.inference_mode()
    def run(rows: list[list[int]]) -> list[list[int]]:
        ids, lengths = padded(rows, pad)
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            num_beams=1,
            do_sample=False,
            max_new_tokens=max_new,
        )
        return [until_eos(row[1:], eos) for row in out.tolist()]

    return run


def batched(generate: Generate, rows: list[list[int]], batch: int) -> list[list[int]]:
    return [out for i in range(0, len(rows), batch) for out in generate(rows[i : i + batch])]


def text_section(
    args: argparse.Namespace, device: torch.device, budget: Budget, rows: list[Row]
) -> None:
    n, b1, big, max_new = args.text_sentences, args.text_b1, 32, 64
    if args.quick:
        n, b1, big, max_new = 8, 4, 8, 16
    types = compute_types(args, device)
    with tempfile.TemporaryDirectory() as tmp:
        for name, hf_dir, sources in text_models(args, n, Path(tmp)):
            for compute_type in types:
                if not budget.allows(f"text {name} {compute_type}"):
                    continue
                engines = {
                    "mmseq": mmseq_generator(hf_dir, device, compute_type, max_new),
                    "transformers": transformers_generator(hf_dir, device, compute_type, max_new),
                }
                for batch, inputs in ((1, sources[:b1]), (big, sources)):
                    row = generation_row(engines, inputs, batch, device, args.trials)
                    row.model, row.compute_type = name, compute_type
                    rows.append(row)
                del engines
                free_memory(device)


def generation_row(
    engines: dict[str, Generate],
    inputs: list[list[int]],
    batch: int,
    device: torch.device,
    trials: int,
) -> Row:
    """Both engines over `inputs` in batches of `batch`, each after a warm-up batch."""
    tokens, outputs, peaks, speed = {}, {}, {}, {}
    for engine, generate in engines.items():
        generate(inputs[:batch])
        wall, outputs[engine], peaks[engine] = timed(
            lambda g=generate: batched(g, inputs, batch), device, trials
        )
        tokens[engine] = sum(map(len, outputs[engine]))
        speed[engine] = tokens[engine] / wall
    same = sum(a == b for a, b in zip(outputs["mmseq"], outputs["transformers"], strict=True))
    return Row(
        "", f"b{batch}, {len(inputs)} sources", "", "greedy", "tokens/s",
        speed["mmseq"], speed["transformers"], peaks["mmseq"], peaks["transformers"],
        {"same": f"{same}/{len(inputs)}", "tokens": tokens},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Transcription


@dataclass
class AudioSet:
    name: str  # short | long
    audios: list[np.ndarray]
    references: list[str]

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audios) / SAMPLE_RATE


def long_recordings(clips: AudioSet, minutes: float, count: int) -> AudioSet:
    """`count` recordings of about `minutes` each: the clips in turn (recording k starts at
    clip k), separated by transcribe_vs_peers' pauses."""
    from transcribe_vs_peers import PAUSES

    audios, texts = [], []
    for k in range(count):
        parts, words, i = [], [], k
        while sum(map(len, parts)) < minutes * 60 * SAMPLE_RATE:
            clip = i % len(clips.audios)
            pause = np.zeros(int(PAUSES[i % len(PAUSES)] * SAMPLE_RATE), dtype=np.float32)
            parts += [clips.audios[clip], pause]
            words.append(clips.references[clip])
            i += 1
        audios.append(np.concatenate(parts[:-1]).astype(np.float32))
        texts.append(" ".join(words))
    return AudioSet("long", audios, texts)


Transcribe = Callable[[list[np.ndarray]], list[str]]  # waveforms -> texts


def mmseq_transcribe(transcriber, options) -> Transcribe:
    return lambda audios: [t.text for t in transcriber.transcribe(audios, options=options)]


def hf_longform(model, whisper) -> Transcribe:
    """Hugging Face's sequential long-form generate(): the recordings batched together, their
    whole features with an attention mask, timestamps, greedy, no conditioning."""
    from transcribe_speed import hf_generation_config
    from transformers import WhisperFeatureExtractor

    tok = whisper.tokenizer
    weight = next(model.parameters())
    config = hf_generation_config(whisper)
    config.max_initial_timestamp_index = 50  # 1.0 s, as mmseq's max_initial_timestamp
    config.is_multilingual = tok.is_multilingual
    language = {}
    if tok.is_multilingual:
        config.lang_to_id = {"<|en|>": tok.language_token("en")}
        config.task_to_id = {"transcribe": tok.transcribe, "translate": tok.translate}
        language = {"language": "en", "task": "transcribe"}
    features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)

    @torch.inference_mode()
    def run(audios: list[np.ndarray]) -> list[str]:
        inputs = features(
            audios,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            truncation=False,
            padding="longest",
            return_attention_mask=True,
            device=str(weight.device),
        )
        out = model.generate(
            input_features=inputs.input_features.to(weight.device, weight.dtype),
            attention_mask=inputs.attention_mask.to(weight.device),
            return_timestamps=True,
            condition_on_prev_tokens=False,
            temperature=0.0,
            generation_config=config,
            **language,
        )
        sequences = out if isinstance(out, torch.Tensor) else out["sequences"]
        return [tok.decode([t for t in row if t < tok.eot]).strip() for row in sequences.tolist()]

    return run


def audio_sets(args: argparse.Namespace) -> tuple[AudioSet, AudioSet]:
    from transcribe_speed import load_clips

    audios, references = load_clips(1)
    clips = AudioSet("short", audios, references)
    if args.quick:
        print("  quick: 2 short clips; one 40 s recording; tiny.en only")
        short = AudioSet("short", audios[:2], references[:2])
        return short, long_recordings(clips, 40 / 60, 1)
    short = AudioSet("short", audios * args.short_repeat, references * args.short_repeat)
    return short, long_recordings(clips, args.long_minutes, args.long_recordings)


def transcription_section(
    args: argparse.Namespace, device: torch.device, budget: Budget, rows: list[Row]
) -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # per-call generate() notices
    sets = {s.name: s for s in audio_sets(args)}
    for s in sets.values():
        print(f"  {s.name}: {len(s.audios)} recordings, {s.seconds:.1f} s of audio")
    paths = transcription_paths(args, device, recordings=len(sets["long"].audios))
    for name in ["tiny.en"] if args.quick else args.whisper_models:
        transcribe_model(name, args, device, budget, sets, paths, rows)


def transcription_paths(args: argparse.Namespace, device: torch.device, recordings: int):
    """(set, path) -> mmseq's TranscribeOptions for it."""
    from mmseq.transcription import TranscribeOptions

    cuda = device.type == "cuda"
    batch = 2 if args.quick else args.batch_size or (32 if cuda else 8)
    vad_batch = 2 if args.quick else args.vad_batch or (32 if cuda else 8)
    common = {"temperatures": (0.0,), "best_of": 1, "condition_on_previous_text": False,
              "language": "en"}  # fmt: skip
    return {
        ("short", "clip"): TranscribeOptions(
            batch_size=batch, without_timestamps=True, max_new_tokens=224, **common
        ),
        ("long", "seq"): TranscribeOptions(batch_size=recordings, **common),
        ("long", "vad"): TranscribeOptions(batch_size=vad_batch, vad=True, **common),
    }


def transcribe_model(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    budget: Budget,
    sets: dict[str, AudioSet],
    paths: dict,
    rows: list[Row],
) -> None:
    """One Whisper model: mmseq and Hugging Face on every path, in each compute type (then
    mmseq compiled, against the same Hugging Face figures); rows appended as they come."""
    from transcribe_speed import hf_engine, hf_model

    from mmseq.transcription import Transcriber
    from mmseq.whisper import load_whisper_checkpoint
    from mmseq.whisper.embedded import embedded_model_dir

    hf = hf_model(load_whisper_checkpoint(embedded_model_dir(name)))
    batch = paths["short", "clip"].batch_size
    for compute_type in compute_types(args, device):
        peer_figures: dict[str, tuple] = {}  # set -> Hugging Face's figures, run once
        for compile_ in [False, True] if args.compile else [False]:
            label = compute_type + (" compiled" if compile_ else "")
            if not budget.allows(f"transcription {name} {label}"):
                continue
            transcriber = Transcriber(name, device, compute_type, compile=compile_)
            hf = hf.to(device, DTYPES[compute_type])
            peers = {
                "short": partial(hf_engine(hf, transcriber.whisper), batch_size=batch),
                "long": hf_longform(hf, transcriber.whisper),
            }
            for (set_name, path), options in paths.items():
                data = sets[set_name]
                if not budget.allows(f"transcription {name} {label} {set_name} {path}"):
                    continue
                ours = mmseq_transcribe(transcriber, options)
                row = transcribe_row(ours, peers[set_name], data, device, args.trials,
                                     peer_figures.get(set_name), args.quick)  # fmt: skip
                peer_figures.setdefault(
                    set_name, (row.peer, row.peer_peak_gib, row.extra["peer_wer"])
                )
                row.model, row.compute_type, row.path = name, label, path
                row.input = f"{set_name} {data.seconds:.0f} s" + (
                    f" b{options.batch_size}" if path != "seq" else ""
                )
                rows.append(row)
                print(f"  {name} {label} {set_name} {path}: mmseq {row.mmseq:.1f}, "
                      f"transformers {row.peer:.1f} audio s/s", flush=True)  # fmt: skip
            del transcriber, peers
            free_memory(device)
    del hf
    free_memory(device)


def transcribe_row(
    ours: Transcribe,
    peer: Transcribe,
    data: AudioSet,
    device: torch.device,
    trials: int,
    peer_done: tuple | None,
    quick: bool = False,
) -> Row:
    """mmseq and the peer (unless `peer_done` holds its figures already) on `data`, each warmed
    up on its first 30 s (the long set) or first recordings (the short set; quick: 1 s)."""
    from transcribe_vs_peers import wer

    warm = data.audios[:8] if data.name == "short" else [data.audios[0][: 30 * SAMPLE_RATE]]
    if quick:
        warm = [data.audios[0][:SAMPLE_RATE]]
    row = Row("", "", "", "", "audio s/s")
    ours(warm)
    wall, texts, row.mmseq_peak_gib = timed(lambda: ours(data.audios), device, trials)
    row.mmseq = data.seconds / wall
    row.extra["mmseq_wer"] = wer(data.references, texts)
    if peer_done is not None:
        row.peer, row.peer_peak_gib, row.extra["peer_wer"] = peer_done
    else:
        peer(warm)
        wall, texts, row.peer_peak_gib = timed(lambda: peer(data.audios), device, trials)
        row.peer = data.seconds / wall
        row.extra["peer_wer"] = wer(data.references, texts)
    return row


# ---------------------------------------------------------------------------------------------
# Report


def print_table(rows: list[Row]) -> None:
    if not rows:
        print("  (no rows)")
        return
    print(
        f"  {'model':<21}{'input':<20}{'compute':<18}{'path':<7}{'mmseq':>9}{'transformers':>13}"
        f"{'ratio':>7}{'GiB m/t':>12}  notes ({rows[0].unit})"
    )
    for r in rows:
        peer = f"{r.peer:13.1f}" if r.peer else f"{'-':>13}"
        ratio = f"{r.ratio:7.2f}" if r.ratio else f"{'-':>7}"
        gib = (r.mmseq_peak_gib, r.peer_peak_gib)
        memory = "/".join("-" if g is None else f"{g:.2f}" for g in gib)
        notes = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in r.extra.items()
            if k in ("same", "mmseq_wer", "peer_wer")
        )
        print(
            f"  {r.model:<21}{r.input:<20}{r.compute_type:<18}{r.path:<7}{r.mmseq:9.1f}{peer}"
            f"{ratio}{memory:>12}  {notes}"
        )


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    info = {
        "device": str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info |= {
            "gpu": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "sdpa_flash": torch.backends.cuda.flash_sdp_enabled(),
            "sdpa_mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    else:
        from text_generate_vs_peers import cpu_name

        info["cpu"] = cpu_name()
    return info


# each appends its rows as they come, so that an error keeps the rows before it
RUNNERS: dict[str, Callable[[argparse.Namespace, torch.device, Budget, list[Row]], None]] = {
    "training": training_section,
    "text": text_section,
    "transcription": transcription_section,
}


def run_sections(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    budget = Budget(args.budget_s)
    report: dict[str, Any] = {"environment": environment(device), "quick": args.quick}
    print(" ".join(f"{k}={v}" for k, v in report["environment"].items()))
    failed = []
    for section in [s for s in SECTIONS if s in args.sections]:
        print(f"\n{TITLES[section]}", flush=True)
        if not budget.allows(f"section {section}"):
            report[section] = {"skipped": "budget"}
            continue
        started, rows = time.perf_counter(), []
        report[section] = {}
        try:
            RUNNERS[section](args, device, budget, rows)
        except Exception as error:  # noqa: BLE001 - report it, go on with the next section
            traceback.print_exc(file=sys.stdout)
            print(f"  {section}: FAILED: {type(error).__name__}: {error}")
            failed.append(section)
            report[section]["error"] = f"{type(error).__name__}: {error}"
            free_memory(device)
        (print_training if section == "training" else print_table)(rows)
        seconds = time.perf_counter() - started
        print(f"  ({section}: {seconds:.0f} s)", flush=True)
        report[section] |= {
            "seconds": seconds,
            "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
        }
    report |= {"failed": failed, "skipped": budget.skipped, "total_s": budget.elapsed()}
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny inputs: a smoke test, no figures")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--budget-s", type=float, default=450.0, help="skip what is left after it")
    p.add_argument("--trials", type=int, default=1, help="timed calls per row, fastest kept")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--bf16", action="store_true", help="measure bf16 on a CPU that emulates it")
    p.add_argument("--peak-tflops", type=float, help="peak for MFU (H100/H200 bf16: 989)")
    g = p.add_argument_group("transcription")
    g.add_argument("--whisper-models", nargs="+", choices=("tiny.en", "base"),
                   default=["tiny.en", "base"])  # fmt: skip
    g.add_argument("--short-repeat", type=int, default=16, help="times over the 5 demo clips")
    g.add_argument("--long-minutes", type=float, default=3.0)
    g.add_argument("--long-recordings", type=int, default=2)
    g.add_argument("--batch-size", type=int, help="short clips per batch (CUDA 32, CPU 8)")
    g.add_argument("--vad-batch", type=int, help="VAD chunks per batch (CUDA 32, CPU 8)")
    g.add_argument("--compile", action="store_true", help="also Transcriber(compile=True)")
    g = p.add_argument_group("training")
    g.add_argument("--train-batch", type=int, help="30 s samples per step (CUDA 32, CPU 8)")
    g.add_argument("--train-steps", type=int, default=10)
    g.add_argument("--train-warmup", type=int, default=3)
    g.add_argument("--lr", type=float, default=1e-3)
    g = p.add_argument_group("text")
    g.add_argument("--text-sentences", type=int, default=64, help="sources at batch 32")
    g.add_argument("--text-b1", type=int, default=16, help="of them, decoded at batch 1")
    args = p.parse_args(argv)
    if args.trials < 1 or args.train_steps < 1 or args.train_warmup < 0:
        p.error("--trials and --train-steps must be >= 1, --train-warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import transformers

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars, per model
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmseq.precision import check_device

    device = torch.device(check_device(args.device))
    report = run_sections(args, device)
    print(f"\nfailed: {report['failed'] or 'none'}; skipped for the budget: "
          f"{report['skipped'] or 'none'}; {report['total_s']:.0f} s in all")  # fmt: skip
    line = json.dumps({"gpu_check": report}, default=str)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

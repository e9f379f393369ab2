"""`mmseq` text-to-text generation against its peers: same random weights, same source ids.

Method
------
- Models, built by transformers from configs (seeded, nothing downloaded) and saved with
  `save_pretrained` under `--workdir` (default: a temporary directory; an existing build there is
  reused): a MarianMT of opus-mt-en-fr's shape (d_model 512, 6+6 layers, 8 heads, ffn 2048,
  vocab 58101 with <pad> the last id, swish, scaled embeddings, 512 positions; decoding starts
  from <pad>, EOS 0, generation config with bad_words_ids [[pad]] and forced_eos_token_id 0) and
  a t5-small-shaped T5 (d_model 512, d_kv 64, 8 heads, d_ff 2048, 6+6 layers, vocab 32128,
  relu), init std 0.05 for Marian (T5: transformers' init). Each folder also holds a tokenizer
  made by tests/text_fixtures.py (SentencePiece trained on the Debian gettext catalogs), which
  CTranslate2's converter reads for the vocabulary: Marian's vocab.json is numbered again (the
  fixtures' file gives ids 6 and 8 to two pieces each) and padded with filler pieces to the model's
  58101 ids; the T5 converter's own padding repeats <extra_id_N> names, renamed after it.
- Lengths: random weights never stop on their own (or stop at once), so each model gets a
  "length clock" that makes EOS likelier the longer the output, plus noise from the source, for
  lengths of about 5-40 tokens like real translations of these strings: Marian carries one
  sinusoidal position feature (sin(0.0255 t), rising over the first 64 positions) through the
  decoder untouched (no sub-layer writes it, its layer-norm gains keep its scale) into the EOS
  row of the output embedding; T5, which has no absolute positions, gets a decoder head in
  layer 0 that averages a "start token" feature over the prefix (1 / (t + 1)) and a constant
  feature, both carried to the EOS row the same way (its own embedding row is scaled down, or
  the start token predicts itself). Greedy lengths: Marian 7-28 tokens (mean 16.5), T5 16-30
  (19.3). The logits are then scaled up (Marian 3x, T5 2x: the last decoder norm's gain, and
  Marian's logit bias), which keeps every argmax and widens the gaps between top candidates,
  as in trained models. The outputs repeat a token or two: speed does not depend on which.
  Everything else is the random model; the compute is that of the real shapes (the vocabulary
  projection included). Every engine decodes at most 64 new tokens
  (`max_new_tokens`; CTranslate2 `max_decoding_length`, one less for Marian, whose
  forced_eos_token_id Hugging Face and mmseq spend on the 64th token).
- Sources: `--sentences` English msgids of the Debian gettext catalogs
  (`text_fixtures.gettext_strings(n, seed=0)`), tokenised once with each model's tokenizer
  (EOS appended, at most 128 ids) and fed as the same ids to every engine (CTranslate2 as the
  converted vocabulary's token strings).
- Engines: mmseq (`mmseq.text.hf.load_hf`, `model.encode("text", ids, lengths)` and
  `mmseq.generation.decode` with `GenerationConfig.from_hf(generation_config.json)`) in fp32, bf16
  and int8 (`mmseq.precision.apply_compute_type`), fp32 and bf16 also compiled
  (`TextDecoder.compile_decoding`: torch.compile with inductor's freezing; `--compile` of `mmseq
  translate`; compiling is done in the warm-up calls, outside the timed pass); transformers
  `generate()` fp32, padded batches with attention masks, the folder's generation config;
  CTranslate2 fp32 and int8 (`ct2-transformers-converter`, with and without `--quantization int8`;
  `Translator` with `inter_threads=1`, `intra_threads=--threads`, `translate_batch` per batch).
  Same beams (1: greedy, or 4), length penalty 1.0, no sampling; beam search stops once 4
  hypotheses have finished (`early_stopping=True`, CTranslate2's rule: opus-mt's own generation
  config leaves it False, which searches on and which CTranslate2 cannot do).
- Cases (`--cases`): batch 1 and 32, greedy and 4 beams; `--quick`: 8 sentences, batch 1 and 8.
- Isolation: each (model, engine, precision) runs in its own spawned process that imports only its
  engine, sets `torch.set_num_threads(--threads)` and loads the model. All of a model's engines
  are loaded first; then case by case every engine runs the case in turn (so that a burst of
  background load falls on one case's engines alike): two warm-up calls on the first batch (the
  second one source token shorter), then one timed pass over all sentences (`--trials N`: N
  passes, the fastest kept). Peak RSS is that process's VmHWM during the timed pass (reset before
  it through /proc/self/clear_refs): the engine's imports (torch alone is about 500 MB), its
  model, the case's decoding, and heap that earlier cases freed but the allocator kept.
- Figures: tokens/s counts generated tokens without the start token and EOS, summed over the
  sentences, per wall second. `CPU s` is the process's user + system time over the pass (all
  its threads): about threads x wall when it had the cores to itself, less when other
  processes took them: a pass below 0.6 x threads x wall is run again (`--retries`, 1), and
  marked * in the table if every try was so. `same` is the number of sentences whose
  output ids equal transformers fp32's at batch 1 with the same beams (transformers' batch-32
  beams can differ from its unbatched ones, huggingface/transformers#25921); `mmseq x` is
  mmseq's tokens/s over the peer's in the same case, and which mmseq engine it is (transformers
  and CTranslate2 fp32 against the faster of mmseq fp32 eager and compiled, CTranslate2 int8
  against mmseq's fastest engine of any compute type; above 1: mmseq is faster).
- Training step (`--train-steps`, Marian only): forward, backward and AdamW step of mmseq's
  imported Marian (`EncoderDecoder.forward("text", ...)` with `shift_right` labels) against
  transformers' `MarianMTModel(labels=...)`, batch 16 x 32 source tokens x 32 target tokens,
  dropout as configured (0.1), each in its own process after 2 warm-up steps; steps/s and the
  ratio. Both also print their loss on the first batch in eval mode: the same model gives the
  same loss. Not quite the same step: mmseq also drops out the feed-forward hidden units
  (Marian's activation_dropout is 0.0; 12 dropout masks of [16, 32, 2048] more), and
  transformers trains its sinusoidal position tables (0.52 M more trainable parameters).
- bf16 is measured only where the CPU multiplies bf16 natively (flags `avx512_bf16` /
  `amx_bf16`) or on `--bf16`.
- Other processes competing for the cores slow every figure: read the load averages printed
  before and after, and compare figures only from one run.

Run: `.venv/bin/python benchmarks/text_generate_vs_peers.py [--models marian t5]
[--sentences 64] [--cases b1-greedy b1-beam4 b32-greedy b32-beam4] [--threads 2]
[--train-steps 5] [--trials 1] [--retries 1] [--workdir DIR] [--bf16] [--json OUT]
[--quick]`.
The defaults took 10 minutes on an idle 2-core Xeon (AMX), model building included; `--quick`
3 minutes on models kept by `--workdir`. Busy cores stretch the torch engines' passes most.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

# Only light modules at the top: each engine's process imports its own engine.

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("marian", "t5")
MAX_NEW_TOKENS = 64
SOURCE_MAX = 128  # source ids, EOS included
SEED = 0
# Beam search stops once num_beams hypotheses have finished: Hugging Face's (and mmseq's)
# early_stopping=True, CTranslate2's only rule (patience 1). Their default, False, searches on
# while a running beam could still beat the finished ones, which CTranslate2 cannot do.
EARLY_STOPPING = True
BUILD_VERSION = 1  # bump when the models below change: a --workdir build is then remade

MARIAN_VOCAB = 58101
MARIAN_PAD = MARIAN_VOCAB - 1
T5_VOCAB = 32128


@dataclass(frozen=True)
class Engine:
    name: str  # mmseq | transformers | ctranslate2
    compute_type: str  # float32 | bfloat16 | int8
    compiled: bool = False  # mmseq: TextDecoder.compile_decoding (torch.compile, freezing)

    @property
    def label(self) -> str:
        precision = {"float32": "fp32", "bfloat16": "bf16"}.get(self.compute_type, "int8")
        return f"{self.name} {precision}" + (" compiled" if self.compiled else "")


ENGINES = (
    Engine("mmseq", "float32"),
    Engine("mmseq", "float32", compiled=True),
    Engine("mmseq", "bfloat16"),
    Engine("mmseq", "bfloat16", compiled=True),
    Engine("mmseq", "int8"),
    Engine("transformers", "float32"),
    Engine("ctranslate2", "float32"),
    Engine("ctranslate2", "int8"),
)
REFERENCE = Engine("transformers", "float32")


@dataclass(frozen=True)
class Case:
    batch: int
    beams: int

    @property
    def name(self) -> str:
        return f"b{self.batch}-{'greedy' if self.beams == 1 else f'beam{self.beams}'}"

    @classmethod
    def parse(cls, text: str) -> Case:
        batch, _, search = text.partition("-")
        if not batch.startswith("b") or not batch[1:].isdigit():
            raise argparse.ArgumentTypeError(f"case {text!r}: expected bN-greedy or bN-beamK")
        if search == "greedy":
            return cls(int(batch[1:]), 1)
        if search.startswith("beam") and search[4:].isdigit():
            return cls(int(batch[1:]), int(search[4:]))
        raise argparse.ArgumentTypeError(f"case {text!r}: expected bN-greedy or bN-beamK")


DEFAULT_CASES = ("b1-greedy", "b1-beam4", "b32-greedy", "b32-beam4")
QUICK_CASES = ("b1-greedy", "b1-beam4", "b8-greedy", "b8-beam4")


@dataclass(frozen=True)
class Prepared:
    """One model on disk and what every engine needs to decode it the same way."""

    model: str
    hf_dir: Path
    ct2_dirs: dict[str, Path]  # compute type -> converted folder
    sources: list[list[int]]
    eos: int
    pad: int
    forced_eos: bool


@dataclass
class CaseResult:
    model: str
    engine: Engine
    case: Case
    wall_s: float
    cpu_s: float  # the process's user + system time over the pass, all threads
    tokens: int  # generated, without start and EOS
    peak_rss_mb: float
    outputs: list[list[int]]  # per sentence, generated ids before EOS

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


# ---------------------------------------------------------------------------------------------
# Models


def _fixtures():
    """tests/text_fixtures.py (gettext strings, tokenizer folders)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import text_fixtures

    return text_fixtures


def build_marian(folder: Path, tokenizer: bool = True) -> None:
    import torch
    import transformers

    torch.manual_seed(SEED)
    config = transformers.MarianConfig(
        vocab_size=MARIAN_VOCAB,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        activation_function="swish",
        scale_embedding=True,
        max_position_embeddings=512,
        pad_token_id=MARIAN_PAD,
        decoder_start_token_id=MARIAN_PAD,
        eos_token_id=0,
        init_std=0.05,  # peaked next-token distributions: fewer near-ties between engines
    )
    model = transformers.MarianMTModel(config).eval()
    _marian_length_clock(model, eos=0)
    model.save_pretrained(folder)
    generation = {
        "decoder_start_token_id": MARIAN_PAD,
        "eos_token_id": 0,
        "pad_token_id": MARIAN_PAD,
        "bad_words_ids": [[MARIAN_PAD]],
        "forced_eos_token_id": 0,
        "max_length": 512,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if tokenizer:  # benchmarks/gpu_check.py feeds ids and needs none
        _marian_tokenizer(folder)


MARIAN_CLOCK_DIM = 102  # sin(t * 10000 ** (-102 / 256)) = sin(0.0255 t)
MARIAN_CLOCK_WEIGHT = 2.0  # EOS logit per unit of the clock feature at the decoder output
MARIAN_EOS_BIAS = 6.0  # EOS's final_logits_bias (the other biases ~ N(0, 0.2))
# Both models' logits are scaled up (the last decoder norm's gain, and Marian's logit bias) by
# OUTPUT_GAIN, which keeps every argmax and widens the gaps between the top candidates, as in
# trained models (next-token margins of a random model are near-ties that any rounding flips)
OUTPUT_GAIN = {"marian": 3.0, "t5": 2.0}


def _marian_length_clock(model, eos: int) -> None:
    """Carry the position feature MARIAN_CLOCK_DIM to the decoder output and into EOS's logit.

    No token embedding has that feature (the column is zero), no decoder sub-layer writes it
    (zero output rows), and each post-LN layer norm's gain on it is the norm's input scale
    (measured on a batch), so it reaches the output as a centred, rising function of t."""
    import torch

    k = MARIAN_CLOCK_DIM
    decoder = model.model.decoder
    norms = [
        norm
        for layer in decoder.layers
        for norm in (
            layer.self_attn_layer_norm,
            layer.encoder_attn_layer_norm,
            layer.final_layer_norm,
        )
    ]
    with torch.no_grad():
        embedding = model.model.shared.weight  # tied: encoder, decoder and output projection
        embedding[:, k] = 0
        for layer in decoder.layers:
            for linear in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                linear.weight[k] = 0
                linear.bias[k] = 0
        g = torch.Generator().manual_seed(SEED)
        ids = torch.randint(3, 2000, (8, 24), generator=g)
        tokens = torch.randint(3, 2000, (8, MAX_NEW_TOKENS), generator=g)
        tokens[:, 0] = MARIAN_PAD
        scales: dict[int, float] = {}
        hooks = [
            norm.register_forward_pre_hook(
                lambda _m, args, i=i: scales.__setitem__(i, args[0].std(-1).mean().item())
            )
            for i, norm in enumerate(norms)
        ]
        model(input_ids=ids, decoder_input_ids=tokens)
        for hook in hooks:
            hook.remove()
        for i, norm in enumerate(norms):
            norm.weight[k] = scales[i] * (4.0 if i == 0 else 1.0)  # amplified once, then kept
            norm.bias[k] = 0
        embedding[eos, k] = MARIAN_CLOCK_WEIGHT
        model.final_logits_bias.normal_(std=0.2, generator=g)
        model.final_logits_bias[0, eos] = MARIAN_EOS_BIAS
        gain = OUTPUT_GAIN["marian"]
        norms[-1].weight.mul_(gain)
        norms[-1].bias.mul_(gain)
        model.final_logits_bias.mul_(gain)


def _marian_tokenizer(folder: Path) -> None:
    """The fixtures' Marian tokenizer, its vocab.json padded to the model's vocabulary with
    filler pieces before <pad> (CTranslate2's converter takes one token per model id)."""
    import warnings

    import transformers

    _fixtures().make_tokenizer_folder("marian", folder)
    path = folder / "vocab.json"
    # numbered again in file order: the fixtures' vocab.json gives the language codes the ids
    # 2, 4, 6, 8 (so 3 and 5 are unused and two pieces share ids 6 and 8)
    pieces = [p for p in json.loads(path.read_text(encoding="utf-8")) if p != "<pad>"]
    if len(pieces) >= MARIAN_PAD:
        raise RuntimeError(f"{path}: {len(pieces)} pieces, more than the model's vocabulary")
    pieces += [f"<filler_{i}>" for i in range(len(pieces), MARIAN_PAD)]
    vocab = {p: i for i, p in enumerate([*pieces, "<pad>"])}
    path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings.pop("added_tokens_decoder", None)  # ids of the old vocab.json
    config.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.get_vocab()
    if (tokenizer.pad_token_id, tokenizer.eos_token_id, len(ids)) != (MARIAN_PAD, 0, MARIAN_VOCAB):
        raise RuntimeError(f"{folder}: the padded Marian tokenizer does not load as written")
    tokenizer.save_pretrained(folder)


T5_CLOCK_DIM, T5_START_DIM, T5_CONST_DIM = 101, 102, 103
T5_START_FEATURE = 10.0  # the start token's value in T5_START_DIM (others: 0)
T5_CONST_FEATURE = 10.0  # every token's value in T5_CONST_DIM
T5_CLOCK_GAIN = 10.0  # the clock head's output weight
T5_CLOCK_WEIGHT = -53.0  # EOS weight on the 1 / (t + 1) feature at the output
T5_CONST_WEIGHT = 122.0  # EOS weight on the constant feature (others: T5_CONST_FEATURE)


def build_t5(folder: Path, tokenizer: bool = True) -> None:
    import torch
    import transformers

    torch.manual_seed(SEED)
    config = transformers.T5Config(
        vocab_size=T5_VOCAB,
        d_model=512,
        d_kv=64,
        num_heads=8,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        feed_forward_proj="relu",
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    _t5_length_clock(model, start=0, eos=1)
    model.save_pretrained(folder)
    generation = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if tokenizer:
        _fixtures().make_tokenizer_folder("t5", folder)


def _t5_length_clock(model, start: int, eos: int) -> None:
    """Decoder layer 0's self-attention head 0 attends evenly over the prefix (no query, no
    relative bias) and reads a feature only the start token has: its output, 1 / (t + 1), goes
    to T5_CLOCK_DIM, which no later sub-layer writes, and so does the constant T5_CONST_DIM
    (every token embeds it); the EOS row of the (tied) output embedding weighs both."""
    import torch

    decoder = model.decoder
    head = decoder.config.d_kv
    kt, ks, kc = T5_CLOCK_DIM, T5_START_DIM, T5_CONST_DIM
    with torch.no_grad():
        embedding = model.shared.weight
        embedding[start] *= 0.05  # else the start token's state predicts it again and again
        embedding[:, [kt, ks]] = 0
        embedding[start, ks] = T5_START_FEATURE
        embedding[:, kc] = T5_CONST_FEATURE
        attention = decoder.block[0].layer[0].SelfAttention
        attention.q.weight[:head] = 0
        attention.relative_attention_bias.weight[:, 0] = 0
        attention.v.weight[:head] = 0
        attention.v.weight[0, ks] = 1.0
        attention.o.weight[:, :head] = 0
        for block in decoder.block:
            for linear in (
                block.layer[0].SelfAttention.o,
                block.layer[1].EncDecAttention.o,
                block.layer[2].DenseReluDense.wo,
            ):
                linear.weight[[kt, kc]] = 0
        attention.o.weight[kt, 0] = T5_CLOCK_GAIN
        decoder.final_layer_norm.weight.mul_(OUTPUT_GAIN["t5"])
        decoder.final_layer_norm.weight[ks] = 0  # else the start token predicts itself
        embedding[eos, kt] = T5_CLOCK_WEIGHT
        embedding[eos, kc] = T5_CONST_WEIGHT


BUILDERS: dict[str, Callable[[Path], None]] = {"marian": build_marian, "t5": build_t5}


def convert_ct2(hf_dir: Path, out: Path, quantization: str | None) -> None:
    """ct2-transformers-converter, then unique names for the vocabulary's repeated tokens (the
    T5 converter names the ids past the tokenizer <extra_id_N> again from 0)."""
    converter = Path(sys.executable).with_name("ct2-transformers-converter")
    command = [str(converter), "--model", str(hf_dir), "--output_dir", str(out), "--force"]
    if quantization:
        command += ["--quantization", quantization]
    subprocess.run(command, check=True, capture_output=True, text=True)
    path = out / "shared_vocabulary.json"
    tokens = json.loads(path.read_text(encoding="utf-8"))
    seen: set[str] = set()
    for i, token in enumerate(tokens):
        if token in seen:
            tokens[i] = f"<dup_{i}>"
        seen.add(tokens[i])
    path.write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")


def prepare(model: str, workdir: Path, sentences: list[str]) -> Prepared:
    folder = workdir / f"{model}-v{BUILD_VERSION}"
    hf_dir = folder / "hf"
    ct2_dirs = {"float32": folder / "ct2-float32", "int8": folder / "ct2-int8"}
    done = folder / "done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        hf_dir.mkdir(parents=True)
        BUILDERS[model](hf_dir)
        for compute_type, out in ct2_dirs.items():
            convert_ct2(hf_dir, out, None if compute_type == "float32" else compute_type)
        done.touch()
        print(f"{model}: built and converted in {time.perf_counter() - started:.0f} s")
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    return Prepared(
        model,
        hf_dir,
        ct2_dirs,
        tokenise(hf_dir, sentences, eos),
        eos,
        generation["pad_token_id"],
        generation.get("forced_eos_token_id") is not None,
    )


def tokenise(hf_dir: Path, sentences: list[str], eos: int) -> list[list[int]]:
    import warnings

    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    rows = tokenizer(sentences).input_ids
    return [r if len(r) <= SOURCE_MAX else [*r[: SOURCE_MAX - 1], eos] for r in rows]


# ---------------------------------------------------------------------------------------------
# Engines: each runs in its own process and returns `decode(rows, beams) -> outputs`

Decode = Callable[[list[list[int]], int], list[list[int]]]


def until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def padded(rows: list[list[int]], pad: int):
    import torch

    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lengths


def mmseq_engine(p: Prepared, engine: Engine, threads: int) -> Decode:
    import torch

    from mmseq.generation import GenerationConfig, decode
    from mmseq.precision import apply_compute_type
    from mmseq.text.hf import load_hf

    torch.set_num_threads(threads)
    imported = load_hf(p.hf_dir)
    model = apply_compute_type(imported.model, engine.compute_type)
    if engine.compiled:
        model.decoder.compile_decoding()
    start = imported.decoder_start_token_id

    @torch.inference_mode()
    def run(rows: list[list[int]], beams: int) -> list[list[int]]:
        config = GenerationConfig.from_hf(
            imported.generation,
            num_beams=beams,
            max_new_tokens=MAX_NEW_TOKENS,
            early_stopping=EARLY_STOPPING,
        )
        ids, lengths = padded(rows, p.pad)
        encoded = model.encode("text", ids, lengths)
        prefix = torch.full((len(rows), 1), start, dtype=torch.long)
        out = decode(model.decoder, encoded.states, encoded.mask, prefix, config)
        return [until_eos(s[0, 1:].tolist(), p.eos) for s in out.sequences]

    return run


def transformers_engine(p: Prepared, engine: Engine, threads: int) -> Decode:
    import torch
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(p.hf_dir).eval()

    @torch.inference_mode()
    def run(rows: list[list[int]], beams: int) -> list[list[int]]:
        ids, lengths = padded(rows, p.pad)
        mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            num_beams=beams,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            **({"early_stopping": EARLY_STOPPING} if beams > 1 else {}),
        )
        return [until_eos(row[1:], p.eos) for row in out.tolist()]

    return run


def ct2_engine(p: Prepared, engine: Engine, threads: int) -> Decode:
    import ctranslate2

    folder = p.ct2_dirs[engine.compute_type]
    translator = ctranslate2.Translator(
        str(folder),
        device="cpu",
        compute_type=engine.compute_type,
        inter_threads=1,
        intra_threads=threads,
    )
    tokens = json.loads((folder / "shared_vocabulary.json").read_text(encoding="utf-8"))
    index = {t: i for i, t in enumerate(tokens)}
    # the forced EOS of Hugging Face and mmseq takes the 64th step; CTranslate2 has no such rule
    max_length = MAX_NEW_TOKENS - 1 if p.forced_eos else MAX_NEW_TOKENS

    def run(rows: list[list[int]], beams: int) -> list[list[int]]:
        results = translator.translate_batch(
            [[tokens[i] for i in r] for r in rows],
            beam_size=beams,
            patience=1.0,  # stop when beam_size hypotheses are finished
            length_penalty=1.0,
            max_decoding_length=max_length,
        )
        return [[index[t] for t in r.hypotheses[0]] for r in results]

    return run


ENGINE_BUILDERS: dict[str, Callable[[Prepared, Engine, int], Decode]] = {
    "mmseq": mmseq_engine,
    "transformers": transformers_engine,
    "ctranslate2": ct2_engine,
}


_decode: Decode | None = None  # the engine of this process, set by `load_engine`
_warm: set[Case] = set()


def load_engine(p: Prepared, engine: Engine, threads: int) -> None:
    """In the engine's process: import the engine and load the model."""
    global _decode
    _decode = ENGINE_BUILDERS[engine.name](p, engine, threads)


def timed_case(p: Prepared, engine: Engine, case: Case) -> CaseResult:
    """In the engine's process: one pass over all sentences in batches of `case.batch`, after
    two warm-up calls on the first batch the first time the case is run, the second with one
    source token less (a compiled engine compiles its dynamic-shape graph at the second source
    length it meets)."""
    if case not in _warm:
        first = p.sources[: case.batch]
        _decode(first, case.beams)
        _decode([row[:-1] if len(row) > 1 else row for row in first], case.beams)
        _warm.add(case)
    reset_peak_rss()
    started, cpu_started = time.perf_counter(), time.process_time()
    outputs: list[list[int]] = []
    for i in range(0, len(p.sources), case.batch):
        outputs += _decode(p.sources[i : i + case.batch], case.beams)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    tokens = sum(len(o) for o in outputs)
    return CaseResult(p.model, engine, case, wall, cpu, tokens, peak_rss_mb(), outputs)


# A pass whose process used less CPU time than this share of threads x wall did not have the
# cores to itself (measured alone: 0.7-0.9 for CTranslate2, 0.95-1.0 for torch; with another
# process busy on the same cores torch's threads wait for each other and one pass took 15x
# its usual wall time at a share of 0.5).
BUSY_CORES_SHARE = 0.6


def shared_cores(r: CaseResult, threads: int) -> bool:
    return r.cpu_s < BUSY_CORES_SHARE * threads * r.wall_s


def measure_model(
    p: Prepared,
    engines: Sequence[Engine],
    cases: Sequence[Case],
    threads: int,
    trials: int,
    retries: int,
) -> list[CaseResult]:
    """Every engine loaded in its own process first; then, case by case, each engine runs the
    case in turn (so that a burst of background load hits one case's engines alike, and
    close together in time), `trials` times; the fastest pass of each is kept. A pass that
    did not have the cores to itself (`shared_cores`) is run again, up to `retries` times."""
    best: dict[tuple[Engine, Case], CaseResult] = {}
    with ExitStack() as stack:
        pools = {}
        for engine in engines:
            pools[engine] = stack.enter_context(spawn_pool())
            pools[engine].submit(load_engine, p, engine, threads).result()
        for trial in range(trials):
            for case in cases:
                for engine, pool in pools.items():
                    for _attempt in range(retries + 1):
                        r = pool.submit(timed_case, p, engine, case).result()
                        key = (engine, case)
                        if key not in best or r.wall_s < best[key].wall_s:
                            best[key] = r
                        busy = shared_cores(r, threads)
                        print(
                            f"  {'' if trials == 1 else f'pass {trial + 1}: '}{case.name:<11} "
                            f"{engine.label:<17} {r.wall_s:7.2f} s {r.tokens_per_s:6.0f} "
                            f"tokens/s (CPU {r.cpu_s:.1f} s)"
                            + (" cores busy elsewhere" if busy else ""),
                            flush=True,
                        )
                        if not busy:
                            break
    return [best[(engine, case)] for engine in engines for case in cases]


def reset_peak_rss() -> None:
    """VmHWM := VmRSS (Linux); a no-op where /proc/self/clear_refs cannot be written."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's VmHWM (not `ru_maxrss`, which a spawned child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def spawn_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


# ---------------------------------------------------------------------------------------------
# Training step (Marian)

TRAIN_BATCH, TRAIN_SOURCE, TRAIN_TARGET = 16, 32, 32
TRAIN_WARMUP = 2


def train_batch(eos: int):
    import torch

    g = torch.Generator().manual_seed(SEED)
    source = torch.randint(3, 2000, (TRAIN_BATCH, TRAIN_SOURCE), generator=g)
    labels = torch.randint(3, 2000, (TRAIN_BATCH, TRAIN_TARGET), generator=g)
    source[:, -1] = eos
    labels[:, -1] = eos
    return source, labels


def train_steps(engine: str, hf_dir: Path, eos: int, steps: int, threads: int) -> dict:
    """In its own process: eval-mode loss on the batch, then warm-up and timed AdamW steps."""
    import torch

    torch.set_num_threads(threads)
    source, labels = train_batch(eos)
    if engine == "mmseq":
        from mmseq.model import shift_right
        from mmseq.text.hf import load_hf

        imported = load_hf(hf_dir)
        model = imported.model
        start = imported.decoder_start_token_id
        tokens = shift_right(labels, start, MARIAN_PAD)
        lengths = torch.full((TRAIN_BATCH,), TRAIN_SOURCE)

        def loss_of():
            return model("text", source, tokens, lengths, labels).loss

    else:
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.MarianMTModel.from_pretrained(hf_dir)
        mask = torch.ones_like(source)

        def loss_of():
            return model(input_ids=source, attention_mask=mask, labels=labels).loss

    model.eval()
    with torch.no_grad():
        eval_loss = loss_of().item()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    walls = []
    for step in range(TRAIN_WARMUP + steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        optimizer.step()
        if step >= TRAIN_WARMUP:
            walls.append(time.perf_counter() - started)
    return {
        "engine": engine,
        "trainable_params": sum(t.numel() for t in model.parameters() if t.requires_grad),
        "eval_loss": eval_loss,
        "steps": steps,
        "wall_s": sum(walls),
        "steps_per_s": steps / sum(walls),
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------
# Report


def cpu_name() -> str:
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags":
                flags |= set(value.split())
    except OSError:
        pass
    native = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8") if f in flags]
    return (
        f"{name} ({', '.join(native) or 'no bf16/int8 matrix extensions'}), {os.cpu_count()} cores"
    )


def native_bf16() -> bool:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def reference_of(r: CaseResult, results: list[CaseResult]) -> CaseResult | None:
    """transformers fp32 at batch 1 with the same beams, else at the same batch."""
    same = [x for x in results if x.model == r.model and x.engine == REFERENCE]
    for x in same:
        if x.case == Case(1, r.case.beams):
            return x
    return next((x for x in same if x.case == r.case), None)


def identical(r: CaseResult, results: list[CaseResult]) -> str:
    ref = reference_of(r, results)
    if ref is None:
        return "-"
    return f"{sum(a == b for a, b in zip(r.outputs, ref.outputs, strict=True))}/{len(r.outputs)}"


def mmseq_ratio(r: CaseResult, results: list[CaseResult]) -> tuple[float, str] | None:
    """A peer's row: mmseq's tokens/s over the peer's in the same case, and which mmseq engine.
    Against fp32 peers the faster of mmseq fp32 eager and compiled; against CTranslate2 int8
    mmseq's fastest engine of any compute type."""
    if r.engine.name == "mmseq":
        return None
    ours = [
        x
        for x in results
        if x.model == r.model
        and x.case == r.case
        and x.engine.name == "mmseq"
        and (r.engine.compute_type == "int8" or x.engine.compute_type == "float32")
    ]
    if not ours:
        return None
    best = max(ours, key=lambda x: x.tokens_per_s)
    return best.tokens_per_s / r.tokens_per_s, best.engine.label.removeprefix("mmseq ")


def print_table(results: list[CaseResult], threads: int) -> None:
    header = (
        "| model | case | engine | wall s | CPU s | tokens | tokens/s | peak RSS MB "
        "| same as HF fp32 | mmseq x |"
    )
    print(header)
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        ratio = mmseq_ratio(r, results)
        shown = f"{ratio[0]:.2f} ({ratio[1]})" if ratio is not None else "-"
        mark = " *" if shared_cores(r, threads) else ""
        print(
            f"| {r.model} | {r.case.name} | {r.engine.label} | {r.wall_s:.2f}{mark} | "
            f"{r.cpu_s:.1f} | {r.tokens} | {r.tokens_per_s:.0f} | {r.peak_rss_mb:.0f} | "
            f"{identical(r, results)} | {shown} |"
        )
    if any(shared_cores(r, threads) for r in results):
        print("* the cores were busy with other processes during every try: distrust this time")


def mismatches(results: list[CaseResult], limit: int = 3) -> None:
    """For rows that differ from the reference: where the first few sentences diverge."""
    for r in results:
        ref = reference_of(r, results)
        if ref is None or r is ref:
            continue
        diffs = [i for i, (a, b) in enumerate(zip(r.outputs, ref.outputs, strict=True)) if a != b]
        if not diffs:
            continue
        notes = []
        for i in diffs[:limit]:
            a, b = r.outputs[i], ref.outputs[i]
            at = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            at = min(len(a), len(b)) if at is None else at
            notes.append(f"#{i} at token {at} (lengths {len(a)} vs {len(b)})")
        print(
            f"  {r.model} {r.case.name} {r.engine.label}: {len(diffs)} differ: " + "; ".join(notes)
        )


def versions() -> dict[str, str]:
    return {name: version(name) for name in ("torch", "transformers", "ctranslate2")}


def load_averages() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--sentences", type=int, help="source sentences (default 64, --quick 8)")
    p.add_argument("--cases", nargs="+", type=Case.parse, help=f"default {' '.join(DEFAULT_CASES)}")
    p.add_argument(
        "--engines",
        nargs="+",
        choices=[e.label.replace(" ", "-") for e in ENGINES],
        default=[e.label.replace(" ", "-") for e in ENGINES],
    )
    p.add_argument("--threads", type=int, default=2, help="torch / CTranslate2 threads")
    p.add_argument(
        "--train-steps", type=int, help="timed training steps (default 5, --quick 2; 0: none)"
    )
    p.add_argument("--trials", type=int, default=1, help="timed passes per case, best kept")
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="passes run again when the process did not have the cores to itself",
    )
    p.add_argument("--workdir", type=Path, help="where the models are built (kept, reused)")
    p.add_argument("--bf16", action="store_true", help="measure bf16 on a CPU that emulates it")
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 sentences, batch 1 and 8")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    if args.sentences is None:
        args.sentences = 8 if args.quick else 64
    if args.cases is None:
        args.cases = [Case.parse(c) for c in (QUICK_CASES if args.quick else DEFAULT_CASES)]
    if args.train_steps is None:
        args.train_steps = 2 if args.quick else 5
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print(f"CPU: {cpu_name()}")
    print(f"load average before: {load_averages()}; {args.threads} threads")
    print(f"versions: {versions()}")
    engines = [e for e in ENGINES if e.label.replace(" ", "-") in args.engines]
    if not (args.bf16 or native_bf16()):
        engines = [e for e in engines if e.compute_type != "bfloat16"]
        print("bf16: left out, no native bf16 on this CPU (avx512_bf16, amx_bf16); see --bf16")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        sentences = _fixtures().gettext_strings(args.sentences, SEED)
        results: list[CaseResult] = []
        training: list[dict] = []
        for model in args.models:
            p = prepare(model, workdir, sentences)
            lengths = [len(s) for s in p.sources]
            print(
                f"{model}: {len(p.sources)} sources, {min(lengths)}-{max(lengths)} ids "
                f"(mean {sum(lengths) / len(lengths):.1f})",
                flush=True,
            )
            results += measure_model(
                p, engines, args.cases, args.threads, args.trials, args.retries
            )
            if model == "marian" and args.train_steps > 0:
                for name in ("mmseq", "transformers"):
                    with spawn_pool() as pool:
                        figures = pool.submit(
                            train_steps, name, p.hf_dir, p.eos, args.train_steps, args.threads
                        ).result()
                    training.append(figures)
                    print(
                        f"  train {name:<12} {figures['steps_per_s']:.3f} steps/s "
                        f"(eval loss {figures['eval_loss']:.4f})",
                        flush=True,
                    )
    print(f"load average after: {load_averages()}")
    print(
        f"\nCPU: {cpu_name()}; {args.threads} threads; {args.sentences} sentences; "
        f"max_new_tokens {MAX_NEW_TOKENS}"
    )
    print_table(results, args.threads)
    for r in results:
        if r.engine == REFERENCE and r.case.batch == 1:
            lengths = [len(o) for o in r.outputs]
            print(
                f"{r.model} {r.case.name}: transformers fp32 generated {min(lengths)}-"
                f"{max(lengths)} tokens per sentence, mean {sum(lengths) / len(lengths):.1f}"
            )
    print("Outputs that differ from transformers fp32 (batch 1, same beams):")
    mismatches(results)
    if training:
        print(
            f"\nTraining step, Marian, batch {TRAIN_BATCH} x {TRAIN_SOURCE} source x "
            f"{TRAIN_TARGET} target tokens, AdamW:"
        )
        print("| engine | trainable params | steps | steps/s | eval loss | peak RSS MB |")
        print("|---|--:|--:|--:|--:|--:|")
        for f in training:
            print(
                f"| {f['engine']} | {f['trainable_params'] / 1e6:.2f} M | {f['steps']} | "
                f"{f['steps_per_s']:.3f} | {f['eval_loss']:.4f} | {f['peak_rss_mb']:.0f} |"
            )
        if len(training) == 2:
            ratio = training[0]["steps_per_s"] / training[1]["steps_per_s"]
            print(f"mmseq x transformers: {ratio:.2f}")
    print(f"total run time: {time.perf_counter() - started:.0f} s")
    if args.json:
        figures = {
            "cpu": cpu_name(),
            "threads": args.threads,
            "versions": versions(),
            "results": [asdict(r) | {"case": r.case.name} for r in results],
            "training": training,
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

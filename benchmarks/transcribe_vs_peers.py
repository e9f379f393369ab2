"""`mmseq` transcription against its peers: same clips, same weights, same threads.

Method
------
- Model (`--model`): tiny.en (default; English) or base (multilingual), the models mmseq
  embeds (`mmseq.whisper.embedded.embedded_model_dir`: CTranslate2 folders). Every engine holds
  the same weights: mmseq (`Transcriber`), Hugging Face transformers
  (`WhisperForConditionalGeneration` built from a `WhisperConfig` and
  `openai_to_hf(checkpoint.state_dict)`, its own `WhisperFeatureExtractor`, `generate()` with
  mmseq's token suppression), openai-whisper (`whisper.load_model` on a `.pt` written by
  `save_openai_pt`) and faster-whisper (CTranslate2, loading the embedded folder itself). The
  speech is English: with base every engine is told language "en" and task transcribe (mmseq
  `TranscribeOptions(language="en")`, Hugging Face's prompt `<|startoftranscript|><|en|>
  <|transcribe|><|notimestamps|>`, openai-whisper and faster-whisper `language="en"`), so none
  detects the language.
- Data, made at run time with espeak-ng (`mmseq.data.synth`): SHORT is `--short-clips` clips
  of 3-12 s (default 120: each of 24 sentences in each of five voices, 582 s and 1785
  words, so one word is 0.06 WER points; at 16 clips the modes' WER differed by 3 points that a
  bigger set showed to be noise); LONG is `--long-recordings` (2) recordings of
  `--long-minutes` each, made of the same kind of sentences separated by 1-3 s pauses plus one
  10 s pause. References are the sentences (concatenated for LONG).
- Decoding: greedy (`--beam-size 1`, the default) or, with `--beam-size N`, beam search with
  N beams in every engine (mmseq `TranscribeOptions(beam_size=N)`, which follows
  openai-whisper's beam rules; openai-whisper `beam_size=N`, passed only when N > 1, since its
  `beam_size=1` is a one-beam search, not greedy; faster-whisper `beam_size=N`; transformers
  `num_beams=N`, patience and length penalty left at each engine's default); one temperature
  (0, no fallback), language "en", no conditioning on the previous text, each engine's default
  no-speech and log-prob thresholds (the same numbers in mmseq, openai-whisper and
  faster-whisper). SHORT: no timestamps, one clip per window; mmseq
  and Hugging Face batch clips (`batch`), openai-whisper and faster-whisper take one clip at a
  time. LONG: `seq` is openai-whisper's sequential 30 s windows with timestamps (mmseq
  batch 1, openai-whisper, faster-whisper `WhisperModel.transcribe`; mmseq also at batch 8,
  which decodes the windows of the set's recordings together, token for token the same);
  `vad` is the batched path that decodes only voice-activity chunks, with timestamps (mmseq
  `TranscribeOptions(vad=True)`); `vad-text` the same without timestamps (mmseq
  `without_timestamps=True`; faster-whisper `BatchedInferencePipeline`, whose default it is).
  Hugging Face is left out of LONG (its long-form `generate()` needs another generation setup).
- Isolation: every row runs in its own spawned process that imports only its engine, sets
  `torch.set_num_threads(--threads)` (faster-whisper: `cpu_threads=--threads`), loads the model,
  warms up on a small input (the first batch of SHORT clips, or the first 30 s of a LONG
  recording). All rows of a set are loaded first; then in each of `--trials` passes (default
  1) every row transcribes the whole set in turn, so that background load
  hits all rows alike, and each row's best wall time is kept. Peak RSS is that process's
  VmHWM: the engine's imports, model loading and decoding, plus the set's waveforms (a few MB).
- The table's title line names the model and the beam size (also `model` and `beam_size` in
  the JSON).
- Figures: RTF is audio seconds / wall seconds (higher is faster). WER (jiwer, whole set) after
  lowercasing, dropping punctuation and spelling out single digits. `mmseq x` is a peer's wall
  time over mmseq's on the same set, path, precision and batch (above 1: mmseq is faster).
- Other processes competing for the cores slow every figure: read the load averages printed
  before and after, and compare figures only from one run.
- `--memory-check` runs only the memory check instead: mmseq transcribing a 16 kHz WAV file of
  each of `--memory-minutes` (default 1, 10 and 60; the LONG kind of 1-minute recording,
  repeated) by the sequential long-form path and the VAD path (`--memory-paths`), each run in a
  fresh process. The file is read as a stream, so the peak RSS (VmHWM of the whole process:
  imports, model, reading and transcription) should not grow with the audio: the check prints
  the difference between every two lengths (requirement: 60 min within 50 MB of 1 min), and
  the peak of the transcription alone (VmHWM reset after loading the model) above the RSS
  before it. The VAD path decodes `batch_size` (8) speech chunks at a time, fewer in a short
  file (a minute holds 2-3): its peak grows with the batch up to 8 chunks (about 4 minutes of
  audio), so compare it from 10 minutes on. Past that, glibc's heap adds some noise: its
  dynamic mmap threshold serves large tensors from a heap that fragments, which measured up to
  +100 MB between 10 and 60 min on the VAD path and 3 MB with `MALLOC_MMAP_THRESHOLD_=131072`.

- bf16 is measured only where the CPU multiplies bf16 natively (AVX-512 BF16 or AMX: flags
  `avx512_bf16` / `amx_bf16` in /proc/cpuinfo) or on `--bf16`: elsewhere PyTorch emulates it
  (measured 1.5x real time on an AVX2 CPU, 7x slower than fp32), which says nothing about the
  mode and would take most of the run.

Run: `.venv/bin/python benchmarks/transcribe_vs_peers.py [--model tiny.en|base]
[--beam-size 1] [--engines mmseq hf openai-whisper faster-whisper] [--sets short long]
[--short-clips 120] [--long-minutes 4] [--long-recordings 2] [--threads 2] [--trials N] [--bf16]
[--json OUT]`, or `... --memory-check [--memory-minutes 1 10 60] [--memory-paths seq vad]`
(the memory check also follows `--model` and `--beam-size`).
Defaults (tiny.en, greedy) take about 16 minutes on an idle 2-core CPU (the memory check about
10), with `--long-recordings 6` about 27. base does about 3x tiny.en's arithmetic per token and
beam 5 decodes five hypotheses per window, so expect those runs to take several times longer
(not yet timed on an idle machine). LONG's two recordings of 4 minutes hold about 1030 reference
words (one word = 0.1 WER points), six hold 3101 (0.03 points): on two, the modes' long-form
WERs differed from the peers' by up to a point that six recordings halved; at 1.5 minutes they
moved by several points with identical weights.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

# Only light modules at the top: each row's process imports its own engine, so the peak RSS of
# faster-whisper, say, does not include torch.

SAMPLE_RATE = 16000
ENGINES = ("mmseq", "hf", "openai-whisper", "faster-whisper")
SETS = ("short", "long")
MODELS = ("tiny.en", "base")  # embedded in mmseq (mmseq.whisper.embedded)
VOICES = ("en-us", "en", "en-us+f3", "en+m3", "en-gb-x-rp")
PAUSES = (1.0, 2.0, 3.0, 1.5)  # seconds between LONG sentences, in turn
LONG_PAUSE = 10.0  # once, in the middle of each LONG recording
WORDS_PER_SECOND = 2.9  # espeak-ng at 160 words a minute (measured, pauses included)
WARMUP_SECONDS = 30
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your umbrella, because the forecast says it will rain this "
    "afternoon.",
    "Our team meeting has been moved to Thursday morning so that everyone can attend.",
    "She opened the window and listened to the birds singing in the garden.",
    "The library will be closed for renovation during the first two weeks of next month, and "
    "all borrowed books can be returned at the post office instead.",
    "Can you send me the report before the end of the day?",
    "He walked along the river until the sun went down behind the hills.",
    "Every morning the baker wakes up early to prepare fresh bread for the whole village.",
    "Students who want to join the science club should sign up at the front desk by Friday.",
    "The train to the city leaves from platform four.",
    "After a long discussion, the committee finally agreed on a budget for the new playground, "
    "which will be built next to the school.",
    "Turn left at the second traffic light and park behind the blue building.",
    "Music can change the mood of a room in a matter of seconds.",
    "We need more coffee, some milk, and a loaf of bread from the shop.",
    "The museum offers free guided tours on weekends for families with young children, and the "
    "tickets can be reserved online or at the entrance.",
    "Thank you all for coming here today, it means a lot to us.",
    "The engineer explained how the bridge was designed to survive strong winds and heavy snow.",
    "Dinner will be ready in about twenty minutes.",
    "A small boat drifted slowly across the quiet lake while the fishermen waited patiently for "
    "a bite.",
    "Remember to save your work often, because the computer might restart without any warning.",
    "The children built a tall sandcastle near the water and decorated it with shells.",
    "Our flight was delayed by three hours, so we spent the evening reading in the airport "
    "lounge and talking about our plans for the trip.",
    "Good ideas often come when you least expect them.",
    "The garden needs water every evening during the hot summer months.",
)

Transcribe = Callable[[list[np.ndarray]], list[str]]  # waveforms -> texts


@dataclass(frozen=True)
class Run:
    """One row of the table: an engine transcribing a set one way."""

    set: str  # short | long
    engine: str
    # clip (one window per clip) | seq (sequential long-form) | vad (batched, VAD chunks, with
    # timestamps) | vad-text (the same without timestamps: one text per chunk)
    path: str
    compute_type: str  # float32 | bfloat16 | int8
    batch: int

    @property
    def mode(self) -> str:
        precision = {"float32": "fp32", "bfloat16": "bf16"}.get(self.compute_type, "int8")
        return precision if self.path == "clip" else f"{self.path} {precision}"


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (Linux: /proc/cpuinfo flags)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def planned_runs(engines: Sequence[str], sets: Sequence[str], bf16: bool = True) -> list[Run]:
    short = [
        Run("short", "mmseq", "clip", "float32", 1),
        Run("short", "mmseq", "clip", "float32", 8),
        Run("short", "mmseq", "clip", "bfloat16", 8),
        Run("short", "mmseq", "clip", "int8", 1),
        Run("short", "mmseq", "clip", "int8", 8),
        Run("short", "hf", "clip", "float32", 1),
        Run("short", "hf", "clip", "float32", 8),
        Run("short", "openai-whisper", "clip", "float32", 1),
        Run("short", "faster-whisper", "clip", "float32", 1),
        Run("short", "faster-whisper", "clip", "int8", 1),
    ]
    long = [
        Run("long", "mmseq", "seq", "float32", 1),
        # the same windows and tokens, the recordings' windows decoded together (a folder)
        Run("long", "mmseq", "seq", "float32", 8),
        Run("long", "mmseq", "seq", "int8", 1),
        Run("long", "mmseq", "vad", "float32", 8),
        Run("long", "mmseq", "vad", "int8", 8),
        Run("long", "mmseq", "vad-text", "float32", 8),
        Run("long", "mmseq", "vad-text", "int8", 8),
        Run("long", "openai-whisper", "seq", "float32", 1),
        Run("long", "faster-whisper", "seq", "float32", 1),
        Run("long", "faster-whisper", "seq", "int8", 1),
        Run("long", "faster-whisper", "vad-text", "int8", 8),
    ]
    runs = (short if "short" in sets else []) + (long if "long" in sets else [])
    return [r for r in runs if r.engine in engines and (bf16 or r.compute_type != "bfloat16")]


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class DataSet:
    name: str
    file: Path  # .npz of the waveforms, in order
    references: list[str]
    audio_s: float
    span: str  # shortest and longest recording


def short_set(folder: Path, clips: int) -> DataSet:
    """`clips` clips: clip i is sentence i in voice i, each counted modulo its list (24
    sentences and 5 voices, so up to 120 distinct sentence-voice pairs)."""
    from mmseq.data.synth import speak

    if not 1 <= clips <= len(SENTENCES) * len(VOICES):
        raise ValueError(f"--short-clips: expected 1..{len(SENTENCES) * len(VOICES)}, got {clips}")
    pairs = [(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)]) for i in range(clips)]
    audios = [speak(text, voice) for text, voice in pairs]
    return save_set("short", folder, audios, [text for text, _ in pairs])


def long_recording(minutes: float, first: int = 0) -> tuple[np.ndarray, str]:
    """About `minutes` of sentences (from SENTENCES[first] on) and pauses -> (audio, text)."""
    from mmseq.data.synth import recording

    spoken: list[str] = []
    estimate = 0.0
    while estimate < minutes * 60:
        sentence = SENTENCES[(first + len(spoken)) % len(SENTENCES)]
        spoken.append(sentence)
        estimate += len(sentence.split()) / WORDS_PER_SECOND + PAUSES[len(spoken) % len(PAUSES)]
    parts: list[str | float] = []
    for i, sentence in enumerate(spoken):
        pause = LONG_PAUSE if i == len(spoken) // 2 else PAUSES[i % len(PAUSES)]
        parts += [sentence, pause] if i < len(spoken) - 1 else [sentence]
    return recording(parts, voices=VOICES), " ".join(spoken)


def long_set(folder: Path, minutes: float, recordings: int = 2) -> DataSet:
    """`recordings` recordings that start at different sentences."""
    if recordings < 1:
        raise ValueError(f"--long-recordings: expected at least 1, got {recordings}")
    firsts = [k * len(SENTENCES) // recordings for k in range(recordings)]
    made = [long_recording(minutes, first) for first in firsts]
    return save_set("long", folder, [a for a, _ in made], [t for _, t in made])


def save_set(name: str, folder: Path, audios: list[np.ndarray], texts: list[str]) -> DataSet:
    file = folder / f"{name}.npz"
    np.savez(file, *audios)
    lengths = [len(a) / SAMPLE_RATE for a in audios]
    span = f"{min(lengths):.1f}-{max(lengths):.1f} s each"
    return DataSet(name, file, texts, sum(lengths), span)


def load_waveforms(file: Path) -> list[np.ndarray]:
    with np.load(file) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


# ---------------------------------------------------------------------------------------------
# Engines: each builder runs inside the row's process and returns a Transcribe


@dataclass(frozen=True)
class Peers:
    """What the engines need besides the audio, prepared once by the parent process."""

    openai_pt: Path  # the embedded weights as an openai-whisper checkpoint
    ct2_dir: Path  # the embedded CTranslate2 model (faster-whisper's format)
    hf_generation: dict = field(default_factory=dict)  # transformers GenerationConfig fields
    # <|startoftranscript|>[<|en|><|transcribe|>]<|notimestamps|>
    sot_sequence: tuple[int, ...] = ()
    eot: int = 0
    model: str = "tiny.en"  # embedded model name, as mmseq's `--model`
    language: str | None = None  # "en" for a multilingual model; None: English-only
    beam_size: int = 1  # 1: greedy


def prepare_peers(folder: Path, model: str = "tiny.en", beam_size: int = 1) -> Peers:
    from transcribe_speed import hf_generation_config  # benchmarks/ is the script's folder

    from mmseq.transcription import Transcriber
    from mmseq.whisper import load_whisper_checkpoint
    from mmseq.whisper.checkpoints import save_openai_pt
    from mmseq.whisper.loading import embedded_model_dir

    if beam_size < 1:
        raise ValueError(f"--beam-size: expected at least 1, got {beam_size}")
    ct2_dir = embedded_model_dir(model)
    openai_pt = folder / f"{model}.pt"
    save_openai_pt(load_whisper_checkpoint(ct2_dir), openai_pt)
    whisper = Transcriber(model, device="cpu").whisper
    tok = whisper.tokenizer
    language = "en" if tok.is_multilingual else None
    # the prompt carries language and task, so Hugging Face needs no is_multilingual set-up
    hf_generation = hf_generation_config(whisper).to_dict() | {"num_beams": beam_size}
    return Peers(
        openai_pt,
        ct2_dir,
        hf_generation,
        tuple(tok.sot_sequence(without_timestamps=True, language="en", task="transcribe")),
        tok.eot,
        model,
        language,
        beam_size,
    )


def torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def mmseq_engine(run: Run, peers: Peers, threads: int) -> Transcribe:
    from mmseq.transcription import TranscribeOptions, Transcriber

    torch_threads(threads)

    transcriber = Transcriber(peers.model, device="cpu", compute_type=run.compute_type)
    options = TranscribeOptions(
        temperatures=(0.0,),
        beam_size=peers.beam_size,
        best_of=1,
        language=peers.language,
        condition_on_previous_text=False,
        without_timestamps=run.path in ("clip", "vad-text"),
        vad=run.path.startswith("vad"),
        batch_size=run.batch,
    )
    return lambda audios: [t.text for t in transcriber.transcribe(audios, options=options)]


def hf_engine(run: Run, peers: Peers, threads: int) -> Transcribe:
    import torch
    import transformers
    from transcribe_speed import hf_model
    from transformers import GenerationConfig, WhisperFeatureExtractor

    from mmseq.whisper import load_whisper_checkpoint
    from mmseq.whisper.tokenizer import WhisperTokenizer

    torch_threads(threads)
    transformers.logging.set_verbosity_error()  # per-call generate() notices
    model = hf_model(load_whisper_checkpoint(peers.openai_pt))
    model.generation_config = GenerationConfig.from_dict(peers.hf_generation)
    features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    tokenizer = WhisperTokenizer.from_file(peers.ct2_dir / "tokenizer.json")
    prefix = torch.tensor([peers.sot_sequence])

    @torch.inference_mode()
    def transcribe(audios: list[np.ndarray]) -> list[str]:
        texts = []
        for start in range(0, len(audios), run.batch):
            batch = audios[start : start + run.batch]
            mel = features(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            out = model.generate(
                input_features=mel, decoder_input_ids=prefix.expand(len(batch), -1)
            )
            for row in out.tolist():
                texts.append(tokenizer.decode([t for t in row if t < peers.eot]).strip())
        return texts

    return transcribe


def openai_engine(run: Run, peers: Peers, threads: int) -> Transcribe:
    import whisper

    torch_threads(threads)
    model = whisper.load_model(str(peers.openai_pt), device="cpu")
    options = {"temperature": 0.0, "fp16": False, "language": "en"}
    options |= {"condition_on_previous_text": False}
    if peers.beam_size > 1:  # beam_size=1 would be a one-beam search, not greedy
        options["beam_size"] = peers.beam_size
    if run.path == "clip":
        options["without_timestamps"] = True
    return lambda audios: [whisper.transcribe(model, a, **options)["text"].strip() for a in audios]


def faster_engine(run: Run, peers: Peers, threads: int) -> Transcribe:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(peers.ct2_dir), device="cpu", compute_type=run.compute_type, cpu_threads=threads
    )
    options = {
        "language": "en",
        "beam_size": peers.beam_size,
        "best_of": 1,
        "temperature": 0.0,
        "condition_on_previous_text": False,
    }
    if run.path == "vad-text":  # BatchedInferencePipeline's default: without timestamps
        pipeline = BatchedInferencePipeline(model)
        decode = lambda a: pipeline.transcribe(a, batch_size=run.batch, **options)  # noqa: E731
    else:
        options |= {"without_timestamps": run.path == "clip", "vad_filter": False}
        decode = lambda a: model.transcribe(a, **options)  # noqa: E731

    def transcribe(audios: list[np.ndarray]) -> list[str]:
        return ["".join(s.text for s in decode(a)[0]).strip() for a in audios]

    return transcribe


BUILDERS: dict[str, Callable[[Run, Peers, int], Transcribe]] = {
    "mmseq": mmseq_engine,
    "hf": hf_engine,
    "openai-whisper": openai_engine,
    "faster-whisper": faster_engine,
}


# ---------------------------------------------------------------------------------------------
# Measuring: one process per row, trials in turn


@dataclass
class Result:
    run: Run
    audio_s: float
    wall_s: float
    rtf: float
    wer: float
    peak_rss_mb: float
    texts: list[str]


@dataclass
class _Loaded:
    """A row's process state: its engine and the set's waveforms."""

    transcribe: Transcribe
    audios: list[np.ndarray]


_loaded: _Loaded | None = None  # set in each row's process by `load_engine`


def load_engine(run: Run, file: Path, peers: Peers, threads: int) -> None:
    """In the row's process: build the engine and warm it up on a small input."""
    global _loaded
    audios = load_waveforms(file)
    transcribe = BUILDERS[run.engine](run, peers, threads)
    transcribe(warmup_input(audios, run))
    _loaded = _Loaded(transcribe, audios)


def timed_pass() -> tuple[float, list[str], float]:
    """In the row's process: (wall seconds, texts, peak RSS MB so far) of one pass."""
    started = time.perf_counter()
    texts = _loaded.transcribe(_loaded.audios)
    return time.perf_counter() - started, texts, peak_rss_mb()


def warmup_input(audios: list[np.ndarray], run: Run) -> list[np.ndarray]:
    if run.set == "short":
        return audios[: run.batch]
    return [audios[0][: WARMUP_SECONDS * SAMPLE_RATE]]


def peak_rss_mb() -> float:
    """This process's peak RSS. Not `ru_maxrss`: a spawned child inherits its parent's peak
    through exec, while VmHWM belongs to the child's own address space."""
    return proc_status_mb("VmHWM")


def proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def spawn_pool() -> ProcessPoolExecutor:
    """A fresh single-process pool: its own imports, threads and RSS."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def measure_set(
    runs: list[Run], data: DataSet, peers: Peers, threads: int, trials: int
) -> list[Result]:
    """Load every row's engine in its own process, then run the passes in turn (so that
    background load hits every row alike) and keep each row's best."""
    with ExitStack() as stack:
        pools = {}
        for run in runs:
            pools[run] = stack.enter_context(spawn_pool())
            pools[run].submit(load_engine, run, data.file, peers, threads).result()
            print(f"  loaded {run.set} {run.engine} {run.mode} b{run.batch}", flush=True)
        best: dict[Run, tuple[float, list[str], float]] = {}
        for trial in range(trials):
            for run, pool in pools.items():
                wall, texts, rss = pool.submit(timed_pass).result()
                if run not in best or wall < best[run][0]:
                    best[run] = (wall, texts, rss)
                print(f"  pass {trial + 1}: {run.engine} {run.mode} b{run.batch} {wall:.1f} s")
    return [
        Result(
            run, data.audio_s, wall, data.audio_s / wall, wer(data.references, texts), rss, texts
        )
        for run, (wall, texts, rss) in best.items()
    ]


DIGITS = "zero one two three four five six seven eight nine".split()


def normalise(text: str) -> str:
    """Lowercase, no apostrophes or punctuation, single digits spelled out."""
    words = re.sub(r"[^\w\s]", " ", text.lower().replace("'", "")).split()
    return " ".join(DIGITS[int(w)] if len(w) == 1 and w.isdigit() else w for w in words)


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return jiwer.wer([normalise(t) for t in references], [normalise(t) for t in hypotheses])


# ---------------------------------------------------------------------------------------------
# Report


def speed_ratio(result: Result, results: list[Result]) -> float | None:
    """A peer's wall time over mmseq's with the same set, path, precision and batch."""
    if result.run.engine == "mmseq":
        return None
    key = like_for_like(result.run)
    for other in results:
        if other.run.engine == "mmseq" and like_for_like(other.run) == key:
            return result.wall_s / other.wall_s
    return None


def like_for_like(run: Run) -> tuple[str, str, str, int]:
    return run.set, run.path, run.compute_type, run.batch


def print_table(results: list[Result]) -> None:
    header = f"{'set':<5} {'engine':<14} {'mode':<13} {'batch':>5} {'wall s':>8} {'RTF':>6}"
    print(f"{header} {'WER':>6} {'RSS MB':>7} {'mmseq x':>7}")
    for r in results:
        ratio = speed_ratio(r, results)
        shown = f"{ratio:7.2f}" if ratio is not None else f"{'-':>7}"
        print(
            f"{r.run.set:<5} {r.run.engine:<14} {r.run.mode:<13} {r.run.batch:>5} "
            f"{r.wall_s:>8.2f} {r.rtf:>6.1f} {r.wer:>6.3f} {r.peak_rss_mb:>7.0f} {shown}"
        )


def print_best_ratios(results: list[Result]) -> None:
    """Per set: mmseq's fastest row against each peer's fastest row."""
    for name in SETS:
        rows = [r for r in results if r.run.set == name]
        ours = [r for r in rows if r.run.engine == "mmseq"]
        if not ours:
            continue
        best = min(ours, key=lambda r: r.wall_s)
        for engine in ENGINES[1:]:
            theirs = [r for r in rows if r.run.engine == engine]
            if theirs:
                peer = min(theirs, key=lambda r: r.wall_s)
                print(
                    f"{name}: mmseq {best.run.mode} b{best.run.batch} is "
                    f"{peer.wall_s / best.wall_s:.2f}x the speed of {engine} "
                    f"{peer.run.mode} b{peer.run.batch}"
                )


def title(args: argparse.Namespace) -> str:
    """Which model and decoding the figures are of."""
    decoding = "greedy (beam 1)" if args.beam_size == 1 else f"beam search, {args.beam_size} beams"
    return f"model {args.model}, {decoding}"


def versions() -> dict[str, str]:
    names = ("torch", "transformers", "openai-whisper", "faster-whisper", "ctranslate2")
    return {name: version(name) for name in names}


def load_averages() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------
# Memory check


def memory_probe(
    file: Path, path: str, threads: int, model: str = "tiny.en", beam_size: int = 1
) -> dict[str, float]:
    """In a fresh process: mmseq transcribing one file by `path` (seq | vad); RSS in MB."""
    import soundfile as sf
    import torch

    from mmseq.transcription import TranscribeOptions, Transcriber

    torch.set_num_threads(threads)
    transcriber = Transcriber(model, device="cpu")
    options = TranscribeOptions(
        temperatures=(0.0,),
        beam_size=beam_size,
        best_of=1,
        condition_on_previous_text=False,
        vad=path == "vad",
        language="en" if transcriber.whisper.tokenizer.is_multilingual else None,
    )
    load_peak = peak_rss_mb()  # imports and model loading
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: peak of what follows only
    before = proc_status_mb("VmRSS")
    started = time.perf_counter()
    transcript = transcriber.transcribe(file, options=options)  # raises if unreadable
    peak = peak_rss_mb()
    return {
        "audio_s": sf.info(str(file)).duration,
        "file_mb": file.stat().st_size / 2**20,
        "wall_s": time.perf_counter() - started,
        "words": len(transcript.text.split()),
        "rss_before_mb": before,
        "transcribe_peak_mb": peak,
        "load_peak_mb": load_peak,
        "process_peak_mb": max(peak, load_peak),
    }


def write_repeated(file: Path, audio: np.ndarray, minutes: float) -> None:
    """`minutes` of `audio` repeated into a 16 kHz PCM WAV, written piece by piece."""
    import soundfile as sf

    left = round(minutes * 60 * SAMPLE_RATE)
    with sf.SoundFile(file, "w", SAMPLE_RATE, 1, subtype="PCM_16") as out:
        while left > 0:
            out.write(audio[:left])
            left -= min(len(audio), left)


def memory_check(
    minutes: Sequence[float],
    paths: Sequence[str],
    threads: int,
    folder: Path,
    model: str = "tiny.en",
    beam_size: int = 1,
) -> list[dict]:
    audio, _ = long_recording(1.0)
    figures = []
    for m in minutes:
        file = folder / f"memory-{m:g}min.wav"
        write_repeated(file, audio, m)
        for path in paths:
            with spawn_pool() as pool:
                probe = pool.submit(memory_probe, file, path, threads, model, beam_size).result()
            figures.append(probe | {"minutes": m, "path": path})
            growth = probe["transcribe_peak_mb"] - probe["rss_before_mb"]
            print(
                f"{path}: {probe['audio_s']:6.1f} s of audio ({probe['file_mb']:.0f} MB WAV): "
                f"process peak {probe['process_peak_mb']:.0f} MB (model loading "
                f"{probe['load_peak_mb']:.0f} MB); RSS {probe['rss_before_mb']:.0f} MB before "
                f"transcribe, peak {probe['transcribe_peak_mb']:.0f} MB during it "
                f"(+{growth:.0f}); {probe['words']} words in {probe['wall_s']:.1f} s"
            )
        file.unlink()
    for path in paths:
        runs = [f for f in figures if f["path"] == path]
        for i, short in enumerate(runs):
            for long in runs[i + 1 :]:
                growth = [f["transcribe_peak_mb"] - f["rss_before_mb"] for f in (short, long)]
                print(
                    f"{path}: {long['minutes']:g} min vs {short['minutes']:g} min: process "
                    f"peak {long['process_peak_mb'] - short['process_peak_mb']:+.1f} MB, "
                    f"transcription peak growth {growth[1] - growth[0]:+.1f} MB"
                )
    return figures


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default=MODELS[0], help="embedded Whisper model")
    p.add_argument("--beam-size", type=int, default=1, help="beams in every engine; 1: greedy")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    p.add_argument("--short-clips", type=int, default=120, help="SHORT clips (at most 120)")
    p.add_argument("--long-minutes", type=float, default=4.0, help="per LONG recording")
    p.add_argument(
        "--long-recordings",
        type=int,
        default=2,
        help="LONG recordings (more make its WER decidable to 0.5 points: two sets of 2 x 4 "
        "min disagreed by up to 1 point on the same modes)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch / CTranslate2 threads")
    p.add_argument("--trials", type=int, default=1, help="timed passes, best kept")
    p.add_argument("--bf16", action="store_true", help="measure bf16 on a CPU that emulates it")
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--memory-check", action="store_true", help="run only the memory check")
    p.add_argument("--memory-minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    p.add_argument("--memory-paths", nargs="+", choices=("seq", "vad"), default=["seq", "vad"])
    return p.parse_args()


def main() -> None:
    args = parse_args()
    print(f"load average before: {load_averages()}; {args.threads} threads; {title(args)}")
    figures: dict[str, object] = {
        "model": args.model,
        "beam_size": args.beam_size,
        "threads": args.threads,
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.memory_check:
            figures["memory_check"] = memory_check(
                args.memory_minutes,
                args.memory_paths,
                args.threads,
                folder,
                args.model,
                args.beam_size,
            )
        else:
            figures |= benchmark(args, folder)
    print(f"load average after: {load_averages()}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


def benchmark(args: argparse.Namespace, folder: Path) -> dict[str, object]:
    data = {}
    if "short" in args.sets:
        data["short"] = short_set(folder, args.short_clips)
    if "long" in args.sets:
        data["long"] = long_set(folder, args.long_minutes, args.long_recordings)
    for d in data.values():
        print(f"{d.name}: {len(d.references)} recordings, {d.audio_s:.1f} s of audio ({d.span})")
    peers = prepare_peers(folder, args.model, args.beam_size)
    bf16 = args.bf16 or native_bf16()
    if not bf16:
        print("bf16: left out, no native bf16 on this CPU (avx512_bf16, amx_bf16); see --bf16")
    results = []
    for name, d in data.items():
        runs = [r for r in planned_runs(args.engines, args.sets, bf16) if r.set == name]
        results += measure_set(runs, d, peers, args.threads, args.trials)
    print(f"versions: {versions()}")
    print(title(args))
    print_table(results)
    print_best_ratios(results)
    return {
        "sets": {k: asdict(d) for k, d in data.items()},
        "results": [asdict(r) | {"mode": r.run.mode} for r in results],
    }


if __name__ == "__main__":
    main()

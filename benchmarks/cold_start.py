"""Cold start: the whole process as a user running a command line once per file sees it.

Method
------
- Commands, each a fresh subprocess whose wall time (from `subprocess.run` to its exit) counts
  the interpreter's start, the imports, loading the model, reading the file, decoding and exit:
  - mmseq: `mmseq transcribe FILE --model M --compute-type C --beam-size B --threads T
    --device cpu --temperature-increment-on-fallback none` (+ `--language en` for base), the
    console script beside this Python. Everything else stays at the command line's defaults:
    conditioning on the previous text, timestamps, no VAD, thresholds 2.4 / -1.0 / 0.6.
  - faster-whisper: the minimal script a user would write (`FW_SCRIPT`): `WhisperModel(DIR,
    device="cpu", compute_type=C, cpu_threads=T).transcribe(FILE, beam_size=B, language="en",
    temperature=0, condition_on_previous_text=True, without_timestamps=False,
    vad_filter=False)`, joining and printing the segments' text. DIR is the folder mmseq embeds
    (`mmseq.whisper.embedded.embedded_model_dir(M)`), so both hold the same weights.
    CTranslate2 has no bfloat16 on the CPU (`ctranslate2.get_supported_compute_types("cpu")`):
    mmseq's bfloat16 rows are compared with faster-whisper's float32.
- Grid: `--models` (tiny.en, base) x `--compute-types` (float32, int8, and bfloat16 only where
  /proc/cpuinfo has avx512_bf16 or amx_bf16: elsewhere PyTorch emulates it) x `--beam-sizes`
  (1, 5) x `--files`: `clip`, the 4 s mmseq/assets/clips/clip4_en-m3.flac, and `long`, about
  `--long-minutes` (1) of espeak-ng sentences and 1-10 s pauses (`transcribe_vs_peers.
  long_recording`, made with `mmseq.data.synth.recording`) written as a 16 kHz WAV.
- Before timing, each engine runs once per model untimed (the clip, the first compute type,
  beam 1): Python compiles its bytecode and the OS caches the model file, as for a user's
  second run. The first run after installing (and base's one-time join of its two halves) is
  not measured.
- Each command runs `--repeats` (5) times, the engines alternating (mmseq first in even
  repeats, faster-whisper first in odd ones), so that background load hits both alike; the
  table gives the median and the minimum wall seconds, and `fw/mmseq`, faster-whisper's median
  over mmseq's (above 1: mmseq is faster). CPU seconds (user + system of the child, median)
  show how much of the wall time was spent waiting.
- WER (jiwer, after `transcribe_vs_peers.normalise`: lowercase, no punctuation, single digits
  spelled out) of the first repeat's text against the reference: the clip's line in
  mmseq/assets/clips/transcripts.tsv, the recording's sentences. The texts are listed once
  each, with the rows that produced them; a row whose repeats disagree is flagged.
- Split of each process (JSON always, printed with `--profile`), medians: mmseq's `load` and
  `decode` are what its log reports ("loaded ... in X s": building the `Transcriber`;
  "transcribed ... in Y s": reading and decoding; 0.1 s resolution), `start` the rest of the
  wall time (interpreter, imports, exit); faster-whisper's script reports its import, load and
  transcription times the same way.
- `--profile` also runs each engine's first command once under `python -X importtime` and
  prints its 10 slowest top-level imports (cumulative; importtime's own overhead inflates
  them somewhat).
- Other processes competing for the cores slow every figure, mmseq's most: PyTorch's OpenMP
  threads wait for each other when the cores are oversubscribed (the 4 s clip at load 6 on 2
  cores: 11 s with `--threads 2`, 6 s with 1; faster-whisper 4 s). Read the load averages
  printed before and after, and compare figures only from one run on an idle machine.

Run: `.venv/bin/python benchmarks/cold_start.py [--models tiny.en base] [--compute-types
float32 int8 bfloat16] [--beam-sizes 1 5] [--files clip long] [--repeats 5] [--threads 2]
[--long-minutes 1] [--profile] [--json OUT]`. Needs faster-whisper (`pip install
'mmseq[bench]'`) and base (`'mmseq[base]'`). Defaults (24 rows, 240 processes) should take
15-20 minutes on an idle 2-core CPU (estimated from smoke runs on a loaded one; base's beam-5
runs on the long recording take most of it); `--repeats 3` about 60% of that.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

from transcribe_vs_peers import (  # benchmarks/ is the script's folder
    SAMPLE_RATE,
    load_averages,
    long_recording,
    native_bf16,
    wer,
)

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "mmseq" / "assets" / "clips" / "clip4_en-m3.flac"
MODELS = ("tiny.en", "base")
COMPUTE_TYPES = ("float32", "int8", "bfloat16")
FILES = ("clip", "long")
ENGINES = ("mmseq", "faster-whisper")
TIMEOUT_S = 900  # one command

FW_SCRIPT = """\
import sys, time
started = time.perf_counter()
from faster_whisper import WhisperModel
imported = time.perf_counter()
model_dir, file, compute_type, beam_size, threads = sys.argv[1:6]
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=int(threads))
loaded = time.perf_counter()
segments, _ = model.transcribe(
    file, beam_size=int(beam_size), language="en", temperature=0.0,
    condition_on_previous_text=True, without_timestamps=False, vad_filter=False,
)
text = "".join(s.text for s in segments).strip()  # the generator decodes as it is read
done = time.perf_counter()
print(text)
print(f"fw-split {imported - started:.3f} {loaded - imported:.3f} {done - loaded:.3f}",
      file=sys.stderr)
"""


@dataclass(frozen=True)
class Row:
    """One cell of the grid: both engines on one file, one way."""

    model: str
    compute_type: str
    beam_size: int
    file: str  # clip | long

    @property
    def fw_compute_type(self) -> str:
        return "float32" if self.compute_type == "bfloat16" else self.compute_type

    @property
    def label(self) -> str:
        return f"{self.model} {self.compute_type} beam {self.beam_size} {self.file}"


@dataclass
class Runs:
    """One engine's repeats of one row."""

    command: list[str]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    splits: list[dict[str, float]] = field(default_factory=list)  # start / load / decode

    def summary(self, reference: str) -> dict[str, object]:
        parts = {key: statistics.median(s[key] for s in self.splits) for key in self.splits[0]}
        return {
            "command": self.command,
            "walls_s": self.walls,
            "median_s": statistics.median(self.walls),
            "min_s": min(self.walls),
            "cpu_s": statistics.median(self.cpus),
            "split_s": parts,
            "text": self.texts[0],
            "texts_identical": len(set(self.texts)) == 1,
            "wer": wer([reference], [self.texts[0]]),
        }


# ---------------------------------------------------------------------------------------------
# Commands


def mmseq_command(row: Row, file: Path, threads: int) -> list[str]:
    script = Path(sys.executable).with_name("mmseq")
    if not script.exists():
        raise SystemExit(f"{script}: no mmseq command beside this Python (pip install -e .)")
    command = [str(script), "transcribe", str(file), "--model", row.model]
    command += ["--compute-type", row.compute_type, "--beam-size", str(row.beam_size)]
    command += ["--threads", str(threads), "--device", "cpu"]
    command += ["--temperature-increment-on-fallback", "none"]
    return command + (["--language", "en"] if row.model != "tiny.en" else [])


def fw_command(row: Row, file: Path, threads: int, model_dir: Path) -> list[str]:
    arguments = [str(model_dir), str(file), row.fw_compute_type, str(row.beam_size), str(threads)]
    return [sys.executable, "-c", FW_SCRIPT, *arguments]


def run_once(command: list[str], folder: Path) -> tuple[float, float, str, str]:
    """(wall s, child CPU s, stdout, stderr) of `command` run in `folder`; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(
            f"exit {done.returncode}: {' '.join(command[:3])} ...\n{done.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout.strip(), done.stderr


def split(engine: str, wall: float, stderr: str) -> dict[str, float]:
    """Where the process's wall time went, from what it logged (see the module docstring)."""
    if engine == "mmseq":
        loaded = re.search(r"^loaded .* in ([\d.]+) s$", stderr, re.MULTILINE)
        decoded = re.search(r"^transcribed .* in ([\d.]+) s \(", stderr, re.MULTILINE)
        if not (loaded and decoded):
            raise RuntimeError(f"mmseq logged no load / transcription times:\n{stderr[-2000:]}")
        load, decode = float(loaded.group(1)), float(decoded.group(1))
        return {"start": wall - load - decode, "load": load, "decode": decode}
    found = re.search(r"^fw-split ([\d.]+) ([\d.]+) ([\d.]+)$", stderr, re.MULTILINE)
    if not found:
        raise RuntimeError(f"faster-whisper script reported no times:\n{stderr[-2000:]}")
    imports, load, decode = map(float, found.groups())
    return {"start": wall - load - decode, "imports": imports, "load": load, "decode": decode}


def slowest_imports(command: list[str], folder: Path, count: int = 10) -> list[dict]:
    """`command` once under `python -X importtime`: its `count` slowest top-level imports."""
    if command[0] != sys.executable:  # a console script: run its file with this Python
        command = [sys.executable, *command]
    profiled = [command[0], "-X", "importtime", *command[1:]]
    _, _, _, stderr = run_once(profiled, folder)
    imports = []
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$", line)
        if found and not found.group(3):  # no indentation: imported by no other module
            imports.append({"module": found.group(4), "cumulative_s": int(found.group(2)) / 1e6})
    imports.sort(key=lambda i: -i["cumulative_s"])
    return [{"total_top_level_s": sum(i["cumulative_s"] for i in imports)}] + imports[:count]


# ---------------------------------------------------------------------------------------------
# Measuring


def prepare_files(names: list[str], folder: Path, long_minutes: float) -> dict[str, dict]:
    """name -> {path, audio_s, reference}."""
    import soundfile as sf

    files = {}
    if "clip" in names:
        with (CLIP.parent / "transcripts.tsv").open(newline="") as table:
            references = {r["file"]: r["text"] for r in csv.DictReader(table, delimiter="\t")}
        audio_s = sf.info(str(CLIP)).duration
        files["clip"] = {"path": CLIP, "audio_s": audio_s, "reference": references[CLIP.name]}
    if "long" in names:
        audio, reference = long_recording(long_minutes)
        path = folder / "long.wav"
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        files["long"] = {"path": path, "audio_s": len(audio) / SAMPLE_RATE, "reference": reference}
    return files


def measure(
    rows: list[Row], files: dict[str, dict], args: argparse.Namespace, folder: Path
) -> list[dict]:
    from mmseq.whisper.embedded import embedded_model_dir

    model_dirs = {m: embedded_model_dir(m) for m in args.models}  # base: joined here, untimed
    results = []
    warmed: set[str] = set()
    for row in rows:
        path = files[row.file]["path"]
        runs = {
            "mmseq": Runs(mmseq_command(row, path, args.threads)),
            "faster-whisper": Runs(fw_command(row, path, args.threads, model_dirs[row.model])),
        }
        if row.model not in warmed:  # bytecode compiled, model file in the page cache
            warmed.add(row.model)
            warm = Row(row.model, args.compute_types[0], 1, "clip")
            run_once(mmseq_command(warm, CLIP, args.threads), folder)
            run_once(fw_command(warm, CLIP, args.threads, model_dirs[row.model]), folder)
        for repeat in range(args.repeats):
            for engine in ENGINES if repeat % 2 == 0 else ENGINES[::-1]:
                wall, cpu, text, stderr = run_once(runs[engine].command, folder)
                runs[engine].walls.append(wall)
                runs[engine].cpus.append(cpu)
                runs[engine].texts.append(text)
                runs[engine].splits.append(split(engine, wall, stderr))
                print(f"  {row.label}: {engine} {wall:.2f} s", flush=True)
        reference = files[row.file]["reference"]
        ours, theirs = (runs[e].summary(reference) for e in ENGINES)
        theirs["compute_type"] = row.fw_compute_type
        results.append(
            asdict(row)
            | {
                "audio_s": files[row.file]["audio_s"],
                "mmseq": ours,
                "faster_whisper": theirs,
                "ratio": theirs["median_s"] / ours["median_s"],
            }
        )
    return results


# ---------------------------------------------------------------------------------------------
# Report


def cpu_summary() -> dict[str, object]:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if "Model name" in line)
    except (OSError, StopIteration):
        name = "unknown"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni")
    return {"model_name": name, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def versions() -> dict[str, str]:
    names = ("mmseq", "torch", "faster-whisper", "ctranslate2")
    return {name: version(name) for name in names}


def print_table(results: list[dict]) -> None:
    print(
        f"{'model':<8} {'mmseq':<8} {'fw':<7} {'beam':>4} {'file':<5} {'audio s':>7} "
        f"{'mmseq med':>9} {'min':>6} {'cpu':>6} {'fw med':>7} {'min':>6} {'cpu':>6} "
        f"{'fw/mmseq':>8} {'WER mmseq':>9} {'WER fw':>6}"
    )
    for r in results:
        ours, theirs = r["mmseq"], r["faster_whisper"]
        print(
            f"{r['model']:<8} {r['compute_type']:<8} {theirs['compute_type']:<7} "
            f"{r['beam_size']:>4} {r['file']:<5} {r['audio_s']:>7.1f} "
            f"{ours['median_s']:>9.2f} {ours['min_s']:>6.2f} {ours['cpu_s']:>6.2f} "
            f"{theirs['median_s']:>7.2f} {theirs['min_s']:>6.2f} {theirs['cpu_s']:>6.2f} "
            f"{r['ratio']:>8.2f} {ours['wer']:>9.3f} {theirs['wer']:>6.3f}"
        )


def print_texts(results: list[dict]) -> None:
    """Each distinct text once, with the rows (and engines) that produced it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in results:
        for key, engine in (("mmseq", "mmseq"), ("faster_whisper", "fw")):
            runs = r[key]
            label = f"{engine} {r['model']} {runs.get('compute_type', r['compute_type'])} "
            label += f"b{r['beam_size']}" + ("" if runs["texts_identical"] else " (repeats differ)")
            seen.setdefault((r["file"], runs["text"]), []).append(label)
    for (file, text), labels in seen.items():
        print(f"[{file}] {', '.join(labels)}:\n  {text}")


def print_profile(results: list[dict], imports: dict[str, list[dict]]) -> None:
    print("split of each process, medians (s): start = wall - load - decode")
    for r in results:
        for key in ("mmseq", "faster_whisper"):
            s = r[key]["split_s"]
            parts = " ".join(f"{k} {v:.2f}" for k, v in s.items())
            print(
                f"  {r['model']} {r['compute_type']} b{r['beam_size']} {r['file']} {key}: {parts}"
            )
    for name, found in imports.items():
        total, slowest = found[0]["total_top_level_s"], found[1:]
        print(f"{name}: top-level imports {total:.2f} s under -X importtime; slowest:")
        for i in slowest:
            print(f"  {i['cumulative_s']:6.3f} s  {i['module']}")


# ---------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument(
        "--compute-types",
        nargs="+",
        choices=COMPUTE_TYPES,
        help="default: float32 int8, and bfloat16 where the CPU has native bf16",
    )
    p.add_argument("--beam-sizes", nargs="+", type=int, default=[1, 5])
    p.add_argument("--files", nargs="+", choices=FILES, default=list(FILES))
    p.add_argument("--repeats", type=int, default=5, help="runs of each command, alternating")
    p.add_argument("--threads", type=int, default=2, help="mmseq --threads, fw cpu_threads")
    p.add_argument("--long-minutes", type=float, default=1.0, help="the long recording")
    p.add_argument("--profile", action="store_true", help="import times and each split")
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    if args.compute_types is None:
        args.compute_types = ["float32", "int8"] + (["bfloat16"] if native_bf16() else [])
    if args.repeats < 1 or args.threads < 1 or min(args.beam_sizes) < 1:
        p.error("--repeats, --threads and --beam-sizes must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    cpu = cpu_summary()
    print(
        f"CPU: {cpu['model_name']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}; "
        f"native bf16: {native_bf16()}; {args.threads} threads; {args.repeats} repeats"
    )
    if "OMP_NUM_THREADS" in os.environ:
        print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} is set (passed to every process)")
    print(f"load average before: {load_averages()}")
    rows = [
        Row(m, c, b, f)
        for m in args.models
        for c in args.compute_types
        for b in args.beam_sizes
        for f in args.files
    ]
    figures: dict[str, object] = {
        "cpu": cpu,
        "native_bf16": native_bf16(),
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = prepare_files(args.files, folder, args.long_minutes)
        for name, f in files.items():
            print(f"{name}: {f['path'].name}, {f['audio_s']:.1f} s")
        results = measure(rows, files, args, folder)
        imports = {}
        if args.profile:
            first = rows[0]
            path = files[first.file]["path"]
            from mmseq.whisper.embedded import embedded_model_dir

            model_dir = embedded_model_dir(first.model)
            imports["mmseq"] = slowest_imports(mmseq_command(first, path, args.threads), folder)
            fw = fw_command(first, path, args.threads, model_dir)
            imports["faster-whisper"] = slowest_imports(fw, folder)
    print(f"load average after: {load_averages()}")
    print(f"versions: {figures['versions']}")
    print_table(results)
    print_texts(results)
    if args.profile:
        print_profile(results, imports)
        figures["imports"] = imports
    figures["files"] = {k: v | {"path": str(v["path"])} for k, v in files.items()}
    figures["results"] = results
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

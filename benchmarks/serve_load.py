"""`mmseq serve` under load: many concurrent OpenAI clients, short clips and long recordings.

Method
------
- Server: `mmseq serve --model tiny.en --batch-size 8` (fp32, `--threads` torch threads) in
  its own process on a free port; the benchmark waits for `/ready`.
- Audio: the bundled demo clips (mmseq/assets/clips, 3.6-4.7 s each) as the short requests;
  `--long` long recordings (default 2) made of the five clips with 12 s of silence after each,
  repeated (`--long-repeats`, default 2: about 160 s, six 30 s windows).
- Alone: every distinct file sent three times, one request at a time (after one warm-up
  request): each file's median latency with the server otherwise idle.
- Load (saturation): `--clients` threads (default 32), each with its own `openai.OpenAI`
  client, send requests back to back for `--seconds` (default 60); the first `--long` clients
  send the long recordings, the others short clips in turn. A request still running at the
  end is waited for and counted. 32 clients in a closed loop keep every slot busy, so a short
  clip's latency here is mostly its wait in the queue (Little's law: clients / requests per
  second), whatever the batching.
- Long files running (head-of-line blocking): the `--long` clients send long recordings back
  to back while one client sends the short clips one at a time, `--paced-clips` of them
  (default 20): their latency against the same clips alone shows whether a short request
  waits for a long one (it joins at the next 30 s window instead).
- Figures: failed requests (any exception); throughput under saturation in audio seconds per
  wall second, and the same requests' throughput one at a time (the sum of their alone
  latencies, measured above); the short clips' p50/p95 latency in both phases against their
  alone latency; the server's RSS (VmRSS, sampled every 0.5 s) over the saturation phase, in
  10 s steps, and averaged over its first and last 10 s.
- The acceptance bars of the serving issue: no failed request, throughput >= 1.3x one at a
  time, short-clip p50 and p95 <= 3x alone while long files run, RSS growth < 50 MB. The
  script prints each with PASS or MISS, and exits 1 on a miss with `--strict`.

Run: `.venv/bin/python benchmarks/serve_load.py [--clients 32] [--seconds 60] [--long 2]
[--paced-clips 20] [--threads 2] [--batch-size 8] [--json OUT] [--strict]`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openai
import soundfile as sf

from mmseq.data.audio import load_audio

ROOT = Path(__file__).resolve().parents[1]
CLIPS = sorted((ROOT / "mmseq/assets/clips").glob("*.flac"))
SAMPLE_RATE = 16000
SILENCE_S = 12
ALONE_TRIES = 3  # each file's latency alone: the median of this many requests


@dataclass
class Sent:
    path: str
    audio_s: float
    started: float
    seconds: float
    error: str | None = None


@dataclass
class Result:
    cpu: str
    clients: int
    seconds: float
    alone_s: dict[str, float]
    requests: int
    failed: int
    errors: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    wall_s: float = 0.0
    throughput: float = 0.0  # audio s / wall s under load
    sequential_throughput: float = 0.0  # the same requests one at a time
    short_p50_s: float = 0.0  # under saturation
    short_p95_s: float = 0.0
    short_alone_s: float = 0.0
    paced_p50_s: float = 0.0  # one clip at a time while long files run
    paced_p95_s: float = 0.0
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    rss_steps_mb: list[float] = field(default_factory=list)  # mean of each 10 s of the load


def long_recording(folder: Path, repeats: int) -> Path:
    silence = np.zeros(SILENCE_S * SAMPLE_RATE, np.float32)
    parts = [p for clip in CLIPS for p in (load_audio(clip), silence)] * repeats
    path = folder / f"long_{repeats}x.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE)
    return path


def duration(path: Path) -> float:
    return sf.info(path).duration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, threads: int, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    # torch takes its thread count from OMP_NUM_THREADS
    command = [str(Path(sys.executable).parent / "mmseq"), "serve"]
    command += ["--model", "tiny.en", "--port", str(port), "--batch-size", str(batch_size)]
    command += ["--max-queue", "256"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5):
                return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not get ready in 300 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def send(client: openai.OpenAI, path: Path, audio_s: float) -> Sent:
    started = time.perf_counter()
    try:
        with open(path, "rb") as f:
            text = client.audio.transcriptions.create(model="whisper-1", file=f).text
        error = None if text.strip() else "empty transcript"
    except Exception as err:  # noqa: BLE001 - every failure is counted and shown
        error = f"{type(err).__name__}: {err}"
    return Sent(str(path), audio_s, started, time.perf_counter() - started, error)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--long", type=int, default=2, help="clients sending long recordings")
    p.add_argument("--long-repeats", type=int, default=2)
    p.add_argument("--paced-clips", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--strict", action="store_true", help="exit 1 when a bar is missed")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        long_path = long_recording(Path(tmp), args.long_repeats)
        files = {path: duration(path) for path in [*CLIPS, long_path]}
        port = free_port()
        server = start_server(port, args.threads, args.batch_size)
        try:
            result = measure(args, port, server.pid, files, long_path)
        finally:
            server.terminate()
            server.wait(60)
    report(result, args)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    bars = checks(result)
    return 1 if args.strict and not all(ok for _, ok in bars) else 0


def measure(
    args: argparse.Namespace, port: int, pid: int, files: dict[Path, float], long_path: Path
) -> Result:
    base = f"http://127.0.0.1:{port}/v1"

    def new_client() -> openai.OpenAI:
        return openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=1800)

    client = new_client()
    send(client, CLIPS[0], files[CLIPS[0]])  # warm-up
    alone = {}
    for path, audio_s in files.items():
        tries = [send(client, path, audio_s) for _ in range(ALONE_TRIES)]
        if failed := next((t for t in tries if t.error), None):
            raise SystemExit(f"{path.name} alone: {failed.error}")
        alone[str(path)] = statistics.median(t.seconds for t in tries)
        print(f"alone: {path.name:<24} {audio_s:6.1f} s of audio in {alone[str(path)]:6.2f} s")

    sent_all: list[Sent] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def client_loop(index: int) -> None:
        own = new_client()
        shorts = CLIPS[index % len(CLIPS) :] + CLIPS[: index % len(CLIPS)]
        turn = 0
        while time.perf_counter() < stop_at:
            path = long_path if index < args.long else shorts[turn % len(shorts)]
            turn += 1
            sent = send(own, path, files[path])
            with lock:
                sent_all.append(sent)

    rss: list[tuple[float, float]] = []
    load_started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss.append((time.perf_counter() - load_started, rss_mb(pid)))
        time.sleep(0.5)
    wall = time.perf_counter() - load_started
    failed = [s for s in sent_all if s.error]
    done = [s for s in sent_all if not s.error]
    audio = sum(s.audio_s for s in done)
    shorts = sorted(s.seconds for s in done if s.path != str(long_path))
    load_end = args.seconds
    first = [m for t, m in rss if t <= 10]
    last = [m for t, m in rss if load_end - 10 <= t <= load_end] or [rss[-1][1]]
    steps = [
        statistics.mean(m for t, m in rss if end - 10 < t <= end)
        for end in range(10, int(wall) + 1, 10)
    ]
    paced = paced_clips(args, new_client, files, long_path)
    return Result(
        cpu=cpu_name(),
        clients=args.clients,
        seconds=args.seconds,
        alone_s={Path(k).name: round(v, 3) for k, v in alone.items()},
        requests=len(sent_all),
        failed=len(failed),
        errors=sorted({s.error for s in failed})[:5],
        audio_s=round(audio, 1),
        wall_s=round(wall, 2),
        throughput=audio / wall,
        sequential_throughput=audio / sum(alone[s.path] for s in done) if done else 0.0,
        short_p50_s=statistics.median(shorts) if shorts else float("nan"),
        short_p95_s=float(np.percentile(shorts, 95)) if shorts else float("nan"),
        short_alone_s=statistics.mean(alone[str(c)] for c in CLIPS),
        paced_p50_s=statistics.median(paced),
        paced_p95_s=float(np.percentile(paced, 95)),
        rss_first_mb=statistics.mean(first) if first else float("nan"),
        rss_last_mb=statistics.mean(last),
        rss_steps_mb=[round(m) for m in steps],
    )


def paced_clips(
    args: argparse.Namespace, new_client, files: dict[Path, float], long_path: Path
) -> list[float]:
    """The short clips' latencies, sent one at a time while long recordings run."""
    stop = threading.Event()

    def long_loop() -> None:
        own = new_client()
        while not stop.is_set():
            send(own, long_path, files[long_path])

    longs = [threading.Thread(target=long_loop) for _ in range(args.long)]
    for t in longs:
        t.start()
    time.sleep(1.0)  # the long recordings are in flight
    client = new_client()
    latencies = []
    for i in range(args.paced_clips):
        clip = CLIPS[i % len(CLIPS)]
        sent = send(client, clip, files[clip])
        if sent.error:
            raise SystemExit(f"{clip.name} beside long recordings: {sent.error}")
        latencies.append(sent.seconds)
    stop.set()
    for t in longs:
        t.join()
    return latencies


def checks(r: Result) -> list[tuple[str, bool]]:
    ratio = r.throughput / r.sequential_throughput if r.sequential_throughput else 0.0
    return [
        (f"failed requests: {r.failed} (0)", r.failed == 0),
        (f"throughput {ratio:.2f}x one at a time (>= 1.3x)", ratio >= 1.3),
        (
            f"short clips beside long files: p50 {r.paced_p50_s / r.short_alone_s:.2f}x, p95 "
            f"{r.paced_p95_s / r.short_alone_s:.2f}x their alone latency (<= 3x)",
            r.paced_p95_s <= 3 * r.short_alone_s,
        ),
        (
            f"RSS {r.rss_first_mb:.0f} MB -> {r.rss_last_mb:.0f} MB "
            f"(+{r.rss_last_mb - r.rss_first_mb:.0f}; < 50 MB)",
            r.rss_last_mb - r.rss_first_mb < 50,
        ),
    ]


def report(r: Result, args: argparse.Namespace) -> None:
    print(f"\nCPU: {r.cpu}; {args.threads} threads; --batch-size {args.batch_size}")
    print(f"load: {r.clients} clients ({args.long} sending long recordings) for {r.seconds:g} s")
    print(f"requests: {r.requests} ({r.failed} failed), {r.audio_s} s of audio in {r.wall_s} s")
    for error in r.errors:
        print(f"  error: {error}")
    print(
        f"throughput: {r.throughput:.2f} audio s per wall s under load; the same requests one "
        f"at a time: {r.sequential_throughput:.2f}"
    )
    print(
        f"short clips: p50 {r.short_p50_s:.2f} s, p95 {r.short_p95_s:.2f} s under saturation "
        f"(queueing); one at a time beside long files: p50 {r.paced_p50_s:.2f} s, p95 "
        f"{r.paced_p95_s:.2f} s; alone: {r.short_alone_s:.2f} s (mean)"
    )
    print(f"server RSS, mean of each 10 s of the saturation: {r.rss_steps_mb} MB")
    for text, ok in checks(r):
        print(f"  {'PASS' if ok else 'MISS'}  {text}")


if __name__ == "__main__":
    sys.exit(main())

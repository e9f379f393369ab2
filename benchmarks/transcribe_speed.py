"""Speed of `mmseq` transcription against Hugging Face transformers, same weights, same inputs.

Method
------
- Audio: the bundled demo clips (mmseq/assets/clips, 5 clips, about 20 s), repeated `--repeat`
  times (default 4: about 80 s of audio, 20 clips).
- Weights: the embedded Whisper tiny.en, loaded once by mmseq; the Hugging Face peer is a
  `WhisperForConditionalGeneration` built from a `WhisperConfig` matching its dimensions and
  loaded with `openai_to_hf(checkpoint.state_dict)`, so both engines hold identical float32
  weights.
- Features: both engines get mmseq's log-mel (`LogMelSpectrogram`, openai-whisper's recipe: the
  log-mel of a short clip is zero-padded to 30 s), computed from the waveforms inside the timed
  region. Hugging Face's `WhisperFeatureExtractor` pads the *waveform* instead, so its features
  differ slightly for clips under 30 s and would turn a speed comparison into a comparison of
  front-ends; it is also a numpy implementation, which would charge Hugging Face for a
  different feature cost. With identical features, the transcripts should be identical too.
- Decoding: greedy, prefix `<|startoftranscript|><|notimestamps|>`, the token suppression
  mmseq uses (`Whisper.generation_config()`: `suppress_tokens`, `begin_suppress_tokens`), at
  most 224 new tokens. mmseq runs `Transcriber.transcribe` with one temperature (0), no
  timestamps and no conditioning on previous text (openai-whisper's short-form settings);
  Hugging Face runs `generate()` with the prefix passed as `decoder_input_ids`.
- Cost: 12 timed passes over the audio plus warm-ups, about 2-3 minutes on an idle 2-core CPU
  (many times that when other processes compete for the cores: compare figures only from
  one run).
- Timing: one process, `torch.set_num_threads(--threads)`; for each batch size, one warm-up
  batch per engine, then `--trials` rounds in which each engine transcribes all clips in turn
  (alternating, so background load hits both alike); each engine's best round is kept.
- Figures: the real-time factor (RTF) is audio seconds / wall seconds (higher is faster). WER is
  against transcripts.tsv after lowercasing and dropping punctuation (tiny.en writes
  "3 o'clock" for "three o'clock": one error).

Run: `.venv/bin/python benchmarks/transcribe_speed.py [--repeat 4] [--batch-sizes 1 8]
[--threads 2] [--trials 3] [--json OUT]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer
import numpy as np
import torch
import transformers
from transformers import GenerationConfig as HFGenerationConfig
from transformers import WhisperConfig, WhisperForConditionalGeneration

from mmseq.data.audio import load_audio
from mmseq.encoders.audio_features import SAMPLE_RATE, LogMelSpectrogram
from mmseq.transcription import TranscribeOptions, Transcriber
from mmseq.whisper import Whisper, load_whisper_checkpoint
from mmseq.whisper.checkpoints import WhisperCheckpoint, openai_to_hf
from mmseq.whisper.loading import embedded_model_dir

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
MAX_NEW_TOKENS = 224  # openai-whisper's n_text_ctx // 2

Engine = Callable[[list[np.ndarray], int], list[str]]  # (audios, batch size) -> texts


@dataclass
class Row:
    engine: str
    batch_size: int
    wall_s: float
    rtf: float  # audio seconds per wall second
    wer: float


def load_clips(repeat: int) -> tuple[list[np.ndarray], list[str]]:
    """The bundled clips, `repeat` times over: (16 kHz waveforms, reference texts)."""
    with (CLIPS / "transcripts.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    audios = [load_audio(CLIPS / row["file"]) for row in rows]
    return audios * repeat, [row["text"] for row in rows] * repeat


def mmseq_engine(transcriber: Transcriber) -> Engine:
    def run(audios: list[np.ndarray], batch_size: int) -> list[str]:
        options = TranscribeOptions(
            batch_size=batch_size,
            temperatures=(0.0,),  # greedy, no fallback
            without_timestamps=True,
            condition_on_previous_text=False,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        return [t.text for t in transcriber.transcribe(audios, options=options)]

    return run


def hf_model(checkpoint: WhisperCheckpoint) -> WhisperForConditionalGeneration:
    """Hugging Face's Whisper holding the checkpoint's weights."""
    config = WhisperConfig(**checkpoint.hf_config())
    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(openai_to_hf(checkpoint.state_dict))
    return model.eval()


def hf_generation_config(whisper: Whisper) -> HFGenerationConfig:
    """Greedy decoding with mmseq's token suppression and stopping."""
    ours, tok = whisper.generation_config(), whisper.tokenizer
    return HFGenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS,
        num_beams=1,
        do_sample=False,
        decoder_start_token_id=tok.sot,
        eos_token_id=tok.eot,
        pad_token_id=tok.eot,
        suppress_tokens=list(ours.suppress_tokens),
        begin_suppress_tokens=list(ours.begin_suppress_tokens),
        no_timestamps_token_id=tok.no_timestamps,
        is_multilingual=False,
    )


def hf_engine(model: WhisperForConditionalGeneration, whisper: Whisper) -> Engine:
    weight = next(model.parameters())  # features and prompt go where the model is
    features = LogMelSpectrogram(whisper.model.config.audio.n_mels).to(weight.device)
    model.generation_config = hf_generation_config(whisper)
    tok = whisper.tokenizer
    prefix = torch.tensor([tok.sot_sequence(without_timestamps=True)], device=weight.device)

    @torch.inference_mode()
    def run(audios: list[np.ndarray], batch_size: int) -> list[str]:
        texts = []
        for start in range(0, len(audios), batch_size):
            batch = audios[start : start + batch_size]
            lengths = torch.tensor([len(a) for a in batch])
            waves = torch.zeros(len(batch), int(lengths.max()))
            for i, audio in enumerate(batch):
                waves[i, : len(audio)] = torch.from_numpy(audio)
            mel, _ = features(waves.to(weight.device), lengths.to(weight.device))
            out = model.generate(
                input_features=mel.to(weight.dtype),
                decoder_input_ids=prefix.expand(len(batch), -1),
            )
            for row in out.tolist():
                texts.append(tok.decode([t for t in row if t < tok.eot]).strip())
        return texts

    return run


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([normalise(t) for t in references], [normalise(t) for t in hypotheses])


def time_engines(
    engines: dict[str, Engine], audios: list[np.ndarray], batch_size: int, trials: int
) -> dict[str, tuple[float, list[str]]]:
    """Engine name -> (best wall seconds over `trials` rounds, texts), after a warm-up batch."""
    for engine in engines.values():
        engine(audios[:batch_size], batch_size)
    best = dict.fromkeys(engines, float("inf"))
    texts: dict[str, list[str]] = {}
    for _ in range(trials):
        for name, engine in engines.items():
            started = time.perf_counter()
            texts[name] = engine(audios, batch_size)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name], texts[name]) for name in engines}


def report_differences(batch_size: int, texts: dict[str, list[str]]) -> bool:
    """Print each clip the two engines transcribe differently; True when there is none."""
    same = True
    for ours, theirs in zip(texts["mmseq"], texts["hf"], strict=True):
        if ours != theirs:
            same = False
            print(f"batch {batch_size}: transcripts differ\n  mmseq: {ours}\n  hf:    {theirs}")
    return same


def print_table(rows: list[Row], audio_s: float, n_clips: int) -> None:
    print(f"{n_clips} clips, {audio_s:.1f} s of audio, {torch.get_num_threads()} torch threads")
    print(f"{'engine':<8} {'batch':>5} {'wall s':>8} {'RTF':>7} {'WER':>7}")
    for r in rows:
        print(f"{r.engine:<8} {r.batch_size:>5} {r.wall_s:>8.2f} {r.rtf:>7.1f} {r.wer:>7.3f}")
    by_key = {(r.engine, r.batch_size): r for r in rows}
    for batch_size in sorted({r.batch_size for r in rows}):
        ratio = by_key["hf", batch_size].wall_s / by_key["mmseq", batch_size].wall_s
        print(f"batch {batch_size}: mmseq is {ratio:.2f}x the speed of Hugging Face")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=4, help="times over the 5 clips (default 4)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--trials", type=int, default=3, help="timed passes; best is kept")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # per-call generate() notices, not results
    audios, references = load_clips(args.repeat)
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE

    transcriber = Transcriber(device="cpu")  # the peers run on the CPU
    checkpoint = load_whisper_checkpoint(embedded_model_dir())
    engines = {
        "mmseq": mmseq_engine(transcriber),
        "hf": hf_engine(hf_model(checkpoint), transcriber.whisper),
    }
    rows, identical = [], {}
    for batch_size in args.batch_sizes:
        timed = time_engines(engines, audios, batch_size, args.trials)
        for name, (wall, texts) in timed.items():
            rows.append(Row(name, batch_size, wall, audio_s / wall, wer(references, texts)))
        identical[batch_size] = report_differences(
            batch_size, {name: texts for name, (_, texts) in timed.items()}
        )

    print_table(rows, audio_s, len(audios))
    for batch_size, same in identical.items():
        print(f"batch {batch_size}: transcripts identical: {same}")
    if args.json:
        figures = {
            "audio_s": audio_s,
            "clips": len(audios),
            "threads": args.threads,
            "trials": args.trials,
            "rows": [asdict(r) for r in rows],
            "transcripts_identical": identical,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

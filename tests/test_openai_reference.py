"""End-to-end fidelity of `mmseq transcribe` against openai-whisper, the reference implementation.

The embedded tiny.en (CTranslate2) is converted to an openai-whisper .pt and decoded by
`whisper.transcribe(temperature=0, without_timestamps=True, condition_on_previous_text=False)`,
the settings mmseq's short-form transcription mirrors. Every clip must give the same tokens and
text, whatever mmseq's batch size. The inputs are the bundled demo clips plus sentences spoken by
espeak-ng at test time, so everything runs offline.
"""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest
import whisper

from mmseq.data.audio import load_audio
from mmseq.transcription import TranscribeOptions, Transcriber, Transcript
from mmseq.whisper.checkpoints import load_whisper_checkpoint, save_openai_pt
from mmseq.whisper.loading import embedded_model_dir

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"

# (name, espeak-ng voice, words per minute, sentence): voices other than the bundled clips',
# sentences without digits (tiny.en writes numbers as digits, the references spell them out)
GENERATED = [
    ("gen1_en-us-m1", "en-us+m1", 150, "A gentle breeze carried the smell of fresh bread."),
    ("gen2_en-gb", "en-gb", 160, "Children were playing football until the sun went down."),
    ("gen3_en-us-f2", "en-us+f2", 145, "Could you send me the report before the end of the week?"),
    ("gen4_en-m7", "en+m7", 155, "The old library closed its doors after many long years."),
]
BATCH_SIZES = [1, 8]


def _bundled() -> list[tuple[str, str]]:
    with (CLIPS / "transcripts.tsv").open(newline="") as f:
        return [(row["file"], row["text"]) for row in csv.DictReader(f, delimiter="\t")]


NAMES = [name for name, _ in _bundled()] + [name for name, *_ in GENERATED]


@pytest.fixture(scope="module")
def references() -> dict[str, str]:
    """Clip name -> what was said."""
    return dict(_bundled()) | {name: text for name, _, _, text in GENERATED}


@pytest.fixture(scope="module")
def audios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Clip name -> 16 kHz float32 mono samples."""
    folder = tmp_path_factory.mktemp("espeak")
    paths = {name: CLIPS / name for name, _ in _bundled()}
    for name, voice, speed, text in GENERATED:
        paths[name] = folder / f"{name}.wav"
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(paths[name]), text]
        subprocess.run(command, check=True, capture_output=True)
    return {name: load_audio(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def openai_model(tmp_path_factory: pytest.TempPathFactory):
    """openai-whisper's model holding the embedded tiny.en weights."""
    path = tmp_path_factory.mktemp("openai") / "tiny.en.pt"
    save_openai_pt(load_whisper_checkpoint(embedded_model_dir()), path)
    return whisper.load_model(str(path), device="cpu")


@pytest.fixture(scope="module")
def openai_results(openai_model, audios: dict[str, np.ndarray]) -> dict[str, dict]:
    """Clip name -> whisper.transcribe's result (the array is passed: a path needs ffmpeg)."""
    return {
        name: whisper.transcribe(
            openai_model,
            audio,
            temperature=0,
            without_timestamps=True,
            condition_on_previous_text=False,
            fp16=False,
            language="en",
        )
        for name, audio in audios.items()
    }


@pytest.fixture(scope="module")
def mmseq_results(audios: dict[str, np.ndarray]) -> dict[int, dict[str, Transcript]]:
    """Batch size -> clip name -> mmseq's transcript. Nine clips at batch size 8 make one
    padded batch of clips of different lengths and one batch of a single clip."""
    transcriber = Transcriber()
    inputs = list(audios.values())
    results = {}
    for batch_size in BATCH_SIZES:
        transcripts = transcriber.transcribe(inputs, options=reference_options(batch_size))
        results[batch_size] = dict(zip(audios, transcripts, strict=True))
    return results


def reference_options(batch_size: int) -> TranscribeOptions:
    """The options of the openai_results call; the thresholds are both sides' defaults."""
    return TranscribeOptions(
        batch_size=batch_size,
        temperatures=(0.0,),
        without_timestamps=True,
        condition_on_previous_text=False,
    )


def _text_tokens(result: dict) -> list[int]:
    """The reference's text tokens: its segments' tokens minus end-of-text and timestamps."""
    eot = whisper.tokenizer.get_tokenizer(multilingual=False).eot
    return [t for segment in result["segments"] for t in segment["tokens"] if t < eot]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_same_tokens_and_text_as_openai_whisper(
    name: str, batch_size: int, mmseq_results: dict, openai_results: dict
) -> None:
    ours: Transcript = mmseq_results[batch_size][name]
    reference = openai_results[name]
    assert ours.error is None
    assert ours.tokens == _text_tokens(reference)
    assert ours.text == reference["text"].strip()


_DIGITS = "zero one two three four five six seven eight nine".split()


def normalise(text: str) -> str:
    """Lowercase, single digits spelled out, punctuation and apostrophes dropped."""
    text = re.sub(r"\b\d\b", lambda m: _DIGITS[int(m.group())], text.lower())
    text = re.sub(r"[^\w\s]", "", text)
    return " ".join(text.split())


def test_normalise() -> None:
    assert normalise("At 3 o'clock, Bring  an Umbrella!") == "at three oclock bring an umbrella"


def test_word_error_rate_on_clear_speech(mmseq_results: dict, references: dict[str, str]) -> None:
    transcripts = mmseq_results[BATCH_SIZES[-1]]
    truth = [normalise(references[name]) for name in NAMES]
    hypotheses = [normalise(transcripts[name].text) for name in NAMES]
    wer = jiwer.wer(truth, hypotheses)
    # measured: 7 word errors in 111 words (0.063), e.g. "brown fox jumps" -> "round fox jump"
    assert wer < 0.15, list(zip(truth, hypotheses, strict=True))

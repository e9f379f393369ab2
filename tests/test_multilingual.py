"""Multilingual Whisper checkpoints: language detection, language and task tokens, translation.

The reference is openai-whisper on a small random multilingual model (its dimensions, not its
weights, are made up) saved as an openai `.pt`; beside it lies a `tokenizer.json` converted at
test time from openai-whisper's own multilingual vocabulary, so the two tokenizers agree id for
id and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
import whisper.tokenizer as openai_tokenizer
from tokenizers import AddedToken
from transformers.convert_slow_tokenizer import TikTokenConverter

from mmseq.data.audio import AudioStream, load_audio
from mmseq.data.vad import speech_chunks
from mmseq.encoders.audio_features import N_FRAMES, N_SAMPLES, WindowedLogMel
from mmseq.transcription import TranscribeOptions, Transcriber, _main_language
from mmseq.whisper.decoding import DecodingOptions, decode_windows, detect_language
from mmseq.whisper.segments import Segment, split_sentences
from mmseq.whisper.timing import split_words

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
N_LANGUAGES = 99  # a 51865-token vocabulary: every multilingual Whisper before large-v3


def _openai_tokenizer(language: str | None = None, task: str = "transcribe"):
    return openai_tokenizer.get_tokenizer(
        multilingual=True, num_languages=N_LANGUAGES, language=language, task=task
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random multilingual Whisper as an openai .pt, with its tokenizer.json beside it."""
    folder = tmp_path_factory.mktemp("multilingual")
    encoding = _openai_tokenizer().encoding
    vocabulary = Path(openai_tokenizer.__file__).parent / "assets" / "multilingual.tiktoken"
    converted = TikTokenConverter(vocab_file=str(vocabulary), pattern=encoding._pat_str)
    tokenizer = converted.converted()
    specials = sorted(encoding._special_tokens.items(), key=lambda item: item[1])
    # timestamps are not tokens of a Hugging Face tokenizer.json: mmseq computes their ids
    names = [name for name, _ in specials if not name[2:3].isdigit()]
    tokenizer.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    tokenizer.save(str(folder / "tokenizer.json"))

    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
        n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    with torch.no_grad():
        # openai-whisper leaves the decoder's positions uninitialised (torch.empty); large
        # token embeddings spread the logits, so that greedy choices are not near-ties
        model.decoder.positional_embedding.normal_(0.0, 0.02)
        model.decoder.token_embedding.weight.normal_(0.0, 1.0)
    path = folder / "tiny-random.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def openai_model(model_path: Path):
    return whisper.load_model(str(model_path), device="cpu")


@pytest.fixture(scope="module")
def ours(model_path: Path) -> Transcriber:
    return Transcriber(model_path)


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return load_audio(CLIPS / "clip1_en-us.flac")


def _states(transcriber: Transcriber, audio: np.ndarray) -> torch.Tensor:
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    with torch.inference_mode():
        return transcriber.whisper.model.encode("audio", mel[None]).states


def test_tokenizer_lists_openai_languages(ours: Transcriber) -> None:
    tok = ours.whisper.tokenizer
    reference = _openai_tokenizer()
    assert tok.is_multilingual
    assert tok.language_codes == list(openai_tokenizer.LANGUAGES)[:N_LANGUAGES]
    assert tok.language_tokens == sorted(reference.all_language_tokens)
    for language, task in [("de", "translate"), ("ja", "transcribe")]:
        expected = list(_openai_tokenizer(language, task).sot_sequence_including_notimestamps)
        assert tok.sot_sequence(True, language, task) == expected


def test_unknown_language_names_the_known_codes(ours: Transcriber) -> None:
    with pytest.raises(ValueError, match=r"unknown language 'xx'.*en, zh, de"):
        ours.whisper.tokenizer.language_token("xx")
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        ours.iter_transcribe([], options=TranscribeOptions(language="xx"))


def test_detect_language_matches_openai(ours: Transcriber, openai_model, audio) -> None:
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    quiet = torch.zeros_like(mel) + mel.min()
    codes, probs = detect_language(ours.whisper, torch.cat([_states(ours, audio)] * 2))
    reference_tokens, reference_probs = openai_model.detect_language(torch.stack([mel, quiet]))
    reference_codes = [_openai_tokenizer().decode([t]).strip("<|>") for t in reference_tokens]
    assert codes[0] == reference_codes[0]
    expected = torch.tensor([reference_probs[0][c] for c in ours.whisper.tokenizer.language_codes])
    torch.testing.assert_close(probs[0], expected, atol=1e-5, rtol=1e-4)
    assert probs.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


@pytest.mark.parametrize("repeats", [1, 12])  # 4 s and 50 s
def test_language_is_detected_on_openai_mel(ours: Transcriber, audio, repeats: int) -> None:
    """openai-whisper detects on the first 30 s of the log-mel of the recording plus 30 s of
    zeros, which is not the zero-padded window it decodes when the file is shorter."""
    samples = np.concatenate([audio] * repeats)
    features = ours.whisper.model.encoders["audio"].features
    mel = WindowedLogMel(features, AudioStream(samples)).first_window_of_padded()
    expected = whisper.log_mel_spectrogram(torch.from_numpy(samples), padding=N_SAMPLES)
    torch.testing.assert_close(mel, expected[:, :N_FRAMES], atol=0, rtol=0)


@pytest.mark.parametrize(("language", "task"), [("de", "translate"), ("fr", "transcribe")])
def test_decoding_with_language_and_task_matches_openai(
    ours: Transcriber, openai_model, audio, language: str, task: str
) -> None:
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    reference = whisper.decode(
        openai_model,
        mel,
        whisper.DecodingOptions(language=language, task=task, fp16=False, temperature=0.0),
    )
    options = DecodingOptions(temperatures=(0.0,), language=language, task=task)
    with torch.inference_mode():
        (result,) = decode_windows(ours.whisper, _states(ours, audio), (), options)
    assert result.tokens == reference.tokens
    assert result.avg_logprob == pytest.approx(reference.avg_logprob, abs=1e-4)
    assert result.no_speech_prob == pytest.approx(reference.no_speech_prob, abs=1e-5)


@pytest.mark.parametrize("word_timestamps", [False, True])
def test_transcribe_detects_the_language_as_openai(
    ours: Transcriber, openai_model, audio, word_timestamps: bool
) -> None:
    reference = whisper.transcribe(
        openai_model,
        audio,
        temperature=0.0,
        condition_on_previous_text=False,
        word_timestamps=word_timestamps,
        fp16=False,
        verbose=None,
    )
    options = TranscribeOptions(
        temperatures=(0.0,),
        condition_on_previous_text=False,
        word_timestamps=word_timestamps,
        raw_timestamps=True,  # openai-whisper's times, to compare with its words
    )
    transcript = ours.transcribe(audio, options=options)
    assert transcript.error is None
    assert transcript.language == reference["language"]
    # openai-whisper keeps the segments it blanks (empty or instantaneous); mmseq drops them
    kept = [s for s in reference["segments"] if s["tokens"]]
    assert [s.tokens for s in transcript.segments] == [s["tokens"] for s in kept]
    words = [(w.word, w.start, w.end) for s in transcript.segments for w in s.words]
    expected = [(w["word"], w["start"], w["end"]) for s in kept for w in s.get("words", [])]
    assert words == expected
    assert bool(words) == word_timestamps


def test_vad_path_detects_on_the_speech_chunk(ours: Transcriber, audio) -> None:
    options = TranscribeOptions(temperatures=(0.0,), vad=True, without_timestamps=True)
    transcript = ours.transcribe(audio, options=options)
    (chunk,) = speech_chunks(audio)
    speech = np.concatenate([audio[start:end] for start, end in chunk.regions])
    features = ours.whisper.model.encoders["audio"].features
    window = WindowedLogMel(features, torch.from_numpy(speech)).window(0)  # as it is decoded
    with torch.inference_mode():
        states = ours.whisper.model.encode("audio", window[None]).states
        (expected,), _ = detect_language(ours.whisper, states)
    assert transcript.error is None
    assert transcript.language == expected


def test_english_only_model_refuses_other_languages_and_translation() -> None:
    tiny_en = Transcriber()
    with pytest.raises(ValueError, match="'de': this model is English-only"):
        tiny_en.iter_transcribe([], options=TranscribeOptions(language="de"))
    with pytest.raises(ValueError, match="'translate': this model is English-only"):
        tiny_en.iter_transcribe([], options=TranscribeOptions(task="translate"))
    with pytest.raises(ValueError, match="needs a multilingual model"):
        detect_language(tiny_en.whisper, torch.zeros(1, 1500, 384))
    # English is what an English-only model speaks: asking for it changes nothing
    assert list(tiny_en.iter_transcribe([], language="en")) == []


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="task: expected one of"):
        TranscribeOptions(task="summarize")


@pytest.mark.parametrize("language", ["zh", "ja", "en"])
def test_split_words_follows_openai_for_unspaced_languages(
    ours: Transcriber, language: str
) -> None:
    text = {"zh": "我们今天去公园吧。", "ja": "今日はいい天気ですね。", "en": " It is a fine day."}
    reference = _openai_tokenizer(language)
    tokens = reference.encode(text[language]) + [reference.eot]
    words, groups = split_words(ours.whisper.tokenizer, tokens, language)
    assert (words, groups) == reference.split_to_word_tokens(tokens)


def test_vad_transcript_takes_the_language_of_most_speech() -> None:
    class Part:  # what _main_language reads of a chunk's transcript and of its chunk
        def __init__(self, language: str = "en", samples: int = 0, p: float = 0.9) -> None:
            self.language, self.samples, self.language_probability = language, samples, p

    parts = [Part("de"), Part("fr", p=0.8), Part("de")]
    chunks = [Part(samples=16000), Part(samples=40000), Part(samples=16000)]
    # its probability: the speech-weighted mean, the chunks of other languages counting 0
    assert _main_language(parts, chunks) == ("fr", pytest.approx(0.8 * 40000 / 72000))


def test_language_probability_is_openai_whisper_s(ours: Transcriber, openai_model, audio) -> None:
    """faster-whisper's info.language_probability: what openai-whisper's detect_language gives
    the detected language (with vad: on the speech chunk as decoded); 1 when it is given."""
    short = {"temperature": 0, "max_new_tokens": 4}
    transcript = ours.transcribe(audio, **short)
    mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), padding=N_SAMPLES)[:, :N_FRAMES]
    _, probs = openai_model.detect_language(mel)
    assert transcript.language == max(probs, key=probs.get)
    assert transcript.language_probability == pytest.approx(max(probs.values()), abs=1e-4)
    assert 0 < transcript.language_probability < 1

    with_vad = ours.transcribe(audio, vad=True, without_timestamps=True, **short)
    (chunk,) = speech_chunks(audio)  # one chunk: the file's probability is the chunk's
    speech = np.concatenate([audio[start:end] for start, end in chunk.regions])
    features = ours.whisper.model.encoders["audio"].features
    window = WindowedLogMel(features, torch.from_numpy(speech)).window(0)
    with torch.inference_mode():
        states = ours.whisper.model.encode("audio", window[None]).states
        (expected,), probs = detect_language(ours.whisper, states)
    assert with_vad.language == expected
    assert with_vad.language_probability == pytest.approx(probs.max().item(), abs=1e-6)

    given = ours.transcribe(audio, language="de", **short)
    assert (given.language, given.language_probability) == ("de", 1.0)


def test_cli_translate_writes_the_language(model_path: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mmseq.cli", "transcribe", CLIPS / "clip1_en-us.flac",
         "--model", model_path, "--language", "de", "--task", "translate",
         "--temperature", "0", "--output-format", "json", "--output-dir", tmp_path],
        capture_output=True, text=True, timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "clip1_en-us.json").read_text())
    assert result["language"] == "de"


def test_language_of_a_clipped_file_is_detected_on_its_start(
    ours: Transcriber, openai_model, audio
) -> None:
    """openai-whisper detects on the file's first 30 s even when its clips start later."""
    noise = np.random.default_rng(0).normal(0, 0.1, 31 * 16000).astype(np.float32)
    samples = np.concatenate([noise, *[audio] * 5])  # 31 s of noise, then 21 s of speech

    def detected(mel: torch.Tensor) -> str:
        _, probs = openai_model.detect_language(mel)
        return max(probs, key=probs.get)

    mel = whisper.log_mel_spectrogram(torch.from_numpy(samples), padding=N_SAMPLES)
    on_start = detected(mel[:, :N_FRAMES])
    assert on_start != detected(mel[:, 31 * 100 : 31 * 100 + N_FRAMES])  # the test can tell
    options = TranscribeOptions(temperatures=(0.0,), clip_timestamps=(31.0,), max_new_tokens=8)
    transcript = ours.transcribe(samples, options=options)
    assert transcript.language == on_start


def test_sentences_split_at_wide_stops(ours: Transcriber) -> None:
    """`--vad --without-timestamps --word-timestamps` cuts a chunk's text per sentence: after
    "。", "！" or "？" no space follows, yet the sentence ends; "3.5" stays whole."""
    tok = ours.whisper.tokenizer
    text = "今日はいい天気ですね。散歩に行きましょう！ 3.5キロです。"
    tokens = tok.encode(text)
    segment = Segment(0.0, 10.0, text, tokens, -0.2, 1.0, 0.01, 0.0)
    parts = [part.text for part in split_sentences(segment, tok)]
    assert parts == ["今日はいい天気ですね。", "散歩に行きましょう！", " 3.5キロです。"]

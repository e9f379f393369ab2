"""The Python API has one shape, as users of faster-whisper and openai-whisper expect.

`Transcriber.transcribe` and `mmseq.transcribe` take the same keyword options and give a
Transcript for one input, a list for a list; an unreadable input raises `AudioLoadError` (batches
collect per-input errors when asked, `iter_transcribe` always); device "auto" picks CUDA when
present; `dir(mmseq)` lists the public names; the result carries the language's probability
(detected: see test_multilingual.py, which has a multilingual model).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mmseq
import mmseq.transcription
from mmseq.data.audio import AudioLoadError, load_audio
from mmseq.precision import check_device
from mmseq.transcription import TranscribeOptions, Transcriber, Transcript

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
CLIP = CLIPS / "clip1_en-us.flac"
GREEDY = {"temperature": 0, "beam_size": 1}  # openai-whisper's and faster-whisper's names


class _Stop(Exception):
    """Raised by a stand-in to stop a constructor once it has shown its device."""


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber()  # device "auto"


@pytest.fixture(scope="module")
def greedy(transcriber: Transcriber) -> Transcript:
    return transcriber.transcribe(CLIP, **GREEDY)


# -- one shape: the same keywords, one Transcript for one input ---------------------------------


def test_one_input_gives_one_transcript_and_a_list_gives_a_list(
    transcriber: Transcriber, greedy: Transcript
) -> None:
    assert isinstance(greedy, Transcript) and greedy.text
    array = transcriber.transcribe(load_audio(CLIP), **GREEDY)
    assert isinstance(array, Transcript) and array.tokens == greedy.tokens
    listed = transcriber.transcribe([CLIP], **GREEDY)
    assert isinstance(listed, list) and [t.tokens for t in listed] == [greedy.tokens]
    (iterated,) = transcriber.iter_transcribe(CLIP, **GREEDY)
    assert iterated.tokens == greedy.tokens


def test_function_and_method_take_the_same_keywords(greedy: Transcript) -> None:
    method = inspect.signature(Transcriber.transcribe).parameters
    function = inspect.signature(mmseq.transcribe).parameters
    assert [p for p in method if p != "self"] == [p for p in function if p != "model"]
    one_call = mmseq.transcribe(CLIP, **GREEDY)
    assert isinstance(one_call, Transcript) and one_call.tokens == greedy.tokens


def test_keywords_apply_over_an_options_object(
    transcriber: Transcriber, greedy: Transcript
) -> None:
    options = TranscribeOptions(temperatures=(0.0,), beam_size=1)
    assert transcriber.transcribe(CLIP, options=options).tokens == greedy.tokens
    other = replace(options, beam_size=5, without_timestamps=True)
    overridden = transcriber.transcribe(CLIP, options=other, beam_size=1, without_timestamps=False)
    assert overridden.tokens == greedy.tokens
    # temperature (one value or a fallback list) is TranscribeOptions.temperatures
    assert transcriber.transcribe(CLIP, temperature=[0.0, 0.5]).tokens == greedy.tokens


def test_unknown_options_fail_by_name_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mmseq.transcription, "Transcriber", _no_model)
    with pytest.raises(TypeError, match=r"unknown option\(s\) beam; the options are .*beam_size"):
        mmseq.transcribe(CLIP, beam=2)
    with pytest.raises(TypeError, match="temperature and temperatures are one option"):
        mmseq.transcribe(CLIP, temperature=0, temperatures=(0.0,))
    with pytest.raises(TypeError, match="options: expected a TranscribeOptions, got dict"):
        mmseq.transcribe(CLIP, options={"beam_size": 2})


def _no_model(*args: object, **kwargs: object) -> Transcriber:
    raise AssertionError("the model was loaded")


# -- errors: raised for one input, collected in batches when asked -------------------------------


def test_an_unreadable_input_raises_a_named_error(transcriber: Transcriber, tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    nan = np.full(16000, np.nan, np.float32)
    cases = [
        (tmp_path / "missing.wav", "missing.wav: audio file does not exist"),
        (not_audio, "notes.wav"),
        (nan, "<array>: audio contains NaN"),
    ]
    for item, says in cases:
        with pytest.raises(AudioLoadError, match=says):
            transcriber.transcribe(item)
    assert mmseq.AudioLoadError is AudioLoadError and issubclass(AudioLoadError, ValueError)


def test_the_function_finds_a_missing_file_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mmseq.transcription, "Transcriber", _no_model)
    with pytest.raises(AudioLoadError, match="missing.wav: audio file does not exist"):
        mmseq.transcribe([CLIP, tmp_path / "missing.wav"])


def test_batches_collect_errors_when_asked(
    transcriber: Transcriber, greedy: Transcript, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioLoadError, match="missing.wav"):
        transcriber.transcribe([missing, CLIP], **GREEDY)
    bad, good = transcriber.transcribe([missing, CLIP], errors="collect", **GREEDY)
    assert "does not exist" in bad.error and bad.segments == [] and bad.language_probability is None
    assert good.error is None and good.tokens == greedy.tokens
    # iter_transcribe is the streaming batch helper (the CLI's): it always collects
    collected = transcriber.iter_transcribe([missing, CLIP], **GREEDY)
    assert [t.error is None for t in collected] == [False, True]
    with pytest.raises(ValueError, match="errors: expected 'raise' or 'collect', got 'ignore'"):
        transcriber.transcribe(CLIP, errors="ignore")


# -- device "auto" --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "compute_type", "expected"),
    [
        (False, "float32", "cpu"),
        (True, "float32", "cuda"),
        (True, "bfloat16", "cuda"),
        (True, "int8", "cpu"),  # int8's kernels are the CPU's
    ],
)
def test_auto_picks_cuda_when_present(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, compute_type: str, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert check_device("auto", compute_type) == expected
    assert check_device("cpu", compute_type) == "cpu"  # as given


def test_auto_without_a_gpu_refuses_float16_naming_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"float16 needs a CUDA GPU \(--device auto found none"):
        check_device("auto", "float16")


def test_every_api_class_resolves_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Transcriber, Captioner, TextGenerator and mmseq.load default to "auto" and hand the
    device it picked (here a GPU, faked) to what loads the weights."""
    from mmseq.inference import Captioner
    from mmseq.text.generator import TextGenerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen: dict[str, object] = {}

    def record(name: str, device: object) -> None:
        seen[name] = device
        raise _Stop

    def load_whisper(model: object, device: object, compute_type: str) -> None:
        record("Transcriber", device)

    def load_trained(model: object, device: object) -> None:
        record("Captioner", device)

    class Weights:  # TextGenerator moves what it loaded with .to(device)
        def to(self, device: object) -> None:
            record("TextGenerator", device)

    monkeypatch.setattr(mmseq.transcription, "load_whisper", load_whisper)
    monkeypatch.setattr(mmseq.inference, "load_trained", load_trained)
    monkeypatch.setattr(
        TextGenerator, "_load_hf", lambda self, path: setattr(self, "model", Weights())
    )
    for make in (
        lambda: Transcriber("tiny.en"),
        lambda: Captioner("x.ckpt"),
        lambda: TextGenerator(tmp_path),
    ):
        with pytest.raises(_Stop):
            make()
    monkeypatch.setattr(
        mmseq.transcription, "Transcriber", lambda model, **kw: record("load", kw["device"])
    )
    with pytest.raises(_Stop):
        mmseq.load("tiny.en")
    assert seen == dict.fromkeys(["Transcriber", "Captioner", "TextGenerator", "load"], "cuda")


def test_auto_runs_on_the_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Transcriber(device="auto").whisper.device.type == "cpu"


def test_cli_device_defaults_to_auto() -> None:
    from mmseq.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name in ["transcribe", "caption", "translate", "summarize", "serve"]:
        (device,) = [a for a in commands[name]._actions if "--device" in a.option_strings]
        assert device.default == "auto", name
        assert "auto (CUDA when present" in device.help, name


def test_cli_transcribes_with_device_auto(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmseq.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["transcribe", str(CLIP), "--device", "auto"]) == 0
    assert capsys.readouterr().out.strip()


# -- dir(mmseq) -----------------------------------------------------------------------------------


def test_dir_lists_the_public_names_and_importing_stays_light() -> None:
    code = "import json, sys, mmseq; print(json.dumps([dir(mmseq), 'torch' in sys.modules]))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, torch_loaded = json.loads(run.stdout)
    public = [n for n in names if not n.startswith("_")]
    expected = ["AudioLoadError", "Captioner", "TextGenerator", "TranscribeOptions", "Transcriber"]
    assert set(expected + ["Transcript", "load", "transcribe"]) <= set(public)
    assert "Any" not in public and "annotations" not in public
    assert not torch_loaded  # names are listed, not imported
    for name in public:
        assert getattr(mmseq, name) is not None


# -- language and its probability ----------------------------------------------------------------


def test_a_given_or_english_only_language_has_probability_one(greedy: Transcript) -> None:
    from mmseq.serve.formats import as_verbose_json
    from mmseq.writers import to_json

    assert (greedy.language, greedy.language_probability) == ("en", 1.0)  # English-only
    assert json.loads(to_json(greedy))["language_probability"] == 1.0
    # OpenAI's verbose_json has no such field: the server does not add one
    assert "language_probability" not in as_verbose_json(greedy, "transcribe", ("segment",))

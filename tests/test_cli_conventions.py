"""Issue 19, items 2, 3 and 6: option shapes that cannot take the inputs, missing inputs found
before the model loads, ffmpeg as the audio fallback with quiet mp3 decoding, and openai-whisper's
and faster-whisper's CLI conventions (underscore spellings, --verbose, --vad-parameters, where
files went).

Most checks parse arguments only; the few that transcribe share one model load or one run.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmseq.cli import (
    _fp16_compute_type,
    _openai_verbose,
    _transcribe_options,
    build_parser,
    fallback_temperatures,
    main,
)

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
CLIP = CLIPS / "clip4_en-m3.flac"  # tiny.en transcribes it word for word
VERBOSE_LINE = re.compile(r"^\[\d\d:\d\d\.\d{3} --> \d\d:\d\d\.\d{3}\] ")


def parse(*argv: str | Path) -> argparse.Namespace:
    return build_parser().parse_args([str(a) for a in argv])


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every (sub)command's, recursively."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += subparsers(sub)
    return found


# --- 2b: one option shape that cannot take the inputs ------------------------------------


def test_temperature_does_not_take_the_inputs_after_it() -> None:
    args = parse("transcribe", "--temperature", "0", "a.wav", "b.wav")
    assert args.files == ["a.wav", "b.wav"] and args.temperature == 0.0


def test_temperature_schedule_is_openai_whispers() -> None:
    from mmseq.transcription import TranscribeOptions

    def temperatures(*flags: str) -> tuple[float, ...]:
        return _transcribe_options(parse("transcribe", "a.wav", *flags))[0].temperatures

    # the CLI's defaults give TranscribeOptions' own schedule: one default, not two
    assert temperatures() == TranscribeOptions().temperatures == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert temperatures("--temperature-increment-on-fallback", "none") == (0.0,)
    assert temperatures("--temperature", "0.5", "--temperature_increment_on_fallback", "0.25") == (
        0.5,
        0.75,
        1.0,
    )
    assert fallback_temperatures(1.0, 0.2) == (1.0,)
    with pytest.raises(ValueError, match="increment on fallback: expected > 0 or none"):
        fallback_temperatures(0.0, 0.0)


def test_tokenizer_fields_and_tasks_do_not_take_the_manifests() -> None:
    args = parse("tokenizer", "train", "--field", "text", "m.jsonl", "--out", "t.json")
    assert args.manifests == ["m.jsonl"] and args.fields == ["text"]
    args = parse("tokenizer", "train", "--tasks", "translate", "m.jsonl", "--out", "t.json")
    assert args.manifests == ["m.jsonl"] and args.tasks == ["translate"]
    args = parse("tokenizer", "train", "m.jsonl", "--fields", "source,target", "--out", "t")
    assert args.fields == ["source", "target"]
    args = parse("tokenizer", "train", "m.jsonl", "--field", "a", "--field", "b", "--out", "t")
    assert args.fields == ["a", "b"]
    args = parse("tokenizer", "train", "m.jsonl", "--tasks", "", "--out", "t")
    assert args.tasks == []  # no task tokens
    args = parse("tokenizer", "train", "m.jsonl", "--out", "t")
    assert args.fields is None and args.tasks is None  # the library's defaults apply


def test_no_option_of_any_command_takes_a_variable_number_of_values() -> None:
    """An option with nargs +, * or ? takes the positional arguments that follow it."""
    for parser in subparsers(build_parser()):
        for action in parser._actions:
            if action.option_strings:
                assert action.nargs not in ("+", "*", "?"), (parser.prog, action.option_strings)


# --- 3d: a missing input is found before the model loads --------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["transcribe", "{missing}"],
        ["transcribe", str(CLIP), "{missing}"],
        ["caption", "--model", "/nonexistent.ckpt", "{missing}"],
        ["translate", "--model", "/nonexistent", "{missing}"],
        ["summarize", "--model", "/nonexistent", "{missing}"],
    ],
)
def test_a_missing_input_is_named_before_the_model_loads(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.wav")
    assert main([a.format(missing=missing) for a in argv]) == 2  # a usage error, as the others
    out, err = capsys.readouterr()
    assert out == "" and "loaded" not in err
    assert f"mmseq: error: {missing}: no such file" in err
    assert err.count("\n") == 1  # one line


# --- 3e, 3f: audio through soundfile, then ffmpeg; mp3 quietly ---------------------------


def test_not_audio_names_the_decoders_tried(tmp_path: Path) -> None:
    from mmseq.data.audio import AudioLoadError, load_audio

    path = tmp_path / "notes.wav"
    path.write_text("a shopping list, not audio\n" * 20)
    with pytest.raises(AudioLoadError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a readable audio file: soundfile: ")
    assert "Format not recognised; ffmpeg: Invalid data found when processing input" in message
    assert "audioread" not in message


def test_without_ffmpeg_the_message_says_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmseq.data.audio
    from mmseq.data.audio import AudioLoadError, load_audio

    path = tmp_path / "notes.m4a"
    path.write_text("not audio either\n" * 20)
    monkeypatch.setattr(mmseq.data.audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioLoadError, match=r"ffmpeg: not installed \(install ffmpeg to read mp3"):
        load_audio(path)


@pytest.fixture(scope="module")
def cut_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mp3 cut in half: its Xing header promises twice the stream it holds."""
    folder = tmp_path_factory.mktemp("mp3")
    wav, mp3 = folder / "speech.wav", folder / "full.mp3"
    sf.write(wav, sf.read(CLIP, dtype="float32")[0], 16000)
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", wav, "-b:a", "64k", mp3]
    subprocess.run(command, check=True, timeout=60)
    data = mp3.read_bytes()
    cut = folder / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize("ffmpeg", [True, False], ids=["ffmpeg", "no-ffmpeg"])
def test_mp3_decoder_chatter_does_not_reach_the_terminal(cut_mp3: Path, ffmpeg: bool) -> None:
    """libmpg123 writes "Warning: Xing stream size off ..." to fd 2, past sys.stderr, so only
    the process's own stderr tells."""
    code = "import shutil; shutil.which = lambda name: None\n" if not ffmpeg else ""
    code += (
        "import sys\nfrom mmseq.data.audio import header_seconds, load_audio\n"
        f"print(len(load_audio({str(cut_mp3)!r})), header_seconds({str(cut_mp3)!r}))\n"
        "print('python stderr still works', file=sys.stderr)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == "python stderr still works\n"  # no Xing warning
    samples, seconds = run.stdout.split()
    assert int(samples) > 16000 and float(seconds) > 0


def test_wav_and_flac_samples_are_soundfiles(tmp_path: Path) -> None:
    """Only mp3 and what libsndfile cannot read go through ffmpeg: wav and flac keep the
    samples the openai-whisper reference tests compare."""
    from mmseq.data.audio import load_audio

    expected = sf.read(CLIP, dtype="float32")[0]
    np.testing.assert_array_equal(load_audio(CLIP), expected)
    path = tmp_path / "clip.wav"
    sf.write(path, expected, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), expected)


# --- 6a: openai-whisper's spellings ------------------------------------------------------


def test_every_openai_whisper_transcribe_option_is_accepted() -> None:
    whisper = pytest.importorskip("whisper.transcribe")
    source = Path(whisper.__file__).read_text()
    cli = source[source.index("def cli(") :]
    theirs = set(re.findall(r'add_argument\("(--?\w+)"', cli))
    theirs |= set(re.findall(r'add_argument\("--\w+", "(-\w)"', cli))
    assert {"--beam_size", "--fp16", "--verbose", "-o", "-f"} <= theirs  # the regex reads them
    transcribe = subparsers(build_parser())[1]
    assert transcribe.prog.endswith("transcribe")
    assert sorted(theirs - set(transcribe._option_string_actions)) == []


def test_openai_whisper_values_set_mmseq_options() -> None:
    argv = ["transcribe", "a.wav", "--word_timestamps", "True", "--highlight_words", "True"]
    argv += ["--condition_on_previous_text", "False", "--carry_initial_prompt", "False"]
    argv += ["--initial_prompt", "Names.", "--beam_size", "5", "--best_of", "3"]
    argv += ["--compression_ratio_threshold", "None", "--logprob_threshold", "-2"]
    argv += ["--no_speech_threshold", "0.5", "--max_line_width", "40", "--max_line_count", "2"]
    argv += ["--hallucination_silence_threshold", "2", "--clip_timestamps", "0"]
    argv += ["--temperature", "0.2", "--temperature_increment_on_fallback", "0.4", "--threads", "0"]
    argv += ["-o", "out", "-f", "srt", "--fp16", "False", "--verbose", "False", "--task"]
    argv += ["transcribe", "--language", "en", "--suppress_tokens", "-1", "--patience", "2"]
    argv += ["--length_penalty", "0.5"]
    args = build_parser().parse_args(_openai_verbose(argv))
    options, subtitles = _transcribe_options(args)
    assert options.word_timestamps and not options.condition_on_previous_text
    assert not options.carry_initial_prompt and options.initial_prompt == "Names."
    assert (options.beam_size, options.best_of) == (5, 3)
    assert (options.patience, options.length_penalty) == (2, 0.5)
    assert options.compression_ratio_threshold is None and options.logprob_threshold == -2
    assert options.no_speech_threshold == 0.5 and options.hallucination_silence_threshold == 2
    assert options.temperatures == (0.2, 0.6, 1.0) and options.clip_timestamps == (0.0,)
    assert subtitles.highlight_words and (subtitles.max_line_width, subtitles.max_line_count) == (
        40,
        2,
    )
    assert (args.output_dir, args.output_format, args.threads) == ("out", "srt", 0)
    assert args.verbose is False and args.fp16 is False


@pytest.mark.parametrize(
    ("argv", "verbose", "files"),
    [
        (["--verbose", "True", "a.wav"], True, ["a.wav"]),
        (["--verbose", "False", "a.wav"], False, ["a.wav"]),
        (["--verbose=True", "a.wav"], True, ["a.wav"]),
        (["--verbose", "a.wav"], True, ["a.wav"]),  # mmseq's flag takes no value
        (["a.wav", "--verbose"], True, ["a.wav"]),
    ],
)
def test_verbose_takes_openai_whispers_value_but_never_an_input(
    argv: list[str], verbose: bool, files: list[str]
) -> None:
    args = build_parser().parse_args(_openai_verbose(["transcribe", *argv]))
    assert args.verbose is verbose and args.files == files


def test_underscore_spellings_are_hidden_from_help_but_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    out = capsys.readouterr().out
    usage_and_options = out[: out.index("openai-whisper's spellings work too")]
    assert "--beam-size" in usage_and_options and "--beam_size" not in usage_and_options
    assert "--word_timestamps True" in out  # the epilog says how


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--word_timestamps", "yes"], "expected True or False, got 'yes'"),
        (["--fp16", "1"], "expected True or False, got '1'"),
    ],
)
def test_bad_openai_values_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["transcribe", str(CLIP), *flags])
    assert caught.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prepend_punctuations", "x"], "--prepend_punctuations x: not supported"),
        (["--model_dir", "/models"], "--model_dir /models: not supported (mmseq downloads"),
        (["--suppress_tokens", "1,2"], "--suppress_tokens 1,2: not supported"),
        (["--fp16", "True", "--compute-type", "int8"], "--fp16 True with --compute-type int8"),
    ],
)
def test_openai_options_mmseq_lacks_are_refused_unless_at_their_default(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(CLIP), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "loaded" not in err  # before the model loads


def test_fp16(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def compute_type(*flags: str) -> str:
        return _fp16_compute_type(parse("transcribe", "a.wav", *flags))

    assert compute_type() == "float32" and compute_type("--fp16", "False") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="mmseq"):
        assert compute_type("--fp16", "True") == "float32"
    assert "FP16 is not supported on CPU; using float32" in caplog.text  # said, not silent
    assert compute_type("--fp16", "True", "--device", "cuda") == "float16"


# --- 6c: --vad-parameters -----------------------------------------------------------------


def test_vad_parameters_as_faster_whispers() -> None:
    from mmseq.data.vad import VadOptions

    def vad_options(text: str) -> VadOptions:
        args = parse("transcribe", "a.wav", "--vad", "--vad-parameters", text)
        return _transcribe_options(args)[0].vad_options

    given = vad_options(
        "threshold=0.6, min_speech_duration_ms=100,min_silence_duration_ms=1000,"
        "speech_pad_ms=300,max_speech_duration_s=20,neg_threshold=0.4,max_gap_s=2"
    )
    assert given == VadOptions(
        threshold=0.6,
        min_speech_ms=100,
        min_silence_ms=1000,
        speech_pad_ms=300,
        max_chunk_s=20,
        neg_threshold=0.4,
        max_gap_s=2,
    )
    as_json = vad_options('{"threshold": 0.3, "min_silence_duration_ms": 2000}')
    assert as_json == VadOptions(threshold=0.3, min_silence_ms=2000)  # the rest: mmseq's
    assert _transcribe_options(parse("transcribe", "a.wav", "--vad"))[0].vad_options == VadOptions()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("window_size_samples=512", "unknown parameter 'window_size_samples'; accepted: threshold"),
        ("threshold=1.5", "threshold: expected a probability between 0 and 1, got '1.5'"),
        ("min_silence_duration_ms=abc", "min_silence_duration_ms: expected milliseconds >= 0"),
        ("speech_pad_ms=2.5", "speech_pad_ms: expected milliseconds >= 0, got '2.5'"),
        ("max_speech_duration_s=60", "max_speech_duration_s: expected seconds > 1, at most 30"),
        ("threshold", "expected key=value, got 'threshold'"),
        ('{"threshold": ', "not a JSON object"),
    ],
)
def test_bad_vad_parameters_are_usage_errors(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["transcribe", str(CLIP), "--vad", "--vad-parameters", value])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "argument --vad-parameters" in err and message in err


def test_vad_parameters_without_vad_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(CLIP), "--vad-parameters", "threshold=0.6"]) == 2
    assert "--vad-parameters: they tune --vad; add --vad" in capsys.readouterr().err


# --- with the model: 6b (--verbose), 6d (where files went), 6c (the VAD gets them) --------


@pytest.fixture(scope="module")
def transcriber():  # noqa: ANN201
    from mmseq.transcription import Transcriber

    return Transcriber("tiny.en", device="cpu")


def test_verbose_prints_each_window_as_it_is_decided(
    transcriber, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """40 s, two windows: the first window's lines come before the second window is decoded."""
    from mmseq.cli import VerboseTranscriber
    from mmseq.transcription import LiveBatch, TranscribeOptions

    speech = sf.read(CLIP, dtype="float32")[0]
    audio = np.zeros(40 * 16000, np.float32)
    audio[: len(speech)] = speech
    audio[32 * 16000 : 32 * 16000 + len(speech)] = speech
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    events: list[str] = []
    step = LiveBatch.step
    monkeypatch.setattr(LiveBatch, "step", lambda self: events.append("step") or step(self))
    stream = io.StringIO()
    verbose = VerboseTranscriber(transcriber, stream)
    monkeypatch.setattr(stream, "write", lambda text: events.append(text) or len(text))
    options = TranscribeOptions(temperatures=(0.0,))
    (result,) = verbose.iter_transcribe([str(path)], options=options)
    lines = [e for e in events if e.startswith("[")]
    assert lines == [f"[{_clock(s.start)} --> {_clock(s.end)}] {s.text}" for s in result.segments]
    assert len(result.segments) >= 2 and events.count("step") >= 2
    first_line = events.index(lines[0])
    assert "step" in events[first_line:]  # printed while a window was left to decode


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds * 1000), 60_000)
    return f"{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def test_vad_parameters_reach_the_voice_activity_detector(
    transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import mmseq.transcription.vad
    from mmseq.data.vad import VadOptions
    from mmseq.transcription import TranscribeOptions

    seen = []
    chunks = mmseq.transcription.vad.speech_chunks  # the voice-activity path's
    monkeypatch.setattr(
        mmseq.transcription.vad,
        "speech_chunks",
        lambda audio, options: seen.append(options) or chunks(audio, options),
    )
    vad = VadOptions(threshold=0.7, min_silence_ms=900)
    options = TranscribeOptions(vad=True, vad_options=vad, temperatures=(0.0,))
    (result,) = transcriber.iter_transcribe([str(CLIP)], options=options)
    assert seen == [vad] and result.text


def test_a_run_as_a_ported_openai_whisper_script(tmp_path: Path) -> None:
    """One run: openai-whisper's spellings, --verbose in a pipe (its lines on stderr, the
    transcript once on stdout) and the file it wrote in the working folder logged."""
    run = subprocess.run(
        [sys.executable, "-m", "mmseq.cli", "transcribe", CLIP, "--verbose", "True"]
        + ["--output_format", "srt", "--word_timestamps", "True", "--temperature", "0"]
        + ["--temperature_increment_on_fallback", "None", "--fp16", "False"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    expected = "It is going to rain tomorrow, so bring an umbrella to work."
    assert run.stdout == expected + "\n"  # once, as without --verbose
    lines = [line for line in run.stderr.splitlines() if VERBOSE_LINE.match(line)]
    assert lines and lines[0].startswith("[00:00.000 --> ") and lines[0].endswith(expected)
    assert "wrote ./clip4_en-m3.srt" in run.stderr
    assert (tmp_path / "clip4_en-m3.srt").read_text().startswith("1\n00:00:00,000 --> ")


def test_verbose_on_a_terminal_prints_the_segments_not_the_transcript_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in transcriber (the --vad path hands whole transcripts to --verbose)."""
    from types import SimpleNamespace

    import mmseq.transcription
    from mmseq.transcription import Transcript
    from mmseq.whisper.segments import Segment

    class Stub:
        whisper = SimpleNamespace(source="stub", tokenizer=SimpleNamespace(is_multilingual=False))

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def iter_transcribe(self, inputs, options=None, progress=None):  # noqa: ANN001, ANN201
            segments = [Segment(0.0, 4.0, " Hello.", [], 0.0, 1.0, 0.0, 0.0)]
            segments.append(Segment(64.5, 66.0, " Again.", [], 0.0, 1.0, 0.0, 0.0))
            yield from (Transcript(str(name), segments, duration=66.0) for name in inputs)

    monkeypatch.setattr(mmseq.transcription, "Transcriber", Stub)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["-q", "transcribe", str(CLIP), "--vad", "--verbose", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out == "[00:00.000 --> 00:04.000]  Hello.\n[01:04.500 --> 01:06.000]  Again.\n"


def test_vad_without_silero_is_a_usage_error_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    import mmseq.transcription

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "silero_vad" else real(name, *a),
    )
    loaded = []
    monkeypatch.setattr(mmseq.transcription, "load_whisper", lambda *a, **k: loaded.append(a))
    clip = str(CLIPS / "clip1_en-us.flac")
    assert main(["transcribe", clip, "--vad"]) == 2
    assert "--vad needs the silero-vad package: pip install 'mmseq[vad]'" in capsys.readouterr().err
    assert not loaded

"""`mmseq transcribe --explain DIR`: a word-by-time alignment figure per audio file, made of
the attention and DTW path that word timestamps use. tiny.en on the bundled clips; the CLI runs
in-process and the runs are shared (loading tiny.en costs seconds on a busy machine)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmseq.cli import main
from mmseq.explain import (
    AXIS,
    HEADER,
    LABEL,
    PAD,
    PATH,
    ROW,
    TIME_WIDTH,
    WindowPanel,
    WordSpan,
    panel_height,
    render_alignment,
    window_panel,
)
from mmseq.transcription import TranscribeOptions, Transcriber
from mmseq.whisper import load_whisper

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"
CLIP = (
    CLIPS / "clip3_en-us-f3.flac"
)  # "The meeting has been moved to Thursday afternoon at 3 o'clock."
OTHER = CLIPS / "clip4_en-m3.flac"


def height(n_words: int) -> int:
    """A one-window figure's height: the title, a row per word, the time axis."""
    return HEADER + n_words * ROW + AXIS + PAD


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def mmseq(*args: str | Path) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["transcribe", "-q", *map(str, args)])
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict:
    """A good clip, a file that is not audio, another good clip: once with --explain, once
    without; both also write JSON."""
    root = tmp_path_factory.mktemp("explain")
    bad = root / "notes.wav"
    bad.write_text("this is not audio\n")
    files = [CLIP, bad, OTHER]
    explained = mmseq(*files, "--explain", root / "figures" / "new", "--output-dir", root / "a",
                      "--output-format", "json")  # fmt: skip
    plain = mmseq(*files, "--output-dir", root / "b", "--output-format", "json")
    return {"root": root, "bad": bad, "explained": explained, "plain": plain}


@pytest.fixture(scope="module")
def tiny_en(one_thread: None):  # noqa: ANN201
    return load_whisper("tiny.en")


@pytest.fixture(scope="module")
def clip_transcript(tiny_en):  # noqa: ANN001, ANN201
    """CLIP with its alignments and its word timestamps, batched as the CLI run batches it."""
    options = TranscribeOptions(keep_alignments=True, word_timestamps=True)
    return Transcriber(tiny_en).transcribe([CLIP, OTHER], options=options)[0]


def test_a_figure_per_good_file_and_an_error_line_for_the_bad_one(runs: dict) -> None:
    run, bad = runs["explained"], runs["bad"]
    assert run.code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("mmseq: error:")]
    assert len(errors) == 1 and str(bad) in errors[0]
    figures = runs["root"] / "figures" / "new"  # created, parents too
    assert sorted(p.name for p in figures.iterdir()) == [f"{CLIP.stem}.png", f"{OTHER.stem}.png"]
    for path in figures.iterdir():
        figure = Image.open(path)
        assert figure.format == "PNG" and figure.mode == "RGB"
        assert TIME_WIDTH < figure.width < TIME_WIDTH + 300 and 150 < figure.height < 600


def test_transcripts_and_files_are_what_was_asked(runs: dict) -> None:
    """--explain aligns words internally, but stdout and the JSON stay as without it."""
    explained, plain = runs["explained"], runs["plain"]
    assert explained.stdout == plain.stdout
    assert explained.stdout.splitlines()[0] == (
        f"{CLIP}\tThe meeting has been moved to Thursday afternoon at 3 o'clock."
    )
    a, b = (json.loads((runs["root"] / d / f"{CLIP.stem}.json").read_text()) for d in "ab")
    assert a == b and all("words" not in segment for segment in a["segments"])


def test_rows_are_the_words_of_word_timestamps(runs: dict, clip_transcript) -> None:  # noqa: ANN001
    (panel,) = [window_panel(a) for a in clip_transcript.alignments]
    words = [w.word.strip() for s in clip_transcript.segments for w in s.words]
    assert [w.word for w in panel.words] == words
    assert "".join(words) == clip_transcript.text.replace(" ", "")
    assert words[-2:] == ["o", "'clock."]  # split as word timestamps split it
    # the CLI's figure is this panel drawn: one row per word
    figure = Image.open(runs["root"] / "figures" / "new" / f"{CLIP.stem}.png")
    drawn = render_alignment(CLIP.name, [panel])
    assert figure.size == drawn.size
    assert figure.height == height(len(words))
    same = (np.asarray(figure) == np.asarray(drawn)).all(-1).mean()
    assert same == 1.0, same


def test_the_plotted_path_runs_forward_in_time(runs: dict, clip_transcript) -> None:  # noqa: ANN001
    """Read the cyan path off the PNG: on each word's row it starts where the previous word's
    ended and moves right; its word spans are the word timestamps before their clean-up."""
    figure = np.asarray(Image.open(runs["root"] / "figures" / "new" / f"{CLIP.stem}.png"))
    (panel,) = [window_panel(a) for a in clip_transcript.alignments]
    spans = []
    for i in range(len(panel.words)):
        xs = np.flatnonzero((figure[HEADER + i * ROW + ROW // 2] == PATH).all(-1))
        assert len(xs), f"no path on row {i}"
        spans.append((xs.min(), xs.max()))
    for (start, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert start <= end and abs(next_start - end) <= 2
    assert spans[-1][1] - spans[0][0] > TIME_WIDTH / 2  # the speech fills most of the clip
    starts = [w.start for w in panel.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in panel.words)
    assert all(a.end == b.start for a, b in zip(panel.words, panel.words[1:], strict=False))


def test_vad_chunks_are_placed_on_the_recording(tiny_en) -> None:  # noqa: ANN001
    """5 s of silence, then CLIP: VAD's chunk starts near 5 s, and the panel with it."""
    import soundfile as sf

    audio = np.concatenate([np.zeros(5 * 16000, np.float32), sf.read(CLIP, dtype="float32")[0]])
    options = TranscribeOptions(vad=True, keep_alignments=True, word_timestamps=True)
    transcript = Transcriber(tiny_en).transcribe(audio, options=options)
    (panel,) = [window_panel(a) for a in transcript.alignments]
    assert 4.0 < panel.start < 5.0 and panel.words[0].start == panel.start
    starts = [w.start for s in transcript.segments for w in s.words]
    assert [w.start for w in panel.words] == pytest.approx(starts, abs=0.011)


def test_an_existing_file_as_dir_is_a_usage_error(tmp_path: Path) -> None:
    taken = tmp_path / "figures"
    taken.write_text("")
    run = mmseq(CLIP, "--explain", taken)
    assert run.code == 2 and run.stdout == ""
    assert f"mmseq: error: --explain {taken}: exists and is not a directory" in run.stderr


def test_a_whisper_fine_tune_checkpoint_is_explained(tmp_path: Path, tiny_en) -> None:  # noqa: ANN001
    """A `.ckpt` of Whisper (what fine-tuning writes) has no alignment heads of its own: every
    head of the upper decoder layers is used, as openai-whisper does."""
    from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry
    from mmseq.data.tokenizer import WhisperTextTokenizer

    model = tiny_en.model
    entry = checkpoint_entry(model.config, WhisperTextTokenizer(tiny_en.tokenizer), {})
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "mmseq": entry}, tmp_path / "tuned.ckpt")
    run = mmseq(CLIP, "--model", tmp_path / "tuned.ckpt", "--explain", tmp_path / "out")
    assert run.code == 0, run.stderr
    assert run.stdout == "The meeting has been moved to Thursday afternoon at 3 o'clock.\n"
    figure = Image.open(tmp_path / "out" / f"{CLIP.stem}.png")
    assert figure.height == height(12)  # 12 words, as with tiny.en's heads


def test_a_model_trained_from_scratch_is_refused(tmp_path: Path) -> None:
    from mmseq.checkpoint import MODEL_PREFIX, checkpoint_entry
    from mmseq.data.tokenizer import train_bpe
    from mmseq.decoder import DecoderConfig
    from mmseq.encoders import AudioEncoderConfig
    from mmseq.model import EncoderDecoder, ModelConfig
    from mmseq.nn import BlockConfig

    tokenizer = train_bpe(["the meeting has been moved"] * 20, vocab_size=300)
    block = BlockConfig(d_model=32, n_heads=2, d_ff=64)
    config = ModelConfig(
        audio=AudioEncoderConfig(n_layers=1, block=block, pad_to_30s=False),
        decoder=DecoderConfig(vocab_size=tokenizer.vocab_size, n_ctx=16, n_layers=1, block=block),
    )
    state = {MODEL_PREFIX + k: v for k, v in EncoderDecoder(config).state_dict().items()}
    entry = checkpoint_entry(config, tokenizer, {"audio": "transcribe"})
    torch.save({"state_dict": state, "mmseq": entry}, tmp_path / "scratch.ckpt")
    run = mmseq(CLIP, "--model", tmp_path / "scratch.ckpt", "--explain", tmp_path / "out")
    assert run.code == 2 and run.stdout == ""
    assert f"--explain: {tmp_path / 'scratch.ckpt'} is a speech model trained from scratch" in (
        run.stderr
    )
    assert not (tmp_path / "out").exists()
    # options it cannot follow are named, not dropped; those it follows work
    run = mmseq(
        CLIP, "--model", tmp_path / "scratch.ckpt", "--vad", "--temperature", "0.4",
        "--compute-type", "int8", "--language", "en",
    )  # fmt: skip
    assert run.code == 2 and run.stdout == ""
    assert "cannot follow --temperature, --language, --compute-type" in run.stderr
    run = mmseq(CLIP, "--model", tmp_path / "scratch.ckpt", "--max-new-tokens", "3")
    assert run.code == 0, run.stderr
    assert len(run.stdout.split()) <= 3
    # exported as an mmseq folder (no pickle): the same transcript
    assert main(["export", str(tmp_path / "scratch.ckpt"), str(tmp_path / "folder")]) == 0
    again = mmseq(CLIP, "--model", tmp_path / "folder", "--max-new-tokens", "3")
    assert again.code == 0 and again.stdout == run.stdout


def _panel(start: float, n_words: int, frames: int = 1500) -> WindowPanel:
    edges = np.linspace(start, start + frames * 0.02, n_words + 1)
    heat = np.random.default_rng(n_words).random(frames)
    words = [WordSpan(f"w{i}", edges[i], edges[i + 1], heat) for i in range(n_words)]
    return WindowPanel(start, frames, words)


def test_one_panel_per_window_on_one_time_scale() -> None:
    """A 30 s window of 5 words, then a 10 s one of 3: the second panel's words are as wide in
    pixels per second as the first's."""
    panels = [_panel(0.0, 5), _panel(30.0, 3, frames=500)]
    figure = render_alignment("long.wav", panels)
    each = LABEL + AXIS + PAD  # a panel's title band and time axis
    assert figure.height == HEADER + 2 * each + 8 * ROW
    pixels = np.asarray(figure)
    tops = (HEADER + LABEL, HEADER + each + 5 * ROW + LABEL)  # each panel's first row
    for top, seconds in zip(tops, (30 / 5, 10 / 3), strict=True):  # its first word's length
        path = np.flatnonzero((pixels[top + ROW // 2] == PATH).all(-1))
        assert len(path), top
        assert path.max() - path.min() == pytest.approx(seconds * TIME_WIDTH / 30, abs=3)


def test_a_figure_too_large_keeps_its_first_windows_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    panels = [_panel(30.0 * i, 40) for i in range(4)]
    full = render_alignment("long.wav", panels)
    two = HEADER + 2 * panel_height(panels[0], 4)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", full.width * two)
    with caplog.at_level("WARNING"):
        cut = render_alignment("long.wav", panels)
    assert full.height == HEADER + 4 * panel_height(panels[0], 4)
    assert cut.size == (full.width, two)
    assert "long.wav: the alignment figure shows windows 1-2 of 4 (up to 60 s)" in caplog.text


def test_no_speech_gives_a_figure_that_says_so() -> None:
    figure = render_alignment("silence.wav", [])
    assert figure.height == HEADER + LABEL + PAD
    assert (np.asarray(figure)[HEADER:] < 128).any()  # the note is written

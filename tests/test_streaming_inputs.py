"""Long inputs in bounded memory: `mmseq translate` and `mmseq caption` read their inputs a
window (a batch) at a time and write each result, in input order, before reading far ahead;
tiny random models from benchmarks/memory_inputs.py. Nothing here is timed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from mmseq.cli import expand_inputs, iter_inputs, main

ROOT = Path(__file__).resolve().parents[1]


def _bench():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(
        "memory_inputs", ROOT / "benchmarks" / "memory_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bench().build_marian(tmp_path_factory.mktemp("marian"))


@pytest.fixture(scope="module")
def captioner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bench().build_captioner(tmp_path_factory.mktemp("vit-gpt2"))


class _Counted:
    """An iterator over `items` that counts how many were taken."""

    def __init__(self, items: Iterable) -> None:
        self.items, self.taken = iter(items), 0

    def __iter__(self) -> Iterator:
        for item in self.items:
            self.taken += 1
            yield item


SENTENCES = ["Open file", "", "Save the current document as a new file", "Quit", "Print"] * 4


def test_text_generator_reads_a_window_ahead_only(marian: Path) -> None:
    from mmseq.text.generator import TextGenerator

    generator = TextGenerator(marian)
    source = _Counted(SENTENCES)
    results = generator.iter_results(source, batch_size=2, window=4, max_new_tokens=3)
    first = next(results)
    assert source.taken == 4  # one window read, not all 20
    rest = [first.text, *(r.text for r in results)]
    assert rest == generator.generate(SENTENCES, max_new_tokens=3)  # same text, same order


def test_translate_answers_before_the_input_ends(marian: Path) -> None:
    """stdin stays open: the first window's lines come out before the rest is written."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    argv = ["translate", "--model", str(marian), "-q", "--window", "2", "--max-new-tokens", "3"]
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mmseq.cli import main; sys.exit(main())", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    timer = threading.Timer(120, child.kill)  # a hang fails the test instead of blocking it
    timer.start()
    try:
        child.stdin.write(b"Open file\nQuit\nPrint\n")
        child.stdin.flush()
        first = [child.stdout.readline(), child.stdout.readline()]  # before stdin is closed
        assert child.poll() is None
        child.stdin.write(b"Cancel\n")
        child.stdin.close()
        rest = child.stdout.read().splitlines()
        assert child.wait() == 0, child.stderr.read().decode()
    finally:
        timer.cancel()
    from mmseq.text.generator import TextGenerator

    texts = ["Open file", "Quit", "Print", "Cancel"]
    expected = TextGenerator(marian).generate(texts, max_new_tokens=3)
    assert [line.decode().rstrip("\n") for line in first] + [r.decode() for r in rest] == expected


def test_caption_writes_each_batch_before_reading_the_next(
    captioner: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    from mmseq import inference

    images = _bench().write_images(tmp_path / "images", 10)
    (tmp_path / "images" / "sub").mkdir()
    _bench().write_images(tmp_path / "images" / "sub", 3)
    original = inference.Captioner.iter_caption
    seen: list[tuple[int, int]] = []  # (names read, lines written since) as each result comes

    def spy(self, names, batch_size=16):  # noqa: ANN001, ANN202
        source = _Counted(names)
        for result in original(self, source, batch_size):
            seen.append((source.taken, capsys.readouterr().out.count("\n")))
            yield result

    monkeypatch.setattr(inference.Captioner, "iter_caption", spy)
    argv = ["caption", str(images), "--model", str(captioner), "-q", "--device", "cpu"]
    assert main([*argv, "--batch-size", "4", "--beam-size", "1", "--max-new-tokens", "3"]) == 0
    monkeypatch.undo()
    assert [taken for taken, _ in seen] == [4] * 4 + [8] * 4 + [12] * 4 + [13]
    assert [written for _, written in seen] == [0] + [1] * 12  # each before the next comes
    capsys.readouterr()
    assert main([*argv, "--beam-size", "1", "--max-new-tokens", "3"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert names == expand_inputs([str(images)], {".png"})  # input order, sub/ included


def test_lazy_listing_gives_expand_inputs_names(tmp_path: Path, capsys) -> None:
    names = ["d/.h/h.png", "d/B/c.png", "d/Z.png", "d/a/1.PNG", "d/a/x/z.jpg", "d/a/x.png"]
    for name in [*names, "d/a-b/q.gif", "d/a.png/in.png", "d/a.jpg", "d/b.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "e").mkdir()  # empty: a warning
    suffixes = {".png", ".jpg", ".gif"}
    paths = [str(tmp_path / "d"), str(tmp_path / "d" / "b.txt"), str(tmp_path / "e")]
    assert list(iter_inputs(paths, suffixes)) == expand_inputs(paths, suffixes)
    assert capsys.readouterr().err.count("no matching files") == 2
    with pytest.raises(ValueError, match="nope: no such file"):
        iter_inputs([str(tmp_path / "d"), "nope"], suffixes)  # at once, before any listing


def test_lines_are_split_as_before(tmp_path: Path) -> None:
    """iter_lines reads a line at a time and splits as bytes.splitlines did on the whole file."""
    from mmseq.cli.text import iter_lines

    data = "\ufeffa\r\nb\rc\n\n\r\rd\r\n\re\u2028f\x0cg\x85h\r".encode()
    src = tmp_path / "mixed.txt"
    src.write_bytes(data)
    expected = [raw.decode() for raw in data.splitlines()]
    expected[0] = expected[0].removeprefix("\ufeff")
    assert list(iter_lines(str(src))) == expected

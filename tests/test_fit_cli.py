"""`mmseq fit` as a new user meets it: config mistakes are one short error naming the option,
`--help` lists the architecture fields and mmseq's DataModules, a run says where it writes and
goes where `--trainer.default_root_dir` says, without Lightning's noise."""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from training_helpers import caption_config, make_tiny_demo, write_config

from mmseq.training.cli import run, short_error

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_demo(tmp_path_factory.mktemp("demo"), shapes=12)


def shipped_style(demo: Path, root: Path) -> dict:
    """The tiny caption config as the shipped configs are written: no logger and no checkpoint
    folder of its own, so the run goes where mmseq's defaults and the flags say."""
    config = copy.deepcopy(caption_config(demo, root))
    trainer = config["trainer"]
    for key in ("logger", "default_root_dir"):
        del trainer[key]
    del trainer["callbacks"][0]["init_args"]["dirpath"]
    trainer["enable_model_summary"] = True
    return config


def _fails(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """stderr of a command line that must be refused as a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3, err  # no usage dump
    return err


@pytest.mark.parametrize(
    ("section", "key", "value", "expected", "print_config"),
    [
        ("model", "image.n_layer", 1, "model.model.image.n_layer: unknown option", True),
        ("model", "image.n_layer", 1, "model.model.image.n_layer: unknown option", False),
        (
            "model",
            "image.n_layers",
            "two",
            "model.model.image.n_layers: expected int, got 'two'",
            True,
        ),
        (
            "data",
            "batch_size",
            "sixty",
            "data.init_args.batch_size: expected int, got 'sixty'",
            True,
        ),
        ("data", "augmnt", "none", "data.init_args.augmnt: unknown option", True),
    ],
    ids=["model-print_config", "model-fit", "model-type", "data-type", "data-key"],
)
def test_a_config_mistake_is_one_short_error_with_its_dotted_path(
    demo: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    section: str,
    key: str,
    value: object,
    expected: str,
    print_config: bool,
) -> None:
    config = caption_config(demo, tmp_path / "run")
    place = config["model"]["model"] if section == "model" else config["data"]["init_args"]
    *parents, name = key.split(".")
    for parent in parents:
        place = place[parent]
    place[name] = value
    path = write_config(tmp_path / "bad.yaml", config)
    argv = ["fit", "--config", path, *(["--print_config"] if print_config else [])]
    err = _fails(argv, capsys)
    assert err.startswith(f"mmseq fit: error: {expected}"), err
    assert not (tmp_path / "run").exists()  # nothing ran


def test_a_config_that_parses_but_cannot_be_built_is_a_short_error(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = caption_config(demo, tmp_path / "run")
    config["model"]["freeze"] = ["encoder.image"]  # the module is `encoders.image`
    path = write_config(tmp_path / "bad.yaml", config)
    err = _fails(["fit", "--config", path], capsys)
    assert err.startswith("mmseq fit: error: freeze: 'encoder.image' matches no parameter")


def test_a_flag_typo_is_a_short_error(capsys: pytest.CaptureFixture) -> None:
    err = _fails(["fit", "--config", str(CONFIGS[0]), "--trainer.max_epoch", "3"], capsys)
    assert "--trainer.max_epoch" in err


def test_short_error_reads_jsonargparse_messages() -> None:
    nested = """Parser key "data":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'mmseq.data.modules.CaptionDataModule':
        Parser key "batch_size":
          Expected a <class 'int'>. Got value: sixty
    - Expected a <class 'NoneType'>
  Given value type: <class 'dict'>"""
    assert short_error(nested) == "data.init_args.batch_size: expected int, got 'sixty'"
    group = "Group 'model' does not accept option 'model.image.n_layer'"
    assert short_error(group) == "model.model.image.n_layer: unknown option (a typo?)"
    assert short_error("something else\nand more") == "something else"


def test_fit_help_lists_architecture_fields_and_datamodules(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--model.model.image.n_layers",
        "--model.model.decoder.block.d_model",
        "--model.model.audio.pad_to_30s",
    ):
        assert option in out
    assert "longest token sequence, prompt included" in out  # DecoderConfig.n_ctx's comment
    assert "(if unset: 12)" in out  # ImageEncoderConfig.n_layers' default
    for datamodule in ("CaptionDataModule", "SpeechDataModule", "MultiTaskDataModule"):
        assert f"mmseq.data.modules.{datamodule}" in out


def test_print_config_lists_the_architecture_fields(capsys: pytest.CaptureFixture) -> None:
    shapes = next(p for p in CONFIGS if p.stem == "caption_shapes")
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", str(shapes), "--print_config"])
    assert exit_info.value.code == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]["model"]
    assert model["image"]["n_layers"] == 2 and model["image"]["stem"] == "conv"
    assert "dropout" in model["image"]["block"]  # unset fields are listed too (null)
    assert model["decoder"]["vocab_size"] is None  # the tokenizer's, when the module is built

    preset = CONFIGS[0].parent / "models" / "multimodal_small.yaml"  # a model YAML by path
    with pytest.raises(SystemExit):
        run(["fit", "--config", str(shapes), "--model.model", str(preset), "--print_config"])
    model = yaml.safe_load(capsys.readouterr().out)["model"]["model"]
    assert model["decoder"]["vocab_size"] == 8000 and model["audio"]["pad_to_30s"] is False


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_parse(path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0, capsys.readouterr().err


def test_fit_honours_default_root_dir_and_says_where_it_writes(demo: Path, tmp_path: Path) -> None:
    # a subprocess: the console as a user sees it (pytest would capture logs and warnings)
    root = tmp_path / "elsewhere"
    path = write_config(tmp_path / "run.yaml", shipped_style(demo, tmp_path))
    argv = ["fit", "--config", path, "--trainer.default_root_dir", str(root)]
    done = subprocess.run(
        [sys.executable, "-m", "mmseq.cli", *argv],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    version = root / "mmseq" / "version_0"
    last = version / "checkpoints" / "last.ckpt"
    best = sorted((version / "checkpoints").glob("best-*.ckpt"))
    assert last.is_file() and len(best) == 1
    assert list(version.glob("events.out.tfevents.*"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lightning_logs").exists()

    assert f"run folder {version}" in out
    assert f"best checkpoint: {best[0]} (val/exact_match " in out
    assert f"last checkpoint: {last}" in out
    assert f"tensorboard --logdir {root / 'mmseq'}" in out
    # Lightning's noise is gone; its model summary stays, without the all-zero FLOPs
    assert "Trainable params" in out
    for noise in ("Tip:", "litlogger", "LeafSpec", "FLOPs", "Flops"):
        assert noise not in out


def test_fit_without_the_flag_writes_under_runs(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = shipped_style(demo, tmp_path)
    config["trainer"]["callbacks"].append(
        {
            "class_path": "mmseq.training.callbacks.EarlyStopping",
            "init_args": {"monitor": "val/exact_match", "mode": "max"},
        }
    )
    path = write_config(tmp_path / "run.yaml", config)
    # one step of two: training stops before any validation, with nothing to monitor yet
    run(["fit", "--config", path, "--trainer.max_steps", "1"])
    assert (tmp_path / "runs" / "mmseq" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_checkpoint_is_not_tested_with_another_tokenizer(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The ids of another tokenizer mean other words: `mmseq test --ckpt_path` after the
    tokenizer.json was rewritten (`mmseq data make-demo` with other parts, say) is a short
    error, not a run of garbage predictions and scores."""
    from mmseq.cli import main
    from mmseq.data.tokenizer import train_bpe

    tokenizer = tmp_path / "tokenizer.json"
    shutil.copyfile(demo / "tokenizer.json", tokenizer)
    settings = caption_config(demo, tmp_path, max_steps=1)
    settings["model"]["tokenizer"] = str(tokenizer)
    config = write_config(tmp_path / "run.yaml", settings)
    run(["fit", "--config", config])
    argv = ["test", "--config", config, "--ckpt_path", str(next(tmp_path.rglob("last.ckpt")))]
    capsys.readouterr()
    assert main(argv) == 0  # its own tokenizer: tested as usual
    train_bpe(["a different corpus entirely", "with other words"] * 50, 300).save(tokenizer)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mmseq test: error: model.tokenizer {tokenizer}: not the tokenizer")


def test_model_flags_given_with_ckpt_path_are_honoured(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning puts the checkpoint's hyperparameters over the parsed config when --ckpt_path
    is given; a `--model.*` flag on the command line (a decoding option for `mmseq test`) must
    still reach the module, as it does without --ckpt_path."""
    from mmseq.training.module import Seq2SeqModule

    config = write_config(tmp_path / "run.yaml", caption_config(demo, tmp_path, max_steps=1))
    run(["fit", "--config", config])
    ckpt = str(next(tmp_path.rglob("last.ckpt")))
    seen: list[tuple[int, int]] = []
    original = Seq2SeqModule.__init__

    @functools.wraps(original)  # the signature jsonargparse reads stays the module's
    def spy(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        original(self, *args, **kwargs)
        seen.append((self.hparams.num_beams, self.hparams.max_new_tokens))

    monkeypatch.setattr(Seq2SeqModule, "__init__", spy)
    run(["test", "--config", config, "--ckpt_path", ckpt])
    run(["test", "--config", config, "--ckpt_path", ckpt, "--model.num_beams", "3",
         "--model.max_new_tokens=7"])  # fmt: skip
    assert seen[1] == (3, 7) and seen[0] != (3, 7), seen

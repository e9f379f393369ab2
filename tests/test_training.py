"""Training end to end on tiny models and generated data: `mmseq fit|validate|test|predict`,
self-contained checkpoints and inference from them (`mmseq caption`, `mmseq transcribe`), and
the options of Seq2SeqModule (freeze, vocabulary size, pretrained weights, label smoothing,
SpecAugment)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from training_helpers import (
    BLOCK,
    caption_config,
    make_tiny_demo,
    read_metrics,
    speech_config,
    write_config,
)

from mmseq.checkpoint import load_trained
from mmseq.cli import main
from mmseq.data.augment import SpecAugment
from mmseq.data.collate import Batch
from mmseq.data.modules import CaptionDataModule, SpeechDataModule
from mmseq.errors import CheckpointError
from mmseq.training.module import Seq2SeqModule
from mmseq.training.optim import OptimizerConfig, build_optimizer, build_scheduler, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {
    "image": {"image_size": [16, 16], "patch_size": 8, "n_layers": 1, "block": BLOCK},
    "decoder": {"n_ctx": 32, "n_layers": 1, "block": BLOCK},
}


def _fit(root: Path, config: dict) -> SimpleNamespace:
    """`mmseq fit` of `config` (whose outputs go to root/run) through the console entry point."""
    out = root / "run"
    path = write_config(root / "run.yaml", config)
    assert main(["fit", "--config", path]) == 0
    ckpts = out / "checkpoints"
    return SimpleNamespace(
        out=out,
        config=path,
        last=ckpts / "last.ckpt",
        best=sorted(ckpts.glob("best-*.ckpt")),
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_demo(tmp_path_factory.mktemp("demo"), shapes=12, speech=6)


@pytest.fixture(scope="module")
def caption_run(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("caption")
    return _fit(root, caption_config(demo, root / "run"))


@pytest.fixture(scope="module")
def speech_run(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("speech")
    return _fit(root, speech_config(demo, root / "run"))


def _val_row(out: Path, stage: str = "val") -> dict[str, str]:
    rows = [r for r in read_metrics(out) if f"{stage}/loss" in r]
    assert rows, f"no {stage} metrics in {out}"
    return rows[-1]


# -- mmseq fit | validate | test | predict --------------------------------------------------


@pytest.mark.parametrize(
    ("run", "metrics"),
    [("caption_run", ["exact_match", "cider", "bleu4"]), ("speech_run", ["wer", "cer"])],
)
def test_fit_writes_checkpoints_and_validation_metrics(
    run: str, metrics: list[str], request: pytest.FixtureRequest
) -> None:
    result = request.getfixturevalue(run)
    assert result.last.is_file()
    assert len(result.best) == 1  # monitored metric, top 1
    rows = read_metrics(result.out)
    assert any("train/loss" in r for r in rows)
    val = _val_row(result.out)
    for metric in metrics:
        assert 0.0 <= float(val[f"val/{metric}"]) <= (1.0 if metric != "cider" else 10.0)


def test_validate_test_and_predict_from_a_checkpoint(
    caption_run: SimpleNamespace, capsys: pytest.CaptureFixture
) -> None:
    ckpt = str(caption_run.last)
    fitted = _val_row(caption_run.out)
    assert main(["validate", "--config", caption_run.config, "--ckpt_path", ckpt]) == 0
    again = _val_row(caption_run.out)
    for metric in ("val/exact_match", "val/cider", "val/bleu4", "val/loss"):
        assert float(again[metric]) == pytest.approx(float(fitted[metric]), abs=1e-5)

    assert main(["test", "--config", caption_run.config, "--ckpt_path", ckpt]) == 0
    tested = _val_row(caption_run.out, "test")
    assert {"test/exact_match", "test/cider", "test/bleu4"} <= tested.keys()

    capsys.readouterr()
    assert main(["predict", "--config", caption_run.config, "--ckpt_path", ckpt]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    rows = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in rows) == [f"images/test_{i:05d}.png" for i in range(4)]
    assert all(isinstance(r["prediction"], str) for r in rows)


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(
    caption_run: SimpleNamespace,
) -> None:
    raw = torch.load(caption_run.last, map_location="cpu", weights_only=True)
    assert raw["mmseq"]["model_config"]["image"]["image_size"] == [16, 16]
    trained = load_trained(caption_run.last)
    module = Seq2SeqModule.load_from_checkpoint(caption_run.last, weights_only=True).eval()
    assert trained.tasks == {"image": "caption"}
    assert trained.tokenizer.to_json() == module.tokenizer.to_json()
    pixels = torch.randn(2, 3, 16, 16)
    tokens = torch.tensor([[1, 5, 9, 12], [1, 7, 7, 3]])
    with torch.no_grad():
        ours = trained.model("image", pixels, tokens).logits
        theirs = module.model("image", pixels, tokens).logits
    assert torch.equal(ours, theirs)


class _Payload:
    """Unpickling this creates `path`: what a malicious checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


def test_a_checkpoint_holding_python_objects_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "mmseq": {"x": _Payload(marker)}}, evil)
    with pytest.raises(CheckpointError, match="evil.ckpt: refused to load"):
        load_trained(evil)
    assert not marker.exists()
    (tmp_path / "x.png").touch()  # exists: a missing input is refused before any model loads
    assert main(["caption", "--model", str(evil), str(tmp_path / "x.png")]) == 2
    assert not marker.exists()


def test_a_checkpoint_without_the_mmseq_entry_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(2)}}, plain)
    with pytest.raises(CheckpointError, match="plain.ckpt: not an mmseq training checkpoint"):
        load_trained(plain)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_trained(tmp_path / "missing.ckpt")


# -- inference from a .ckpt -----------------------------------------------------------------


def test_caption_command(
    caption_run: SimpleNamespace, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = [str(demo / "shapes" / "images" / f"val_0000{i}.png") for i in range(2)]
    model = ["--model", str(caption_run.last), "--beam-size", "2"]
    capsys.readouterr()
    assert main(["caption", *model, images[0]]) == 0
    single = capsys.readouterr().out.splitlines()
    assert len(single) == 1 and "\t" not in single[0]

    assert main(["caption", *model, "--output-format", "jsonl", *images]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == images
    assert rows[0]["caption"] == single[0]

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["caption", *model, images[0], str(bad), images[1]]) == 1
    captured = capsys.readouterr()
    assert "mmseq: error:" in captured.err and "broken.png" in captured.err
    lines = captured.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    assert lines[0].split("\t")[1] == single[0]


def test_transcribe_with_a_model_trained_from_scratch(
    speech_run: SimpleNamespace, demo: Path, capsys: pytest.CaptureFixture
) -> None:
    wavs = sorted((demo / "speech" / "wavs").glob("val_*.wav"))
    capsys.readouterr()
    assert main(["transcribe", "-q", "--model", str(speech_run.last), *map(str, wavs)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(w) for w in wavs]
    assert "error" not in captured.err
    srt = ["--output-format", "srt", str(wavs[0])]
    assert main(["transcribe", "--model", str(speech_run.last), *srt]) == 2
    assert "gives text only" in capsys.readouterr().err
    assert main(["transcribe", "-q", "--vad", "--model", str(speech_run.last), str(wavs[0])]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 and "error" not in captured.err


def test_a_model_trained_from_scratch_decodes_vad_chunks_cut_at_pauses() -> None:
    """Two sentences 4 s apart: 30 s cuts give one piece holding the pause, Silero VAD's
    speech chunks two pieces of speech (a pause over max_gap_s starts a new chunk)."""
    from mmseq.data.synth import recording
    from mmseq.data.vad import VadOptions
    from mmseq.inference import ChunkTranscriber

    audio = torch.from_numpy(
        recording(["The meeting has been moved.", 4.0, "Please bring the report."])
    )
    fixed = ChunkTranscriber.chunks(audio)
    assert [len(p) for p in fixed] == [len(audio)]
    pieces = ChunkTranscriber.chunks(audio, VadOptions())
    assert len(pieces) == 2
    assert sum(len(p) for p in pieces) < len(audio) - 3 * 16000  # the pause is left out


# -- Seq2SeqModule options ------------------------------------------------------------------


def _module(demo: Path, **kwargs: object) -> Seq2SeqModule:
    kwargs.setdefault("model", TINY)
    return Seq2SeqModule(str(demo / "tokenizer.json"), **kwargs)


def _caption_batch(demo: Path) -> Batch:
    dm = CaptionDataModule(
        str(demo / "tokenizer.json"), train=str(demo / "shapes" / "train.jsonl"), image_size=16
    )
    return next(iter(dm.loader("train")))


def _speech_batch(demo: Path) -> Batch:
    train = str(demo / "speech" / "train.jsonl")
    dm = SpeechDataModule(str(demo / "tokenizer.json"), train=train, max_target_tokens=32)
    return next(iter(dm.loader("train")))


def test_vocab_size_defaults_to_the_tokenizer_and_must_cover_it(demo: Path) -> None:
    module = _module(demo)
    assert module.model.config.decoder.vocab_size == module.tokenizer.vocab_size
    small = {**TINY, "decoder": {**TINY["decoder"], "vocab_size": 10}}
    with pytest.raises(ValueError, match="model.decoder.vocab_size: 10 is smaller"):
        _module(demo, model=small)
    with pytest.raises(ValueError, match="model: give a model config"):
        _module(demo, model=None)


def test_frozen_parameters_stay_fixed(demo: Path) -> None:
    import lightning.pytorch as pl

    optimizer = OptimizerConfig(lr=0.01, warmup_steps=0)
    module = _module(demo, freeze=["encoders.image"], optimizer=optimizer)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    dm = CaptionDataModule(str(demo / "tokenizer.json"), train=str(demo / "shapes" / "train.jsonl"))
    trainer.fit(module, datamodule=dm)
    after = dict(module.model.named_parameters())
    frozen = [n for n in before if n.startswith("encoders.image")]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    embedding = "decoder.token_embedding.weight"
    assert not torch.equal(before[embedding], after[embedding])
    with pytest.raises(ValueError, match="freeze: 'encoder.image' matches no parameter"):
        _module(demo, freeze=["encoder.image"])


def test_pretrained_checkpoint_with_model_overrides(
    demo: Path, caption_run: SimpleNamespace
) -> None:
    trained = load_trained(caption_run.last)
    dropout = {"decoder": {"block": {"dropout": 0.1}}}
    module = _module(demo, model=dropout, pretrained=str(caption_run.last))
    config = module.model.config
    assert config.decoder.block.dropout == 0.1
    assert config.decoder.block.d_model == 32 and tuple(config.image.image_size) == (16, 16)
    theirs = trained.model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in module.model.state_dict().items())
    with pytest.raises(ValueError, match="change the shapes of the pretrained weights"):
        _module(demo, model={"decoder": {"n_layers": 2}}, pretrained=str(caption_run.last))


def test_label_smoothing_changes_the_training_loss_only(demo: Path) -> None:
    batch = _caption_batch(demo)
    torch.manual_seed(0)
    smooth = _module(demo, label_smoothing=0.2)
    plain = _module(demo, label_smoothing=0.0)
    plain.load_state_dict(smooth.state_dict())
    with torch.no_grad():
        assert smooth._loss(batch, train=False) == plain._loss(batch, train=False)
        assert plain._loss(batch, train=True) == plain._loss(batch, train=False)
        assert smooth._loss(batch, train=True) != plain._loss(batch, train=True)


def test_spec_augment_masks_training_audio_only(demo: Path) -> None:
    audio = {"n_mels": 80, "n_layers": 1, "pad_to_30s": False, "block": BLOCK}
    masks = SpecAugment(freq_masks=2, time_masks=2)
    module = _module(demo, model={**TINY, "audio": audio}, spec_augment=masks)
    real, seen = module.spec_augment, []

    def spy(mel: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        out = real(mel, lengths)
        seen.append(not torch.equal(out, mel))
        return out

    module.spec_augment = spy
    speech, image = _speech_batch(demo), _caption_batch(demo)
    with torch.no_grad():
        module._loss(speech, train=False)
        module._loss(image, train=True)
        assert seen == []
        module._loss(speech, train=True)
    assert seen == [True]


def test_the_schedule_asks_for_its_length_after_warmup_only() -> None:
    """The trainer's step estimate is read once training runs, not in configure_optimizers
    (where it would keep a resumed run from restoring its data loader's position)."""
    cfg = OptimizerConfig(lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.0)
    asked: list[int] = []

    def total() -> int:
        asked.append(len(lrs))
        return 6

    optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg)
    scheduler, lrs = build_scheduler(optimizer, cfg, total), []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert asked[0] == 3  # first asked when leaving warmup's last step
    assert lrs == pytest.approx([lr_factor(step, cfg, 6) for step in range(6)])


def test_last_checkpoint_is_the_latest_epoch_when_the_metric_stops_improving(
    demo: Path, tmp_path: Path
) -> None:
    """With lr ~0 the validation metric never improves after epoch 0: `best` stays there, and
    `last.ckpt` (what `--ckpt_path last` resumes from) must still hold the final epoch."""
    config = caption_config(demo, tmp_path / "run", max_epochs=3)
    config["model"]["optimizer"] = {"lr": 1.0e-12, "warmup_steps": 0}
    run = _fit(tmp_path, config)
    (best,) = run.best
    steps_per_epoch = int(best.stem.removeprefix("best-epoch=0-step="))
    last = torch.load(run.last, map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * steps_per_epoch)
    for config_file in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        text = config_file.read_text()
        if "ModelCheckpoint" in text:  # the shipped configs use the callback tested here
            assert "mmseq.training.callbacks.ModelCheckpoint" in text, config_file.name

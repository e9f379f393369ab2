"""DataModules on tiny generated data: batches per modality, settings read from the model,
multi-task loaders, missing splits, skipped entries, YAML parsing and a short Trainer run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.utilities.combined_loader import CombinedLoader

from mmseq.data.collate import Batch
from mmseq.data.datasets import DataError
from mmseq.data.demo import make_demo
from mmseq.data.modules import (
    CaptionDataModule,
    MultiTaskDataModule,
    SpeechDataModule,
    TextDataModule,
)
from mmseq.data.sampler import ResumableDataLoader
from mmseq.data.tokenizer import train_bpe
from mmseq.decoder import DecoderConfig
from mmseq.encoders import AudioEncoderConfig, ImageEncoderConfig, TextEncoderConfig
from mmseq.model import ModelConfig

SECONDS = [0.3, 0.5, 0.7, 0.9, 1.1, 0.4]
WORDS = ["one", "two words", "three more words", "and four words here", "five", "six six"]


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)


def _jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("demo")
    make_demo(
        root,
        n_shapes_train=8,
        n_shapes_val=4,
        n_shapes_test=2,
        speech=False,
        digits=False,
        vocab_size=300,
        progress=False,
    )
    speech = root / "speech"
    rows = []
    for i, (seconds, text) in enumerate(zip(SECONDS, WORDS, strict=True)):
        _wav(speech / "wavs" / f"{i}.wav", seconds)
        rows.append({"audio_filepath": f"wavs/{i}.wav", "duration": seconds, "text": text})
    pairs = [{"source": f"source {w}", "target": w} for w in WORDS]
    text = root / "text"  # make_demo writes its own pairs there: replaced by these
    text.mkdir(exist_ok=True)
    (text / "val.tsv").write_text("source\ttarget\n" + "".join(f"s {w}\t{w}\n" for w in WORDS))
    return SimpleNamespace(
        root=root,
        tokenizer=str(root / "tokenizer.json"),
        speech=_jsonl(speech / "train.jsonl", rows),
        shapes=root / "shapes",
        text_train=_jsonl(text / "train.jsonl", pairs),
        text_val=str(text / "val.tsv"),
    )


def _attach(dm: object, config: ModelConfig | None, fn: str = "fit", tokenizer: object = None):
    """A stand-in Trainer whose LightningModule has `.model.config` (as Seq2SeqModule)."""
    module = SimpleNamespace(model=SimpleNamespace(config=config), tokenizer=tokenizer)
    dm.trainer = SimpleNamespace(
        lightning_module=module, world_size=1, global_rank=0, state=SimpleNamespace(fn=fn)
    )


def _batches(loader) -> list[Batch]:  # noqa: ANN001
    batches = list(loader)
    assert batches and all(isinstance(b, Batch) for b in batches)
    return batches


# --- speech ------------------------------------------------------------------------------


def test_speech_batches_fill_the_seconds_budget(demo: SimpleNamespace) -> None:
    dm = SpeechDataModule(
        demo.tokenizer, train=demo.speech, val=demo.speech, max_batch_seconds=1.5, max_batch_size=3
    )
    assert (dm.modality, dm.task, dm.name) == ("audio", "transcribe", "speech")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    batches = _batches(loader)
    duration = dict(zip([f"wavs/{i}.wav" for i in range(6)], SECONDS, strict=True))
    assert sorted(i for b in batches for i in b.ids) == sorted(duration)
    for b in batches:
        assert b.modality == "audio" and b.inputs.shape[1] == 80 and len(b) <= 3
        assert len(b) * max(duration[i] for i in b.ids) <= 1.5
        assert b.prefix[0].tolist() == dm.tokenizer.prefix("transcribe")
    val = [b.ids for b in _batches(dm.val_dataloader())]
    assert val == [b.ids for b in _batches(dm.val_dataloader())]  # not shuffled
    assert dm.skipped == {"train": 0, "val": 0}


def test_speech_reads_mels_and_context_from_the_model(demo: SimpleNamespace) -> None:
    dm = SpeechDataModule(demo.tokenizer, train=demo.speech, max_batch_size=2)
    _attach(dm, ModelConfig(decoder=DecoderConfig(n_ctx=4), audio=AudioEncoderConfig(n_mels=128)))
    dm.setup("fit")
    with pytest.warns(UserWarning, match="max_target_tokens=4"):
        batches = _batches(dm.train_dataloader())
    assert all(b.inputs.shape[1] == 128 and b.tokens.shape[1] <= 4 for b in batches)
    too_long = SpeechDataModule(demo.tokenizer, train=demo.speech, max_target_tokens=10)
    _attach(too_long, ModelConfig(decoder=DecoderConfig(n_ctx=4), audio=AudioEncoderConfig()))
    with pytest.raises(ValueError, match="max_target_tokens: 10 is more than the model's n_ctx"):
        too_long.train_dataloader()
    _attach(too_long, ModelConfig())  # no audio encoder
    with pytest.raises(ValueError, match="no audio encoder"):
        too_long.train_dataloader()


def test_librispeech_splits_are_joined(tmp_path: Path, demo: SimpleNamespace) -> None:
    for split, speaker in (("train-a", "1"), ("train-b", "2")):
        chapter = tmp_path / split / speaker / "10"
        _wav(chapter / f"{speaker}-10-0000.flac", 0.4)
        _wav(chapter / f"{speaker}-10-0001.flac", 0.6)
        lines = f"{speaker}-10-0000 HELLO THERE\n{speaker}-10-0001 GOOD BYE\n"
        (chapter / f"{speaker}-10.trans.txt").write_text(lines)
    dm = SpeechDataModule(
        demo.tokenizer,
        train=["train-a", "train-b"],
        test="train-b",
        format="librispeech",
        root=str(tmp_path),
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 4 and len(dm.datasets["train"].costs()) == 4
    assert {i for b in _batches(dm.train_dataloader()) for i in b.ids} == {
        "1-10-0000",
        "1-10-0001",
        "2-10-0000",
        "2-10-0001",
    }
    with pytest.raises(ValueError, match="root: format='librispeech' needs"):
        SpeechDataModule(demo.tokenizer, train="train-a", format="librispeech")
    with pytest.raises(ValueError, match="root: only used with format='librispeech'"):
        SpeechDataModule(demo.tokenizer, train=demo.speech, root=str(tmp_path))


# --- captions ----------------------------------------------------------------------------


def test_caption_image_size_comes_from_the_model(demo: SimpleNamespace) -> None:
    train = str(demo.shapes / "train.jsonl")
    dm = CaptionDataModule(demo.tokenizer, train=train, batch_size=3)
    assert (dm.modality, dm.task) == ("image", "caption")
    with pytest.raises(ValueError, match="image_size is not set"):
        dm.setup("fit")
    image = ImageEncoderConfig(image_size=32, patch_size=16, image_mean=(0.1, 0.2, 0.3))
    _attach(dm, ModelConfig(image=image))
    dm.setup("fit")
    batches = _batches(dm.train_dataloader())
    assert all(b.inputs.shape[1:] == (3, 32, 32) and len(b) <= 3 for b in batches)
    assert sum(len(b) for b in batches) == 8

    alone = CaptionDataModule(demo.tokenizer, train=train, image_size=16)
    alone.setup("fit")
    assert _batches(alone.train_dataloader())[0].inputs.shape[-2:] == (16, 16)
    _attach(alone, ModelConfig(image=image))
    with pytest.raises(ValueError, match=r"image_size: 16 differs from the model's"):
        alone.setup("fit")
    same = CaptionDataModule(demo.tokenizer, train=train, image_size=[32, 32])
    same.setup("fit")
    before = same.datasets["train"]
    _attach(same, ModelConfig(image=image))  # built again with the model's mean
    assert same.dataset("train") is not before
    assert same.image_settings() == ((32, 32), (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="augment: expected one of"):
        CaptionDataModule(demo.tokenizer, train=train, augment=False)


def test_caption_coco_layout(tmp_path: Path, demo: SimpleNamespace) -> None:
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    images = sorted((demo.shapes / "images").glob("val_*.png"))
    for image in images:
        (tmp_path / "val2017" / image.name).write_bytes(image.read_bytes())
    coco = {
        "images": [{"id": i, "file_name": p.name} for i, p in enumerate(images)],
        "annotations": [{"image_id": i, "caption": f"shape {i}"} for i in range(len(images))],
    }
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(coco))
    dm = CaptionDataModule(
        demo.tokenizer,
        val="val2017",
        format="coco",
        root=str(tmp_path),
        image_size=16,
        batch_size=2,
    )
    dm.setup("validate")
    batches = _batches(dm.val_dataloader())
    assert sorted(i for b in batches for i in b.ids) == [str(i) for i in range(len(images))]


# --- text --------------------------------------------------------------------------------


def test_text_pairs_from_jsonl_and_tsv(tmp_path: Path, demo: SimpleNamespace) -> None:
    source_tok = tmp_path / "source.json"
    train_bpe([f"source {w}" for w in WORDS], 270).save(source_tok)
    dm = TextDataModule(
        demo.tokenizer,
        train=demo.text_train,
        val=demo.text_val,
        source_tokenizer=str(source_tok),
        max_batch_size=4,
    )
    assert (dm.modality, dm.task) == ("text", "translate")
    dm.setup("fit")
    train, val = _batches(dm.train_dataloader()), _batches(dm.val_dataloader())
    assert sum(map(len, train)) == sum(map(len, val)) == len(WORDS)
    first = train[0]
    assert first.modality == "text" and first.inputs.dtype == torch.long
    row = first.inputs[0, : int(first.lengths[0])].tolist()
    source = next(s for s in ("source " + w for w in WORDS) if dm.source_tokenizer.decode(row) == s)
    assert row == dm.source_tokenizer.encode(source) + [dm.source_tokenizer.eos_id]
    small = TextDataModule(demo.tokenizer, train=demo.text_train, source_tokenizer=str(source_tok))
    model = ModelConfig(text=TextEncoderConfig(vocab_size=100))
    _attach(small, model)
    with pytest.raises(ValueError, match="more than the text encoder's vocab_size=100"):
        small.train_dataloader()


# --- missing splits, skipped entries ------------------------------------------------------


def test_missing_split_names_the_init_arg(demo: SimpleNamespace) -> None:
    dm = SpeechDataModule(demo.tokenizer, train=demo.speech)
    with pytest.raises(ValueError, match=r"no 'val' data; set `val` .*trainer.validate"):
        dm.setup("validate")
    with pytest.raises(ValueError, match=r"set `test`"):
        dm.test_dataloader()
    with pytest.raises(ValueError, match=r"set `train`"):
        SpeechDataModule(demo.tokenizer, val=demo.speech).setup("fit")
    _attach(dm, None, fn="fit")
    dm.setup("fit")  # fit without validation
    assert dm.val_dataloader() == [] and dm.names("val") == []
    with pytest.raises(ValueError, match="no task token for 'dictate'"):
        SpeechDataModule(demo.tokenizer, train=demo.speech, task="dictate")


def test_skip_bad_counts(tmp_path: Path, demo: SimpleNamespace, caplog) -> None:  # noqa: ANN001
    rows = Path(demo.speech).read_text().splitlines()
    bad = {"audio_filepath": "wavs/missing.wav", "duration": 1.0, "text": "gone"}
    manifest = _jsonl(Path(demo.speech).parent / "bad.jsonl", [*rows, bad, "{not json"])
    with pytest.raises(DataError, match="line 7"):
        SpeechDataModule(demo.tokenizer, train=manifest).setup("fit")
    dm = SpeechDataModule(demo.tokenizer, train=manifest, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="mmseq.data.modules.base"):
        dm.setup("fit")
    assert dm.skipped == {"train": 2} and len(dm.datasets["train"]) == 6
    assert "'train' split: 2 bad entries skipped (skip_bad=True), 6 kept" in caplog.text


# --- multi-task --------------------------------------------------------------------------


def _multitask(demo: SimpleNamespace, tokenizer: str | None = None) -> MultiTaskDataModule:
    return MultiTaskDataModule(
        tokenizer=demo.tokenizer if tokenizer is None else tokenizer,
        speech=SpeechDataModule(train=demo.speech, val=demo.speech, max_batch_size=2),
        caption=CaptionDataModule(
            train=str(demo.shapes / "train.jsonl"), image_size=16, batch_size=4
        ),
        text=TextDataModule(train=demo.text_train, val=demo.text_val, max_batch_size=3),
    )


def test_multitask_combines_training_and_lists_evaluation(demo: SimpleNamespace) -> None:
    dm = _multitask(demo)
    assert dm.tasks == {"speech": "transcribe", "caption": "caption", "text": "translate"}
    assert all(part.tokenizer is dm.tokenizer for part in dm.parts.values())
    dm.setup("fit")
    train = dm.train_dataloader()
    assert isinstance(train, CombinedLoader)
    steps = [batch for batch, _, _ in iter(train)]
    assert len(steps) == max(len(dl) for dl in train.flattened)  # max_size_cycle
    for step in steps:
        assert set(step) == {"speech", "caption", "text"}
        assert [b.modality for b in step.values()] == ["audio", "image", "text"]
    val = dm.val_dataloader()
    assert dm.names("val") == ["speech", "text"] and len(val) == 2
    assert [_batches(dl)[0].modality for dl in val] == ["audio", "text"]
    with pytest.raises(ValueError, match="set speech.test or caption.test or text.test"):
        dm.setup("test")


def test_multitask_needs_one_tokenizer(tmp_path: Path, demo: SimpleNamespace) -> None:
    other = tmp_path / "other.json"
    train_bpe(WORDS, 280).save(other)
    with pytest.raises(ValueError, match=r"speech.tokenizer .* differs from tokenizer"):
        MultiTaskDataModule(demo.tokenizer, speech=SpeechDataModule(str(other), train="x"))
    with pytest.raises(ValueError, match="tokenizer is not set"):
        MultiTaskDataModule(speech=SpeechDataModule(train="x"))


# --- configuration -----------------------------------------------------------------------


def test_yaml_builds_the_modules(demo: SimpleNamespace) -> None:
    parser = ArgumentParser()
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    single = f"""
data:
  class_path: mmseq.data.modules.SpeechDataModule
  init_args:
    tokenizer: {demo.tokenizer}
    train: [{demo.speech}, {demo.speech}]
    max_batch_seconds: 60
    max_batch_size: null
"""
    dm = parser.instantiate(parser.parse_string(single)).data
    assert isinstance(dm, SpeechDataModule) and dm.max_batch_size is None
    assert dm.sources["train"] == [demo.speech, demo.speech] and dm.max_batch_seconds == 60
    multi = f"""
data:
  class_path: mmseq.data.modules.MultiTaskDataModule
  init_args:
    tokenizer: {demo.tokenizer}
    caption: {{train: {demo.shapes / "train.jsonl"}, image_size: [16, 32], batch_size: 2}}
    text: {{train: {demo.text_train}, task: translate}}
"""
    dm = parser.instantiate(parser.parse_string(multi)).data
    assert isinstance(dm, MultiTaskDataModule) and list(dm.parts) == ["caption", "text"]
    assert dm.hparams["caption"]["image_size"] == [16, 32]
    dm.setup("fit")
    step, _, _ = next(iter(dm.train_dataloader()))
    assert step["caption"].inputs.shape[-2:] == (16, 32)


# --- with a Trainer ----------------------------------------------------------------------


class _Recorder(pl.LightningModule):
    """Records what each hook receives; `.model.config` as Seq2SeqModule has it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.model = torch.nn.Linear(1, 1)
        self.model.config = config
        self.seen: list[tuple[str, object, int]] = []

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.seen.append(("train", {k: b.modality for k, b in batch.items()}, 0))
        return self.model.weight.sum() * 0

    def validation_step(self, batch, batch_idx, dataloader_idx=0):  # noqa: ANN001, ANN201
        self.seen.append(("val", batch.modality, dataloader_idx))

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_fit_with_a_trainer(demo: SimpleNamespace) -> None:
    dm = _multitask(demo)
    config = ModelConfig(
        audio=AudioEncoderConfig(n_mels=64),
        image=ImageEncoderConfig(16, 16),
        text=TextEncoderConfig(),
    )
    module = _Recorder(config)
    trainer = pl.Trainer(
        max_epochs=1,
        use_distributed_sampler=False,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    train = [modalities for stage, modalities, _ in module.seen if stage == "train"]
    assert train and all(
        m == {"speech": "audio", "caption": "image", "text": "text"} for m in train
    )
    val = {(modality, idx) for stage, modality, idx in module.seen if stage == "val"}
    assert val == {("audio", 0), ("text", 1)}
    alone = SpeechDataModule(demo.tokenizer, train=demo.speech)
    with pytest.raises(ValueError, match="set `val`"):
        trainer.validate(module, datamodule=alone)

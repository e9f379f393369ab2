"""Collation into `Batch`, the bucketed distributed sampler and its resume state, SpecAugment."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import tiny_block

from mmseq.data.augment import SpecAugment
from mmseq.data.collate import Batch, Seq2SeqCollator
from mmseq.data.sampler import BucketBatchSampler, ResumableDataLoader
from mmseq.encoders import AudioEncoder, AudioEncoderConfig
from mmseq.encoders.audio_features import LogMelSpectrogram
from mmseq.model import IGNORE_INDEX

PAD, BOS, EOS = 0, 1, 2
TASKS = ("transcribe", "caption", "translate")


class CharTokenizer:
    """The TextTokenizer interface on characters: <pad> 0, <s> 1, </s> 2, task tokens 3..5."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def encode(self, text: str) -> list[int]:
        return [6 + ord(c) - ord("a") for c in text]

    def prefix(self, task: str | None) -> list[int]:
        return [BOS] if task is None else [BOS, 3 + TASKS.index(task)]


def _speech(lengths: list[int], seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    texts = ["ab", "abcde", "a", "bcd"]
    return [
        {"id": f"u{i}", "audio": 0.1 * torch.randn(n, generator=g), "text": texts[i % 4]}
        for i, n in enumerate(lengths)
    ]


# ---- collation --------------------------------------------------------------------------


def test_target_layout_prefix_ignored_eos_present_pad_ignored() -> None:
    tok = CharTokenizer()
    batch = Seq2SeqCollator(tok, "audio", "transcribe")(_speech([3200, 4800]))
    # full = [<s>, <|transcribe|>, a, b, </s>] and [<s>, <|transcribe|>, a, b, c, d, e, </s>]
    assert batch.tokens.tolist() == [[1, 3, 6, 7, 0, 0, 0], [1, 3, 6, 7, 8, 9, 10]]
    assert batch.labels.tolist() == [
        [IGNORE_INDEX, 6, 7, EOS, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX, 6, 7, 8, 9, 10, EOS],
    ]
    assert batch.prefix.tolist() == [[1, 3], [1, 3]]
    assert batch.ids == ["u0", "u1"]
    assert batch.references == [["ab"], ["abcde"]]
    assert len(batch) == 2


def test_no_task_prefix_is_bos_and_every_label_is_trained() -> None:
    samples = [{"id": "x", "source": "ab", "text": "c"}]
    batch = Seq2SeqCollator(CharTokenizer(), "text", None)(samples)
    assert batch.tokens.tolist() == [[BOS, 8]]
    assert batch.labels.tolist() == [[8, EOS]]
    assert batch.prefix.tolist() == [[BOS]]


def test_audio_batch_padded_with_zeros_lengths_in_frames() -> None:
    samples = _speech([3200, 8000, 1999])
    batch = Seq2SeqCollator(CharTokenizer(), "audio", "transcribe")(samples)
    assert batch.modality == "audio"
    assert batch.inputs.shape == (3, 80, 50)
    assert batch.lengths.tolist() == [20, 50, 12]  # samples // 160
    assert (batch.inputs[0, :, 20:] == 0).all() and (batch.inputs[2, :, 12:] == 0).all()
    assert (batch.inputs[2, :, :12] != 0).any()
    # the same features the encoder's front-end makes from the padded waveform batch
    waves = torch.nn.utils.rnn.pad_sequence([s["audio"] for s in samples], batch_first=True)
    mel, frames = LogMelSpectrogram(80, pad_to_frames=None)(waves, torch.tensor([3200, 8000, 1999]))
    assert frames.tolist() == batch.lengths.tolist()
    torch.testing.assert_close(batch.inputs, mel, atol=1e-5, rtol=0)


def test_collated_mel_equals_audio_encoder_features_of_the_waveform() -> None:
    wave = _speech([12345], seed=3)[0]["audio"]
    batch = Seq2SeqCollator(CharTokenizer(), "audio", "transcribe")([{"audio": wave, "text": ""}])
    encoder = AudioEncoder(AudioEncoderConfig(n_layers=1, block=tiny_block(), pad_to_30s=False))
    mel, frames = encoder.features(wave[None])
    assert torch.equal(batch.inputs, mel)
    assert torch.equal(batch.lengths, frames)
    # and the encoder gives the same states from either input
    with torch.no_grad():
        from_wave = encoder(wave[None]).states
        from_mel = encoder(batch.inputs, batch.lengths).states
    torch.testing.assert_close(from_wave, from_mel)


def test_truncation_cuts_targets_warns_and_counts() -> None:
    collate = Seq2SeqCollator(CharTokenizer(), "audio", "transcribe", max_target_tokens=4)
    with pytest.warns(UserWarning, match=r"1 example\(s\).*max_target_tokens=4.*'u1'"):
        batch = collate(_speech([1600, 1600]))  # targets "ab" (L 4) and "abcde" (L 7)
    assert batch.tokens.shape == (2, 4)
    assert batch.labels[0].tolist() == [IGNORE_INDEX, 6, 7, EOS]  # fits: eos kept
    assert batch.labels[1].tolist() == [IGNORE_INDEX, 6, 7, 8]  # cut: no eos to learn
    assert collate.truncated["max_target_tokens"] == 1
    with pytest.warns(UserWarning, match="2 so far"):
        collate(_speech([1600, 1600]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 3rd does not warn: the 1st, 2nd, 4th, 8th... do
        collate(_speech([1600, 1600]))
    assert collate.truncated["max_target_tokens"] == 3


def test_text_sources_end_in_eos_padded_and_truncated() -> None:
    samples = [
        {"id": "a", "source": "abc", "text": "d"},
        {"id": "b", "source": "a", "text": "e"},
    ]
    batch = Seq2SeqCollator(CharTokenizer(), "text", "translate")(samples)
    assert batch.inputs.tolist() == [[6, 7, 8, EOS], [6, EOS, PAD, PAD]]
    assert batch.lengths.tolist() == [4, 2]
    with pytest.warns(UserWarning, match="max_source_tokens=3"):
        cut = Seq2SeqCollator(CharTokenizer(), "text", "translate", max_source_tokens=3)(samples)
    assert cut.inputs.tolist() == [[6, 7, EOS], [6, EOS, PAD]]


def test_image_batch_and_move() -> None:
    samples = [
        {"id": "i0", "image": torch.rand(3, 8, 8), "text": "ab", "references": ["ab", "ba"]},
        {"id": "i1", "image": torch.rand(3, 8, 8), "text": "c"},
    ]
    batch = Seq2SeqCollator(CharTokenizer(), "image", "caption")(samples)
    assert batch.inputs.shape == (2, 3, 8, 8) and batch.lengths is None
    assert batch.prefix.tolist() == [[1, 4], [1, 4]]
    assert batch.references == [["ab", "ba"], ["c"]]
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.inputs, batch.inputs)
    samples[1]["image"] = torch.rand(3, 8, 16)
    with pytest.raises(ValueError, match="'i1'.*one \\[3, H, W\\] size"):
        Seq2SeqCollator(CharTokenizer(), "image", "caption")(samples)


def test_collator_rejects_bad_input() -> None:
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="modality"):
        Seq2SeqCollator(tok, "video", None)
    with pytest.raises(ValueError, match="max_target_tokens"):
        Seq2SeqCollator(tok, "audio", "transcribe", max_target_tokens=1)
    collate = Seq2SeqCollator(tok, "audio", "transcribe")
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(KeyError, match="'u0'.*'audio'"):
        collate([{"id": "u0", "text": "a"}])
    with pytest.raises(ValueError, match="'u0'.*at least 160"):
        collate([{"id": "u0", "audio": torch.zeros(100), "text": "a"}])


# ---- sampler ----------------------------------------------------------------------------


def _costs(n: int = 300, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return (1 + 19 * torch.rand(n, generator=g)).tolist()  # 1..20 "seconds"


def test_batches_respect_the_padded_budget_and_cover_each_item_once() -> None:
    costs = _costs()
    sampler = BucketBatchSampler(costs, max_cost=60.0, max_batch_size=16)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert max(costs[i] for i in batch) * len(batch) <= 60.0
        assert len(batch) <= 16
        # bucketing: costs in a batch are within bucket_width of each other
        assert max(costs[i] for i in batch) < 1.1 * min(costs[i] for i in batch)
    assert sorted(i for b in batches for i in b) == list(range(len(costs)))
    padded = sum(max(costs[i] for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(costs)


def test_two_ranks_get_disjoint_shards_with_equal_counts() -> None:
    costs = _costs(101)
    ranks = [BucketBatchSampler(costs, 40.0, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == len(ranks[0])
    everything = ranks[0].epoch_batches()  # the batches of both ranks, interleaved
    assert shards[0] == everything[0::2] and shards[1] == everything[1::2]
    total = ranks[0]._total
    own = [[i for b in shard[: (total - r + 1) // 2] for i in b] for r, shard in enumerate(shards)]
    assert not set(own[0]) & set(own[1])  # only the padding batches repeat items
    assert sorted(own[0] + own[1]) == list(range(len(costs)))
    if total % 2:  # an odd count is padded with the epoch's first batch
        assert shards[1][-1] == everything[0]
    dropped = [
        BucketBatchSampler(costs, 40.0, num_replicas=2, rank=r, drop_last=True) for r in (0, 1)
    ]
    assert len(dropped[0]) == len(dropped[1]) == total // 2


def test_set_epoch_changes_the_order_deterministically() -> None:
    costs = _costs(120)
    a, b = BucketBatchSampler(costs, 50.0, seed=1), BucketBatchSampler(costs, 50.0, seed=1)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    a.set_epoch(0)
    assert list(a) == first
    assert len({len(list(BucketBatchSampler(costs, 50.0, seed=s))) for s in range(4)}) == 1


def test_unshuffled_order_is_increasing_cost_with_oversize_items_last() -> None:
    costs = [5.0, 1.0, 30.0, 2.0, 1.0]
    with pytest.warns(UserWarning, match="1 item\\(s\\) cost more than max_cost=10.*item 2"):
        sampler = BucketBatchSampler(costs, 10.0, shuffle=False, bucket_width=1.5)
    assert list(sampler) == [[1, 4, 3], [0], [2]]


def test_state_dict_resume_yields_the_remaining_batches() -> None:
    costs = _costs(150)
    sampler = BucketBatchSampler(costs, 30.0, seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    it = iter(sampler)
    seen = [next(it) for _ in range(7)]
    state = sampler.state_dict()
    assert state["epoch"] == 3 and state["batches_yielded"] == 7
    fresh = BucketBatchSampler(costs, 30.0, seed=2)
    fresh.load_state_dict(state)
    fresh.set_epoch(3)  # Lightning sets the same epoch again after loading
    assert seen + list(fresh) == full
    fresh.set_epoch(4)
    assert len(list(fresh)) == len(fresh)  # the next epoch is whole again
    finished = {**state, "batches_yielded": len(fresh)}
    fresh.load_state_dict(finished)  # a finished epoch resumes at the start of the next
    assert fresh.epoch == 4 and len(list(fresh)) == len(fresh)
    with pytest.raises(ValueError, match="saved num_replicas=1 but this sampler has 2"):
        BucketBatchSampler(costs, 30.0, seed=2, num_replicas=2, rank=0).load_state_dict(state)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_state_counts_delivered_batches_not_prefetched(workers: int) -> None:
    costs = _costs(60)
    sampler = BucketBatchSampler(costs, 30.0, seed=4)
    loader = ResumableDataLoader(list(range(60)), sampler, num_workers=workers)
    full = [b.tolist() for b in loader]
    it = iter(loader)
    seen = [next(it).tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state["batches_yielded"] == 3
    if workers:  # they asked the sampler for more batches than were delivered
        assert sampler.state_dict()["batches_yielded"] > 3
    del it
    resumed = ResumableDataLoader(list(range(60)), BucketBatchSampler(costs, 30.0, seed=4))
    resumed.load_state_dict(state)
    assert seen + [b.tolist() for b in resumed] == full
    assert resumed.batch_sampler.sampler is resumed.batch_sampler  # for Lightning's set_epoch


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="costs: expected a non-empty"):
        BucketBatchSampler([], 10.0)
    with pytest.raises(ValueError, match="max_cost"):
        BucketBatchSampler([1.0], 0)
    with pytest.raises(ValueError, match="item 1 has cost nan"):
        BucketBatchSampler([1.0, math.nan], 10.0)
    with pytest.raises(ValueError, match="item 0 has cost -1"):
        BucketBatchSampler([-1.0], 10.0)
    with pytest.raises(ValueError, match="max_batch_size"):
        BucketBatchSampler([1.0], 10.0, max_batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1.0], 10.0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="bucket_width"):
        BucketBatchSampler([1.0], 10.0, bucket_width=0)
    with pytest.raises(ValueError, match="drop_last: 1 batches"):
        BucketBatchSampler([1.0], 10.0, num_replicas=2, rank=0, drop_last=True)
    with pytest.raises(TypeError, match="BucketBatchSampler"):
        ResumableDataLoader([1], torch.utils.data.BatchSampler(range(1), 1, False))


# ---- SpecAugment ------------------------------------------------------------------------


def test_specaugment_masks_only_valid_frames_per_example() -> None:
    mel = torch.randn(4, 80, 200)
    lengths = torch.tensor([200, 120, 50, 0])
    augment = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=0.2)
    torch.manual_seed(0)
    out = augment(mel, lengths)
    changed = out != mel
    for i, n in enumerate(lengths.tolist()):
        assert not changed[i, :, n:].any()  # padding untouched
        if n:
            assert changed[i, :, :n].any()
            masked = out[i, :, :n][changed[i, :, :n]]
            torch.testing.assert_close(masked, torch.full_like(masked, float(mel[i, :, :n].mean())))
    assert not torch.equal(changed[0, :, :50], changed[1, :, :50])  # independent per example
    torch.manual_seed(0)
    assert torch.equal(augment(mel, lengths), out)
    assert torch.equal(mel, mel.clone())  # the input is not modified in place


def test_specaugment_widths_and_config() -> None:
    mel = torch.zeros(2, 10, 100)
    torch.manual_seed(1)
    out = SpecAugment(freq_masks=0, time_masks=1, time_width=30, mask_value=1.0)(mel)
    widths = out.sum(1).gt(0).sum(-1)  # masked frames per clip
    assert (widths < 30).all() and (widths > 0).any()
    assert SpecAugment(time_width=0.05).time_mask_param(400) == 20
    assert torch.equal(SpecAugment(freq_masks=0, time_masks=0)(mel), mel)
    with pytest.raises(ValueError, match="time_width"):
        SpecAugment(time_width=2.5)
    with pytest.raises(ValueError, match="freq_masks"):
        SpecAugment(freq_masks=-1)
    with pytest.raises(ValueError, match="lengths"):
        SpecAugment()(mel, torch.tensor([101, 5]))


# ---- Lightning resume -------------------------------------------------------------------

LIGHTNING_COSTS = _costs(40, seed=7)


def _fit(root, ckpt_path=None):  # noqa: ANN001, ANN202 - test helper
    """Two epochs over 40 items with 2 workers; returns the (epoch, batch) sequence trained on."""
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
            self.seen.append((self.current_epoch, batch.tolist()))
            return self.w.sum()

        def configure_optimizers(self):  # noqa: ANN201
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> ResumableDataLoader:
            sampler = BucketBatchSampler(LIGHTNING_COSTS, 30.0, seed=1)
            return ResumableDataLoader(list(range(40)), sampler, num_workers=2)

    checkpoints = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=root, filename="{step}", save_top_k=-1, every_n_train_steps=5
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=root,
        callbacks=[
            checkpoints,
            L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "epochs", save_top_k=-1),
        ],
    )
    module = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer.fit(module, ckpt_path=ckpt_path)
    return module.seen


def test_lightning_resumes_mid_epoch_and_after_an_epoch_with_the_same_batches(tmp_path) -> None:  # noqa: ANN001
    full = _fit(tmp_path / "full")
    sampler = BucketBatchSampler(LIGHTNING_COSTS, 30.0, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)  # Lightning reached the sampler's set_epoch
    assert full == [(0, b) for b in epoch0] + [(1, b) for b in sampler]
    assert _fit(tmp_path / "mid", tmp_path / "full" / "step=5.ckpt") == full[5:]
    # an end-of-epoch checkpoint: Lightning does not load loader state, the next epoch is 1
    (end,) = (tmp_path / "full" / "epochs").glob("epoch=0*.ckpt")
    assert _fit(tmp_path / "end", end) == full[len(epoch0) :]

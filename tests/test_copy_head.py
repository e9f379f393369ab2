"""The decoder's pointer-generator copy head (`decoder.copy`, mmseq.nn.copy) on tiny random
models: its output is a normalised distribution that copies source tokens and never padding,
cached decoding and beams agree with the full forward pass, it learns to copy where the same
model without it does not, and it is saved, loaded and refused where it has no equivalent."""

from __future__ import annotations

import pytest
import torch
from conftest import time_limit, tiny_block

from mmseq.checkpoint import (
    MODEL_PREFIX,
    TrainedModel,
    checkpoint_entry,
    load_trained,
    save_folder,
    write_checkpoint,
)
from mmseq.decoder import DecoderConfig
from mmseq.encoders import TextEncoderConfig
from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig, generate
from mmseq.model import EncoderDecoder, ModelConfig, shift_right
from mmseq.nn.copy import CopyHead, SourceStates
from mmseq.text.hf import HFModel, save_hf

BOS, EOS, PAD = 1, 2, 0


def copy_config(vocab: int = 40, copy: bool = True, layers: int = 2) -> ModelConfig:
    return ModelConfig(
        decoder=DecoderConfig(
            vocab_size=vocab, n_ctx=24, n_layers=layers, block=tiny_block(), copy=copy
        ),
        text=TextEncoderConfig(vocab_size=vocab, n_ctx=24, n_layers=layers, block=tiny_block()),
        share_embeddings=True,
    )


def copy_model(seed: int = 0, vocab: int = 40) -> EncoderDecoder:
    torch.manual_seed(seed)
    return EncoderDecoder(copy_config(vocab)).eval()


def padded_sources(seed: int = 1, vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sources of 9, 6 and 4 tokens (no pad id inside), right-padded with PAD."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 6, 4])
    ids = torch.randint(3, vocab, (3, 9), generator=g)
    ids[torch.arange(9)[None] >= lengths[:, None]] = PAD
    return ids, lengths


@torch.no_grad()
def test_output_is_a_normalised_distribution() -> None:
    model = copy_model()
    ids, lengths = padded_sources()
    tokens = torch.randint(3, 40, (3, 7))
    logp = model("text", ids, tokens, lengths).logits
    assert logp.dtype == torch.float32 and logp.isfinite().all()
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 7))
    # bf16 autocast: the mixture is still computed, and normalised, in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model("text", ids, tokens, lengths).logits
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.exp().sum(-1), torch.ones(3, 7))
    assert (low.exp() - logp.exp()).abs().max() < 0.05


@torch.no_grad()
def test_pure_copying_spreads_the_source_positions_and_never_padding() -> None:
    """p_gen ~ 0 and a query of zeros (uniform copy attention): p(w) is the share of the
    source's real positions that hold w; the padding (PAD, only after the lengths) gets
    nothing, nor does a token absent from the source."""
    torch.manual_seed(0)
    head = CopyHead(d_model=16, head_dim=8)
    torch.nn.init.zeros_(head.q.weight)
    torch.nn.init.zeros_(head.q.bias)
    torch.nn.init.constant_(head.gate.bias, -30.0)
    ids = torch.tensor([[5, 7, 5, 9, PAD, PAD], [11, 12, 13, 14, 15, 11]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    memory = head.memory(torch.randn(2, 6, 16), ids, mask)
    vocab_logits = torch.randn(2, 3, 20) * 5
    p = head(torch.randn(2, 3, 16), vocab_logits, memory).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3))
    expected = torch.zeros(2, 20)
    expected[0, [5, 7, 9]] = torch.tensor([0.5, 0.25, 0.25])
    expected[1, [11, 12, 13, 14, 15]] = torch.tensor([2, 1, 1, 1, 1]) / 6
    torch.testing.assert_close(p, expected[:, None].expand(2, 3, 20), atol=1e-6, rtol=0)
    assert p[0, :, PAD].max() < 1e-9


@torch.no_grad()
def test_a_token_only_in_the_source_is_copied() -> None:
    """A token the generator all but rules out (logit -1e4) gets its probability from the
    source positions that hold it: (1 - p_gen) x their attention."""
    torch.manual_seed(0)
    head = CopyHead(d_model=16, head_dim=8)
    ids = torch.tensor([[4, 6, 8, 6]])
    memory = head.memory(torch.randn(1, 4, 16), ids, None)
    vocab_logits = torch.zeros(1, 2, 12)
    vocab_logits[..., 6] = -1e4
    vocab_logits[..., 10] = -1e4  # ruled out and not in the source
    p = head(torch.randn(1, 2, 16), vocab_logits, memory).exp()
    assert (p[..., 6] > 0.05).all()  # random head: roughly (1 - p_gen) x 2/4
    assert (p[..., 10] < 1e-30).all()


@torch.no_grad()
def test_padding_tokens_of_the_source_change_nothing() -> None:
    model = copy_model()
    ids, lengths = padded_sources()
    tokens = torch.randint(3, 40, (3, 5))
    before = model("text", ids, tokens, lengths).logits
    other = ids.clone()
    other[torch.arange(9)[None] >= lengths[:, None]] = 17  # a real token where padded
    torch.testing.assert_close(model("text", other, tokens, lengths).logits, before)


@torch.no_grad()
@pytest.mark.parametrize("repeat", [1, 3])
def test_cached_steps_equal_the_full_forward(repeat: int) -> None:
    """`repeat` rows per input (beams) with different tokens each, one token per step, against
    the full forward pass of each row with its own copy of its input; then input 1 leaves
    the cache (a finished input) and the others go on."""
    model = copy_model()
    ids, lengths = padded_sources()
    enc = model.encode("text", ids, lengths)
    tokens = torch.randint(3, 40, (3 * repeat, 8))
    rows = torch.arange(3).repeat_interleave(repeat)
    context = SourceStates.wrap(enc.states[rows], ids[rows])
    full = model.decoder(tokens, context, enc.mask[rows])
    cache = model.decoder.new_cache(enc.states, enc.mask, max_len=8, repeat=repeat)
    steps = [model.decoder(tokens[:, :3], cache=cache)]  # a prefix of 3, then one at a time
    steps += [model.decoder(tokens[:, i : i + 1], cache=cache) for i in range(3, 5)]
    torch.testing.assert_close(torch.cat(steps, 1), full[:, :5], atol=1e-5, rtol=1e-5)
    keep = (rows != 1).nonzero().squeeze(1)
    cache.reorder(keep)
    steps = [model.decoder(tokens[keep, i : i + 1], cache=cache) for i in range(5, 8)]
    torch.testing.assert_close(torch.cat(steps, 1), full[keep, 5:], atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_generation_equals_one_input_at_a_time(num_beams: int) -> None:
    model = copy_model(seed=3)
    ids, lengths = padded_sources(seed=4)
    config = GenerationConfig(
        max_new_tokens=8, num_beams=num_beams, eos_token_id=EOS, pad_token_id=PAD
    )
    batched = generate(model, "text", ids, [BOS], config, lengths)
    for b in range(3):
        n = int(lengths[b])
        alone = generate(model, "text", ids[b : b + 1, :n], [BOS], config, lengths[b : b + 1])
        width = alone.sequences.shape[-1]
        assert batched.sequences[b, :, :width].tolist() == alone.sequences[0].tolist()
        torch.testing.assert_close(batched.scores[b], alone.scores[0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_greedy_generation_follows_the_full_forward() -> None:
    """Each greedy token is the argmax of the full forward pass over the tokens so far."""
    model = copy_model(seed=5)
    ids, lengths = padded_sources(seed=6)
    config = GenerationConfig(max_new_tokens=6, eos_token_id=None, pad_token_id=PAD)
    out = generate(model, "text", ids, [BOS], config, lengths).sequences[:, 0]
    logp = model("text", ids, out[:, :-1], lengths).logits
    assert logp.argmax(-1).tolist() == out[:, 1:].tolist()


def test_a_tiny_copy_model_learns_to_copy_where_the_plain_one_does_not() -> None:
    """Target: the first 4 of 10 random source tokens (fresh ones every step, so that only
    copying, not memorising, brings the loss down). 80 steps of a 1+1-layer, 32-wide model."""

    def train(copy: bool) -> float:
        torch.manual_seed(0)
        model = EncoderDecoder(copy_config(vocab=200, copy=copy, layers=1))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)

        def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            source = torch.randint(3, 200, (n, 10), generator=g)
            return source, torch.cat([source[:, :4], torch.full((n, 1), EOS)], 1)

        for _ in range(80):
            source, labels = batch(32)
            loss = model("text", source, shift_right(labels, BOS, PAD), labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        source, labels = batch(256)
        with torch.no_grad():
            logp = model.eval()("text", source, shift_right(labels, BOS, PAD)).logits
        return float((logp.argmax(-1) == labels).float().mean())

    with time_limit(60):
        copied, plain = train(copy=True), train(copy=False)
    assert copied > 0.95
    assert plain < copied - 0.2


def test_copy_without_a_shared_vocabulary_is_refused() -> None:
    config = copy_config()
    with pytest.raises(ValueError, match=r"decoder\.copy.*share_embeddings"):
        ModelConfig(decoder=config.decoder, text=config.text, share_embeddings=False)
    with pytest.raises(ValueError, match=r"decoder\.copy.*share_embeddings"):
        ModelConfig.from_dict({"decoder": {"copy": True}, "text": {}})


def test_the_decoder_refuses_states_without_their_source_ids() -> None:
    model = copy_model()
    ids, lengths = padded_sources()
    enc = model.encode("text", ids, lengths)
    plain = enc.states.detach().clone()  # a plain tensor: the ids are lost
    with pytest.raises(ValueError, match=r"decoder\.copy: .*source token ids"):
        model.decoder(torch.tensor([[BOS]] * 3), plain, enc.mask)
    with pytest.raises(ValueError, match=r"decoder\.copy: .*source token ids"):
        model.decoder.new_cache(plain, enc.mask)


def test_gradients_reach_the_copy_head_and_stay_finite() -> None:
    model = EncoderDecoder(copy_config()).train()
    ids, lengths = padded_sources()
    labels = torch.randint(3, 40, (3, 6))
    out = model("text", ids, shift_right(labels, BOS, PAD), lengths, labels, label_smoothing=0.1)
    out.loss.backward()
    head = model.decoder.copy_head
    for p in [*head.parameters(), model.decoder.token_embedding.weight]:
        assert p.grad is not None and p.grad.isfinite().all() and p.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    from mmseq.data.tokenizer import train_unigram

    texts = [f"tool number {i} for files and more of {i % 7}" for i in range(60)]
    tokenizer = train_unigram(texts, 400, tasks=("summarize",))
    model = copy_model(vocab=tokenizer.vocab_size)
    path = tmp_path_factory.mktemp("copy") / "copy.ckpt"
    entry = checkpoint_entry(model.config, tokenizer, {"text": "summarize"})
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    write_checkpoint({"mmseq": entry, "state_dict": state}, path)
    return TrainedModel(model, tokenizer, {"text": "summarize"}, path)


@torch.no_grad()
def test_checkpoint_and_folder_round_trip(trained: TrainedModel, tmp_path) -> None:
    ids, lengths = padded_sources()
    tokens = torch.randint(3, 40, (3, 5))
    expected = trained.model("text", ids, tokens, lengths).logits
    folder = save_folder(trained, tmp_path / "folder")
    for path in (trained.source, folder):
        loaded = load_trained(path)
        assert loaded.model.config.decoder.copy
        torch.testing.assert_close(loaded.model("text", ids, tokens, lengths).logits, expected)


def test_summarize_command_runs_a_copy_checkpoint(trained: TrainedModel, tmp_path, capsys) -> None:
    from mmseq.cli import main

    doc = tmp_path / "doc.txt"
    doc.write_text("tool 3\n")
    with time_limit(60):
        assert main(["summarize", "--model", str(trained.source), str(doc), "-q"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # one summary (a random model's) per line


def test_hugging_face_export_is_refused(trained: TrainedModel, tmp_path) -> None:
    from mmseq.text.export import export_hf

    with pytest.raises(CheckpointError, match="Hugging Face"):
        export_hf(trained, tmp_path / "hf")
    # a copy head added to an imported model while fine-tuning: no architecture to write
    imported = HFModel(trained.model, None, {"model_type": "t5"}, {}, trained.source)
    with pytest.raises(CheckpointError, match=r"copy head \(decoder\.copy\)"):
        save_hf(imported, tmp_path / "hf2")
    assert not (tmp_path / "hf2").exists()


@torch.no_grad()
@pytest.mark.parametrize("compute_type", ["bfloat16", "int8"])
def test_inference_compute_types_keep_a_normalised_mixture(compute_type: str) -> None:
    from mmseq.precision import apply_compute_type

    ids, lengths = padded_sources()
    tokens = torch.randint(3, 40, (3, 5))
    expected = copy_model()("text", ids, tokens, lengths).logits.exp()
    model = apply_compute_type(copy_model(), compute_type)
    p = model("text", ids, tokens, lengths).logits.exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 5))
    assert (p - expected).abs().max() < 0.05


def test_the_mixture_equals_the_dense_formula_and_its_gradients() -> None:
    """The head mixes only the source's columns; against log(p_gen softmax + (1 - p_gen)
    scatter_add(attention, ids)) over the whole vocabulary, with repeated tokens, padding and
    3 rows per input (beams)."""
    torch.manual_seed(0)
    head = CopyHead(d_model=16, head_dim=8)
    ids = torch.randint(3, 9, (3, 7))  # 6 token kinds over 7 positions: repeats
    mask = torch.arange(7)[None] < torch.tensor([7, 5, 3])[:, None]
    ids[~mask] = PAD
    context = torch.randn(3, 7, 16, requires_grad=True)
    x = torch.randn(9, 4, 16, requires_grad=True)
    vocab_logits = (torch.randn(9, 4, 12) * 3).requires_grad_()

    def dense() -> torch.Tensor:
        keys = head.k(context)
        scores = head.q(x).reshape(3, 12, 8) @ keys.transpose(1, 2) * head.scale
        attention = scores.masked_fill(~mask[:, None], -float("inf")).softmax(-1)
        gate = head.gate(torch.cat([x.reshape(3, 12, 16), attention @ context], -1))
        index = ids[:, None].expand(-1, 12, -1)
        copied = torch.zeros(3, 12, 12).scatter_add(-1, index, attention)
        generated = vocab_logits.reshape(3, 12, 12).softmax(-1)
        p = torch.sigmoid(gate) * generated + torch.sigmoid(-gate) * copied
        return p.log().reshape(9, 4, 12)

    weights = torch.randn(9, 4, 12)
    inputs = [x, vocab_logits, context, *head.parameters()]
    expected = dense()
    expected_grads = torch.autograd.grad((expected * weights).sum(), inputs)
    got = head(x, vocab_logits, head.memory(context, ids, mask))
    grads = torch.autograd.grad((got * weights).sum(), inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)

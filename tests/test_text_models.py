"""T5, T5 v1.1, mT5, BART, mBART, Marian and Pegasus through mmseq's importers, against
transformers on tiny random models saved to disk: encoder states and logits on a padded batch,
greedy and beam-4 tokens with each checkpoint's generation config, the export read back by
transformers, and the importers' errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from text_models import FAMILIES, load_reference, make_hf_model, pad_of, random_sources

from mmseq.errors import CheckpointError
from mmseq.generation import GenerationConfig, decode
from mmseq.text.hf import load_hf, save_hf

ALL = sorted(FAMILIES)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_text")
    return {f: make_hf_model(f, root / f) for f in ALL}


def _padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lengths


@pytest.mark.parametrize("family", ALL)
@torch.no_grad()
def test_encoder_states_and_logits_equal_transformers(family: str, folders) -> None:
    hf = load_reference(folders[family])
    model = load_hf(folders[family]).model
    rows = random_sources(6, family, seed=1)
    ids, lengths = _padded(rows, pad_of(family))
    mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
    decoder_ids = torch.randint(2, 90, (len(rows), 7))
    ref = hf(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_ids)
    enc = model.encode("text", ids, lengths)
    torch.testing.assert_close(
        enc.states[mask], ref.encoder_last_hidden_state[mask], atol=1e-4, rtol=0
    )
    logits = model.decoder(decoder_ids, enc.states, enc.mask)
    assert logits.abs().max() > 1.0  # not a degenerate model
    # rtol for the boosted EOS logits (~30, see text_models.EOS_BOOST): fp32 rounding there
    torch.testing.assert_close(logits, ref.logits, atol=1e-4, rtol=1e-5)


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    """The generated tokens (after the start token, which is EOS for BART) up to EOS."""
    tokens = tokens[1:]
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@pytest.mark.parametrize("num_beams", [1, 4])
@pytest.mark.parametrize("family", ALL)
@torch.no_grad()
def test_generate_equals_transformers(family: str, num_beams: int, folders) -> None:
    """32 inputs of mixed lengths decoded in one padded batch by mmseq, one at a time by
    transformers (its own batched beams can differ from unbatched ones, transformers#25921)."""
    imported = load_hf(folders[family])
    hf = load_reference(folders[family])
    rows = random_sources(32, family, seed=2)
    config = GenerationConfig.from_hf(imported.generation, num_beams=num_beams)
    eos = config.eos_token_id
    ids, lengths = _padded(rows, pad_of(family))
    enc = imported.model.encode("text", ids, lengths)
    start = imported.decoder_start_token_id
    prefix = torch.full((len(rows), 1), start)
    out = decode(imported.model.decoder, enc.states, enc.mask, prefix, config)
    ours = [_until_eos(s[0].tolist(), eos) for s in out.sequences]
    theirs = [
        _until_eos(hf.generate(input_ids=torch.tensor([r]), num_beams=num_beams)[0].tolist(), eos)
        for r in rows
    ]
    if num_beams == 1:
        lengths_seen = {len(t) for t in theirs}
        assert len(lengths_seen) >= 2, "the model should stop early for some inputs, not others"
    assert ours == theirs


@pytest.mark.parametrize("family", ALL)
@torch.no_grad()
def test_export_loads_in_transformers_with_the_same_logits(family: str, folders, tmp_path) -> None:
    imported = load_hf(folders[family])
    with torch.no_grad():  # a change that the export must carry (as after fine-tuning)
        imported.model.decoder.blocks[0].mlp.fc1.weight.mul_(1.5)
    out = save_hf(imported, tmp_path / "export")
    hf = load_reference(out)
    rows = random_sources(4, family, seed=3)
    ids, lengths = _padded(rows, pad_of(family))
    mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
    decoder_ids = torch.randint(2, 90, (len(rows), 5))
    ref = hf(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_ids).logits
    enc = imported.model.encode("text", ids, lengths)
    # rtol: T5 v1.1's gelu_new and torch's tanh GELU round differently (~1e-7), which the
    # scaled-up layer carries to ~1e-4 on logits of ~15
    torch.testing.assert_close(
        imported.model.decoder(decoder_ids, enc.states, enc.mask), ref, atol=1e-4, rtol=1e-5
    )
    original = load_reference(folders[family])
    assert not torch.allclose(
        original(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_ids).logits,
        ref,
    )


@torch.no_grad()
def test_cached_decoding_equals_teacher_forcing(folders) -> None:
    """The fixed-size cache read under a mask (and T5's bias offset by the cache position)
    gives the logits of the uncached decoder, step by step."""
    for family in ("t5", "bart", "marian"):
        model = load_hf(folders[family]).model
        ids, lengths = _padded(random_sources(3, family, seed=4), pad_of(family))
        enc = model.encode("text", ids, lengths)
        tokens = torch.randint(2, 90, (3, 9))
        full = model.decoder(tokens, enc.states, enc.mask)
        cache = model.decoder.new_cache(enc.states, enc.mask, max_len=12)
        steps = [model.decoder(tokens[:, :4], cache=cache)]
        steps += [model.decoder(tokens[:, t : t + 1], cache=cache) for t in range(4, 9)]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_unsupported_model_type_names_the_supported_ones(folders, tmp_path) -> None:
    folder = tmp_path / "gpt"
    shutil.copytree(folders["bart"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match=r"model_type 'gpt2' is not supported.*bart.*t5"):
        load_hf(folder)


def test_missing_and_unexpected_tensors_are_listed(folders, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(folders["bart"], folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.encoder.layers.1.fc2.bias"]
    tensors["model.encoder.adapter.weight"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_hf(folder)
    message = str(err.value)
    assert "missing tensors ['encoder.layers.1.fc2.bias']" in message
    assert "unexpected tensors ['encoder.adapter.weight']" in message


def test_folder_errors_name_the_file(folders, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf(tmp_path)
    folder = tmp_path / "no_weights"
    folder.mkdir()
    shutil.copy(folders["t5"] / "config.json", folder)
    with pytest.raises(CheckpointError, match="no weights: expected model.safetensors or"):
        load_hf(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON"):
        load_hf(folder)


def test_pytorch_bin_weights_load_without_unpickling_code(folders, tmp_path) -> None:
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(folders["marian"], folder)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    a = load_hf(folder).model.state_dict()
    b = load_hf(folders["marian"]).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.save({"weights": tensors, "hook": print}, folder / "pytorch_model.bin")  # code
    with pytest.raises(CheckpointError, match="refused to load"):
        load_hf(folder)


def test_loading_for_inference_does_not_import_lightning(folders) -> None:
    code = (
        "import sys; from mmseq.text.hf import load_hf; from mmseq.checkpoint import load_trained;"
        f" load_hf({str(folders['t5'])!r});"
        " bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')];"
        " print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("family", ["t5", "bart"])
@torch.no_grad()
def test_a_decoding_step_compiles_once(family: str, folders) -> None:
    """The fixed-shape cache makes every one-token step the same graph: torch.compile (no
    dynamic shapes, no graph breaks) traces it once for all positions, with the eager logits."""
    from torch._dynamo.testing import CompileCounter

    model = load_hf(folders[family]).model
    decoder = model.decoder
    ids, lengths = _padded(random_sources(2, family, seed=5), pad_of(family))
    enc = model.encode("text", ids, lengths)
    counter = CompileCounter()
    step = torch.compile(decoder.cached_step, backend=counter, dynamic=False, fullgraph=True)
    compiled = decoder.new_cache(enc.states, enc.mask, max_len=12)
    eager = decoder.new_cache(enc.states, enc.mask, max_len=12)
    tokens = torch.full((2, 1), 3)
    for _ in range(10):
        ours = decoder.logits(step(tokens, compiled.claim(1), compiled))
        expected = decoder(tokens, cache=eager)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
        tokens = expected[:, -1].argmax(-1, keepdim=True)
    torch._dynamo.reset()
    assert counter.frame_count == 1

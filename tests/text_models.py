"""Tiny random Hugging Face text seq2seq models saved to disk, one per family mmseq imports.

Each is built by transformers from a config (nothing is downloaded), with norms, biases and the
final logits bias perturbed so that a mapping error cannot hide behind ones and zeros, and
initialised with a large std so that next-token distributions are peaked (greedy and beam
search then do not hinge on float rounding). Generation settings follow the real checkpoints
of each family (bart-large-cnn's n-gram rule and forced BOS, Marian's pad ban, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

VOCAB = 96
PAD_MARIAN = VOCAB - 1  # Marian's converter appends <pad> as the last id

_BART_SHAPE = {
    "vocab_size": VOCAB,
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 48,
    "max_position_embeddings": 64,
    "init_std": 0.25,
}
_T5_SHAPE = {
    "vocab_size": VOCAB,
    "d_model": 32,
    "d_kv": 8,
    "num_heads": 3,  # inner width 24 != d_model
    "d_ff": 64,
    "num_layers": 2,
    # num_decoder_layers != num_layers breaks transformers 5.24's generate (its cache has
    # num_layers entries: IndexError); the importer reads num_decoder_layers all the same
    "num_decoder_layers": 2,
    "initializer_factor": 1.5,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 20,
}

_T5_GENERATION = {
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
    "max_length": 16,
}

# family -> (transformers class, config class, config kwargs, generation_config.json)
FAMILIES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "t5": (
        "T5ForConditionalGeneration",
        "T5Config",
        {**_T5_SHAPE, "feed_forward_proj": "relu"},
        _T5_GENERATION,
    ),
    "t5-v1.1": (
        "T5ForConditionalGeneration",
        "T5Config",
        {**_T5_SHAPE, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
        _T5_GENERATION,
    ),
    "mt5": (
        "MT5ForConditionalGeneration",
        "MT5Config",
        {**_T5_SHAPE, "feed_forward_proj": "gated-gelu"},
        _T5_GENERATION,
    ),
    "bart": (
        "BartForConditionalGeneration",
        "BartConfig",
        {**_BART_SHAPE, "scale_embedding": True},
        {
            "bos_token_id": 0,
            "decoder_start_token_id": 2,
            "eos_token_id": 2,
            "pad_token_id": 1,
            "forced_bos_token_id": 0,
            "forced_eos_token_id": 2,
            "no_repeat_ngram_size": 3,
            "min_length": 5,
            "length_penalty": 2.0,
            "early_stopping": True,
            "max_length": 16,
        },
    ),
    "mbart": (
        "MBartForConditionalGeneration",
        "MBartConfig",
        {**_BART_SHAPE},
        {
            "bos_token_id": 0,
            "decoder_start_token_id": 2,
            "eos_token_id": 2,
            "pad_token_id": 1,
            "forced_eos_token_id": 2,
            "max_length": 16,
        },
    ),
    "marian": (
        "MarianMTModel",
        "MarianConfig",
        {
            **_BART_SHAPE,
            "activation_function": "swish",
            "scale_embedding": True,
            "pad_token_id": PAD_MARIAN,
            "decoder_start_token_id": PAD_MARIAN,
            "eos_token_id": 0,
        },
        {
            "decoder_start_token_id": PAD_MARIAN,
            "eos_token_id": 0,
            "pad_token_id": PAD_MARIAN,
            "bad_words_ids": [[PAD_MARIAN]],
            "forced_eos_token_id": 0,
            "max_length": 16,
        },
    ),
    "pegasus": (
        "PegasusForConditionalGeneration",
        "PegasusConfig",
        {**_BART_SHAPE, "scale_embedding": True, "activation_function": "relu"},
        {
            "decoder_start_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "forced_eos_token_id": 1,
            "length_penalty": 0.8,
            "max_length": 16,
        },
    ),
}


# How much EOS is pushed (final_logits_bias, or T5's EOS embedding row scaled), chosen so that
# greedy decoding of random_sources(32) ends both early and at max_length for every family
# (random models otherwise never stop, or always stop at once).
EOS_BOOST = {"t5": 1.0, "t5-v1.1": 5.0, "mt5": 5.0, "bart": 5.0, "mbart": 5.0, "marian": 5.0}
EOS_BOOST["pegasus"] = 3.0


def eos_of(family: str) -> int:
    return FAMILIES[family][3]["eos_token_id"]


def pad_of(family: str) -> int:
    return FAMILIES[family][3]["pad_token_id"]


def make_hf_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build, perturb and save_pretrained one tiny model of `family` into `folder`."""
    import transformers

    model_cls, config_cls, kwargs, generation = FAMILIES[family]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**kwargs)
    model = getattr(transformers, model_cls)(config).eval()
    eos = generation["eos_token_id"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
            elif name.endswith(".bias"):
                p.normal_(std=0.5)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(std=1.0)
            model.final_logits_bias[0, eos] += EOS_BOOST[family]
        else:  # T5: no logits bias; make the EOS embedding row stand out instead
            model.shared.weight[eos] *= EOS_BOOST[family]
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder


def load_reference(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval()


def random_sources(n: int, family: str, seed: int = 0, max_len: int = 14) -> list[list[int]]:
    """n source id rows of mixed lengths, each ending with the family's EOS, no pad inside."""
    g = torch.Generator().manual_seed(seed)
    eos, pad = eos_of(family), pad_of(family)
    rows = []
    for i in range(n):
        length = 1 + (i * 7 + int(torch.randint(0, 5, (1,), generator=g))) % max_len
        ids = torch.randint(3, VOCAB - 1, (length,), generator=g).tolist()
        rows.append([t for t in ids if t not in (eos, pad)] + [eos])
    return rows

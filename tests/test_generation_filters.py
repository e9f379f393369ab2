"""Hugging Face's text-generation controls in GenerationConfig, checked against transformers
itself: each logit processor against its LogitsProcessor on random logits and token histories,
all of them in Hugging Face's order against `_get_logits_processor`, greedy and beam search end to
end against `generate()` on a tiny random Whisper (token ids and beam scores), and
GenerationConfig.from_hf."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from conftest import BOS, EOS, PAD, WhisperPair, make_whisper_pair, until_eos
from torch import Tensor
from transformers import GenerationConfig as HFGenerationConfig
from transformers.generation import logits_process as hf_process
from transformers.generation.utils import GenerationMixin

from mmseq.generation import GenerationConfig, generate
from mmseq.generation.logits import (
    apply_processors,
    ban_bad_words,
    ban_repeated_ngrams,
    penalise_repetition,
)

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 16


@functools.cache
def _pair(seed: int) -> WhisperPair:
    return make_whisper_pair(seed)


@functools.cache
def _mel() -> Tensor:
    torch.manual_seed(123)
    return torch.randn(3, 80, 3000)


def _history(seed: int, length: int, rows: int = 6, distinct: int = 5) -> tuple[Tensor, Tensor]:
    """Random logits [rows, VOCAB] (both signs) and token histories [rows, length] drawn from a
    few ids, so that tokens and n-grams repeat."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(rows, VOCAB, generator=g)
    return logits, torch.randint(0, distinct, (rows, length), generator=g)


def _hf_options(options: dict) -> dict:
    """As transformers takes them: lists, not tuples."""
    as_lists = {"bad_words_ids": lambda v: [list(w) for w in v], "begin_suppress_tokens": list}
    return {k: as_lists.get(k, lambda v: v)(v) for k, v in options.items()}


def _same(ours: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Each processor against its transformers LogitsProcessor


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_hf(seed: int, penalty: float) -> None:
    logits, tokens = _history(seed, 7)
    logits[:, 0] = 0.0
    tokens[0, 0] = VOCAB + 3  # an id the output layer lacks: ignored by both
    reference = hf_process.RepetitionPenaltyLogitsProcessor(penalty)
    for scores in (logits, logits.log_softmax(-1)):  # logits (greedy), log-probs (beams)
        expected = reference(tokens, scores.clone())
        assert not torch.equal(expected, scores)
        _same(penalise_repetition(scores.clone(), tokens, penalty), expected)
    assert penalise_repetition(logits, tokens, 1.0) is logits


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_matches_hf(seed: int, n: int) -> None:
    reference = hf_process.NoRepeatNGramLogitsProcessor(n)
    for length in (1, 2, 3, 4, 5, 9):  # shorter than n, as long, longer
        logits, tokens = _history(seed + 10 * length, length, distinct=3)
        expected = reference(tokens, logits.clone())
        _same(ban_repeated_ngrams(logits.clone(), tokens, n), expected)
        if length >= 2 * n + 2:  # 3 ids: some n-gram surely repeats in 9 tokens
            assert expected.isinf().any()
    assert ban_repeated_ngrams(logits, tokens, 0) is logits


BAD_WORDS = ((3,), (1, 2), (0, 1, 2), (2, 2, 2, 2), (4,) * 12)  # the last: longer than history


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("length", [1, 2, 8])
def test_bad_words_match_hf(seed: int, length: int) -> None:
    logits, tokens = _history(seed, length)
    tokens[0, -1:] = 1  # row 0 may complete (1, 2), row 1 (0, 1, 2)
    if length >= 2:
        tokens[1, -2:] = torch.tensor([0, 1])
    reference = hf_process.NoBadWordsLogitsProcessor([list(w) for w in BAD_WORDS])
    expected = reference(tokens, logits.clone())
    assert expected[0, 2] == -float("inf") and expected[:, 3].isinf().all()
    _same(ban_bad_words(logits.clone(), tokens, BAD_WORDS), expected)


def test_bad_word_outside_the_vocabulary_is_an_error() -> None:
    logits, tokens = _history(0, 3)
    with pytest.raises(ValueError, match=r"bad_words_ids: token ids \[16\] are outside"):
        ban_bad_words(logits, tokens, ((2, 16),))


# the options, and the prefix length, of each run of all processors together
ALL_PROCESSORS = [
    (
        1,
        {
            "repetition_penalty": 1.3,
            "no_repeat_ngram_size": 2,
            "bad_words_ids": ((3,), (1, 4), (EOS,)),
            "min_length": 4,
            "forced_bos_token_id": 1,
            "forced_eos_token_id": EOS,
            "suppress_tokens": (6, 7),
            "begin_suppress_tokens": (EOS, 4),
        },
    ),
    (
        3,
        {
            "repetition_penalty": 0.8,
            "no_repeat_ngram_size": 3,
            "bad_words_ids": ((0, 1, 4),),
            "min_new_tokens": 2,
            "forced_eos_token_id": 9,
            "suppress_tokens": (4,),
            "begin_suppress_tokens": (1, 3),
        },
    ),
    # forced tokens win over the bans before them
    (1, {"forced_bos_token_id": 6, "bad_words_ids": ((6,),), "min_new_tokens": 6}),
    (2, {"forced_eos_token_id": EOS, "min_new_tokens": 6, "bad_words_ids": ((0, EOS),)}),
]


@pytest.mark.parametrize(("prefix_len", "options"), ALL_PROCESSORS)
@pytest.mark.parametrize("seed", [0, 1])
def test_all_processors_match_hf_in_its_order(seed: int, prefix_len: int, options: dict) -> None:
    """Against the list transformers builds in generate() (`_get_logits_processor`), at every
    length from the prefix alone to the last step."""
    max_new = 6
    hf_config = HFGenerationConfig(
        max_length=prefix_len + max_new,
        eos_token_id=EOS,
        pad_token_id=PAD,
        decoder_start_token_id=BOS,
        **_hf_options(options),
    )
    model = _pair(0).hf
    model._prepare_special_tokens(hf_config, device="cpu")
    reference = model._get_logits_processor(
        generation_config=hf_config, input_ids_seq_length=prefix_len, device="cpu", model_kwargs={}
    )
    config = GenerationConfig(max_new_tokens=max_new, eos_token_id=EOS, **options)
    for length in range(prefix_len, prefix_len + max_new):
        logits, tokens = _history(seed + 7 * length, length)
        scores = logits.log_softmax(-1) if length % 2 else logits
        expected = reference(tokens, scores.clone())
        _same(apply_processors(scores.clone(), tokens, config, prefix_len), expected)


# ---------------------------------------------------------------------------------------------
# Greedy and beam search against transformers' generate()


@functools.cache
def _hf_generate(seed: int, prefix: tuple[int, ...], options: tuple) -> tuple[list, Tensor | None]:
    with torch.no_grad():
        out = GenerationMixin.generate(
            _pair(seed).hf,
            input_features=_mel(),
            decoder_input_ids=torch.tensor([prefix] * 3),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=EOS,
            pad_token_id=PAD,
            return_dict_in_generate=True,
            output_scores=True,
            **_hf_options(dict(options)),
        )
    return until_eos(out.sequences.tolist(), len(prefix)), getattr(out, "sequences_scores", None)


def _case(
    seed: int, tested: dict, common: dict | None = None, prefix: tuple[int, ...] = (BOS, 5)
) -> object:
    """tested: the options under test; common: the rest (num_beams, length_penalty, ...)."""
    common = {"num_beams": 1} | (common or {})
    name = "-".join(f"{k}={v}" for k, v in (common | tested).items())
    return pytest.param(seed, tested, common, prefix, id=f"seed{seed}-{name}")


BEAM4 = {"num_beams": 4}
SEARCHES = [
    _case(0, {"min_length": 10}),
    _case(1, {"min_length": 10}, BEAM4),
    _case(1, {"min_new_tokens": 8}),
    _case(0, {"no_repeat_ngram_size": 2}),
    _case(1, {"no_repeat_ngram_size": 2}, BEAM4),
    _case(0, {"no_repeat_ngram_size": 3}),
    _case(
        5, {"no_repeat_ngram_size": 3}, BEAM4 | {"early_stopping": True, "num_return_sequences": 2}
    ),
    _case(0, {"forced_bos_token_id": 7}, prefix=(BOS,)),
    _case(5, {"forced_bos_token_id": 7}, BEAM4 | {"num_return_sequences": 2}, prefix=(BOS,)),
    # begin_suppress_tokens moves to the second new token when forced_bos takes the first
    _case(0, {"begin_suppress_tokens": (40,)}, {"forced_bos_token_id": 7}, prefix=(BOS,)),
    _case(0, {"forced_eos_token_id": EOS}),
    _case(0, {"forced_eos_token_id": 9}, BEAM4 | {"num_return_sequences": 4}),
    _case(
        5,
        {"forced_eos_token_id": EOS},
        BEAM4 | {"length_penalty": 2.0, "early_stopping": "never", "num_return_sequences": 2},
    ),
    _case(0, {"bad_words_ids": ((36,), (12, 12))}),  # one-token and two-token words
    # a word that starts in the prefix; (EOS,) is dropped from the list
    _case(1, {"bad_words_ids": ((5, 56), (EOS,))}),
    _case(0, {"bad_words_ids": ((36,), (12, 12))}, BEAM4),
    _case(1, {"bad_words_ids": ((56, 56), (5, 56))}, BEAM4 | {"num_return_sequences": 2}),
    _case(1, {"repetition_penalty": 1.3}),
    _case(
        0,
        {"repetition_penalty": 1.3},
        BEAM4 | {"length_penalty": 0.0, "early_stopping": "never", "num_return_sequences": 3},
    ),
    _case(
        1,
        {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "min_length": 8},
        BEAM4 | {"early_stopping": True, "num_return_sequences": 3},
    ),
]


@pytest.mark.parametrize(("seed", "tested", "common", "prefix"), SEARCHES)
def test_generate_with_filters_matches_hf(
    seed: int, tested: dict, common: dict, prefix: tuple[int, ...]
) -> None:
    options = common | tested
    config = GenerationConfig(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, **options)
    ours = generate(_pair(seed).mmseq, "audio", _mel(), torch.tensor([prefix] * 3), config)
    expected, expected_scores = _hf_generate(seed, prefix, tuple(options.items()))
    assert until_eos(ours.sequences.flatten(0, 1).tolist(), len(prefix)) == expected
    if options["num_beams"] > 1:
        torch.testing.assert_close(ours.scores.flatten(), expected_scores, atol=1e-4, rtol=1e-4)
    # the options under test change what this model generates, so the comparison tests them
    assert _hf_generate(seed, prefix, tuple(common.items()))[0] != expected


@pytest.mark.parametrize(("seed", "max_new", "beams"), [(0, 3, 4), (0, 3, 2), (1, 5, 2)])
def test_beams_out_of_tokens_match_hf(seed: int, max_new: int, beams: int) -> None:
    """At the last step Hugging Face ends the K best continuations, EOS or not, and with
    early_stopping=True keeps the best K finished of them all (mmseq once stopped as soon as K
    had finished, and let the K running beams in after)."""
    pair, prefix = _pair(seed), torch.tensor([[BOS, 5]] * 3)
    search = {"num_beams": beams, "early_stopping": True, "num_return_sequences": beams}
    config = GenerationConfig(max_new_tokens=max_new, eos_token_id=EOS, pad_token_id=PAD, **search)
    ours = generate(pair.mmseq, "audio", _mel(), prefix, config)
    with torch.no_grad():
        ref = GenerationMixin.generate(
            pair.hf,
            input_features=_mel(),
            decoder_input_ids=prefix,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=EOS,
            pad_token_id=PAD,
            return_dict_in_generate=True,
            output_scores=True,
            **search,
        )
    expected = until_eos(ref.sequences.tolist(), 2)
    assert until_eos(ours.sequences.flatten(0, 1).tolist(), 2) == expected
    torch.testing.assert_close(ours.scores.flatten(), ref.sequences_scores, atol=1e-4, rtol=1e-4)


def test_sampling_applies_the_processors() -> None:
    pair = _pair(1)
    free = generate(pair.mmseq, "audio", _mel(), [BOS, 5], GenerationConfig(max_new_tokens=12))
    generated = free.sequences[:, 0, 2:].flatten()
    common = int(generated[generated != EOS].mode().values)
    config = GenerationConfig(
        max_new_tokens=12,
        do_sample=True,
        num_return_sequences=4,
        eos_token_id=EOS,
        bad_words_ids=((common,),),
        min_new_tokens=6,
    )
    out = generate(pair.mmseq, "audio", _mel(), [BOS, 5], config, generator=torch.manual_seed(0))
    generated = out.sequences[..., 2:]
    assert not (generated == common).any()
    assert not (generated[..., :6] == EOS).any()
    assert (out.lengths >= 7).all()


def test_beams_with_fewer_possible_hypotheses_than_asked() -> None:
    """One new token, forced to EOS: only the first beam's hypothesis is possible (the others
    start at -1e9, as Hugging Face's); the second sequence asked for is the prefix at -inf."""
    config = GenerationConfig(
        max_new_tokens=1,
        num_beams=4,
        num_return_sequences=2,
        eos_token_id=EOS,
        pad_token_id=PAD,
        forced_eos_token_id=EOS,
    )
    out = generate(_pair(0).mmseq, "audio", _mel(), [BOS, 5], config)
    assert out.sequences[:, 0].tolist() == [[BOS, 5, EOS]] * 3
    assert out.sequences[:, 1].tolist() == [[BOS, 5, PAD]] * 3
    assert out.scores[:, 0].tolist() == [0.0] * 3
    assert out.scores[:, 1].isneginf().all()


# ---------------------------------------------------------------------------------------------
# GenerationConfig.from_hf and validation

BART_LIKE = {
    "_from_model_config": True,
    "bos_token_id": 0,
    "decoder_start_token_id": 2,
    "early_stopping": True,
    "eos_token_id": 2,
    "forced_bos_token_id": 0,
    "forced_eos_token_id": 2,
    "length_penalty": 2.0,
    "max_length": 142,
    "min_length": 56,
    "no_repeat_ngram_size": 3,
    "num_beams": 4,
    "pad_token_id": 1,
    "transformers_version": "4.27.0.dev0",
}


def test_from_hf_maps_a_generation_config() -> None:
    config = GenerationConfig.from_hf(BART_LIKE, prefix_len=1)
    assert config == GenerationConfig(
        max_new_tokens=141,
        min_length=56,
        num_beams=4,
        length_penalty=2.0,
        early_stopping=True,
        no_repeat_ngram_size=3,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
        eos_token_id=2,
        pad_token_id=1,
    )
    whisper_like = {
        "begin_suppress_tokens": [220, 50257],
        "bos_token_id": 50257,
        "decoder_start_token_id": 50258,
        "eos_token_id": [50257, 50256],
        "forced_decoder_ids": [[1, None], [2, 50359]],
        "max_length": 448,
        "no_timestamps_token_id": 50363,
        "pad_token_id": 50257,
        "suppress_tokens": [1, 2, 7],
        "bad_words_ids": [[5], [6, 7]],
        "repetition_penalty": 1.1,
        "temperature": 0.0,  # not sampling: not read
    }
    config = GenerationConfig.from_hf(whisper_like, prefix_len=4, num_beams=5)
    assert config == GenerationConfig(
        max_new_tokens=444,
        num_beams=5,
        eos_token_id=50257,  # the first of the list
        pad_token_id=50257,
        suppress_tokens=(1, 2, 7),
        begin_suppress_tokens=(220, 50257),
        bad_words_ids=((5,), (6, 7)),
        repetition_penalty=1.1,
    )


def test_from_hf_defaults_and_precedence() -> None:
    # Hugging Face's defaults: 20 new tokens; top_k 50, but only when sampling
    assert GenerationConfig.from_hf({}) == GenerationConfig(max_new_tokens=20)
    sampling = GenerationConfig.from_hf({"do_sample": True, "temperature": 0.7, "top_p": 0.9})
    assert (sampling.top_k, sampling.temperature, sampling.top_p) == (50, 0.7, 0.9)
    assert GenerationConfig.from_hf({"do_sample": True, "top_k": 0}).top_k == 0
    assert GenerationConfig.from_hf({"top_k": 5, "top_p": 0.5}).top_k == 0
    assert GenerationConfig.from_hf({"max_length": 30, "top_k": None}).max_new_tokens == 29
    # max_new_tokens wins over max_length, min_new_tokens over min_length (even at 0)
    both = {"max_length": 30, "max_new_tokens": 7, "min_length": 9, "min_new_tokens": 3}
    config = GenerationConfig.from_hf(both | {"eos_token_id": 2})
    assert (config.max_new_tokens, config.min_length, config.min_new_tokens) == (7, 0, 3)
    config = GenerationConfig.from_hf({"min_length": 9, "min_new_tokens": 0, "eos_token_id": 2})
    assert (config.min_length, config.min_new_tokens) == (0, 0)


def test_from_hf_warns_about_options_it_cannot_apply() -> None:
    with pytest.warns(UserWarning, match="does not implement typical_p, num_beam_groups"):
        GenerationConfig.from_hf({"typical_p": 0.9, "num_beam_groups": 2, "top_p": 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GenerationConfig.from_hf({"typical_p": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0})


@pytest.mark.parametrize(
    "hf_config",
    [
        {"max_length": 14, "min_length": 9, "no_repeat_ngram_size": 2, "repetition_penalty": 1.2},
        {
            "max_length": 14,
            "num_beams": 4,
            "num_return_sequences": 2,
            "early_stopping": "never",
            "length_penalty": 0.5,
            "bad_words_ids": [[36], [12, 12]],
            "forced_eos_token_id": 9,
            "eos_token_id": [EOS],
            "pad_token_id": PAD,
            "decoder_start_token_id": BOS,
            "_from_model_config": True,
            "transformers_version": "5.24.0",
        },
    ],
    ids=["greedy", "beams"],
)
def test_from_hf_decodes_as_hf(hf_config: dict) -> None:
    pair, prefix = _pair(0), torch.tensor([[BOS, 5]] * 3)
    config = GenerationConfig.from_hf(hf_config, prefix_len=2, eos_token_id=EOS, pad_token_id=PAD)
    ours = generate(pair.mmseq, "audio", _mel(), prefix, config)
    reference = HFGenerationConfig(**hf_config, return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        ref = GenerationMixin.generate(
            pair.hf, input_features=_mel(), decoder_input_ids=prefix, generation_config=reference
        )
    assert until_eos(ours.sequences.flatten(0, 1).tolist(), 2) == until_eos(
        ref.sequences.tolist(), 2
    )
    assert ours.sequences.shape[-1] <= 14


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be >= 0"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be > 0"),
        ({"min_length": -1}, "min_length must be >= 0"),
        ({"min_new_tokens": -2}, "min_new_tokens must be >= 0"),
        ({"min_length": 5, "min_new_tokens": 2, "eos_token_id": 2}, "give min_length .* not both"),
        ({"min_new_tokens": 200, "eos_token_id": 2}, "min_new_tokens must be <= max_new_tokens"),
        ({"min_length": 5}, "min_length and min_new_tokens need eos_token_id"),
        ({"bad_words_ids": ((3,), ())}, "bad_words_ids must be non-empty"),
        ({"bad_words_ids": ((3, -1),)}, "bad_words_ids must be non-empty sequences of token ids"),
        ({"bad_words_ids": (3, 4)}, r"bad_words_ids must be sequences of token ids, e.g. \(\(5,\)"),
        ({"forced_bos_token_id": -1}, "forced_bos_token_id must be >= 0"),
        ({"forced_eos_token_id": -3}, "forced_eos_token_id must be >= 0"),
        (
            {"forced_bos_token_id": 4, "suppress_tokens": (3, 4)},
            r"forced_bos_token_id \(4\) is also in suppress_tokens",
        ),
    ],
)
def test_invalid_options_name_the_field(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"GenerationConfig: {message}"):
        GenerationConfig(**options)


def test_from_hf_invalid_values_name_the_field() -> None:
    with pytest.raises(ValueError, match="no_repeat_ngram_size must be >= 0"):
        GenerationConfig.from_hf({"no_repeat_ngram_size": -1})
    with pytest.raises(ValueError, match=r"from_hf: max_length \(4\) leaves no new token"):
        GenerationConfig.from_hf({"max_length": 4}, prefix_len=4)
    assert GenerationConfig(bad_words_ids=[[3], [4, 5]]).bad_words_ids == ((3,), (4, 5))

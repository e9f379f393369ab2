"""Validation metrics: the text normaliser, WER/CER, BLEU-4, exact match and CIDEr-D (against
hand-computed values and against COCO's reference scorer, pycocoevalcap)."""

from __future__ import annotations

import math
import random

import pytest

from mmseq.training.metrics import (
    bleu4,
    cer,
    cider_d,
    cider_d_scores,
    exact_match,
    normalize_text,
    text_metrics,
    wer,
    word_accuracy,
)

# (prediction, references): varied reference counts, repeated n-grams (clipping), an empty
# prediction, an exact match and a short prediction (length penalty)
CORPUS = [
    ("a dog runs on the beach",
     ["a dog running on the beach", "a brown dog runs along the sand", "dog on a beach"]),
    ("a man riding a red bike",
     ["a man rides a red bicycle down the street", "a person on a bike"]),
    ("two cats two cats two cats", ["two cats sleeping on a sofa", "a pair of cats on a couch"]),
    ("", ["a plate of food on a table"]),
    ("a plate of food on a table", ["a plate of food on a table", "food on a white plate"]),
    ("a dog", ["a black dog sitting on the grass", "a dog in a field of grass"]),
]  # fmt: skip
# pycocoevalcap 1.2's Cider().compute_score on CORPUS (the tokenised inputs as above)
COCO_SCORES = [
    2.2267481893205843,
    1.2295174628465317,
    0.6340912430971726,
    0.0,
    6.044047851268736,
    0.8145891187045371,
]


def _split(corpus: list[tuple[str, list[str]]]) -> tuple[list[str], list[list[str]]]:
    return [p for p, _ in corpus], [r for _, r in corpus]


# ---------------------------------------------------------------------------------------------
# Normaliser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Don't STOP\u2014well-known   r\u00e9sum\u00e9!", "dont stop well known r\u00e9sum\u00e9"),
        ("re\u0301sume\u0301", "r\u00e9sum\u00e9"),  # decomposed accents stay in the word
        (
            "  The U.S. (2024) costs $3.50; it\u2019s fine_ok ",
            "the u s 2024 costs 3 50 its fine ok",
        ),
        ("...", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected
    assert normalize_text(expected) == expected


# ---------------------------------------------------------------------------------------------
# CIDEr-D


def test_cider_d_hand_computed_clipping() -> None:
    """Item 1: 'x x' against 'x y', every n-gram with idf L = log 2. Unigrams: hypothesis
    (x: 2L), reference (x: L, y: L), clipped dot min(2L, L) * L = L^2, cosine 1 / (2 sqrt 2)
    (unclipped it would be 1 / sqrt 2). Bigrams share nothing; no 3- or 4-grams."""
    scores = cider_d_scores(["x x", "z"], [["x y"], ["z"]])
    assert scores[0] == pytest.approx(10 * (1 / (2 * math.sqrt(2))) / 4, abs=1e-12)
    assert scores[1] == pytest.approx(10 * 1 / 4, abs=1e-12)  # unigram cosine 1, nothing else


def test_cider_d_hand_computed_length_penalty() -> None:
    """'a b c' against 'a b': unigram cosine 2 / sqrt 6, bigram cosine 1 / sqrt 2, one word
    longer: penalty exp(-1 / (2 * 6^2))."""
    scores = cider_d_scores(["a b c", "d"], [["a b"], ["d"]])
    expected = 10 * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert scores[0] == pytest.approx(expected, abs=1e-12)


def test_cider_d_idf_ignores_ngrams_every_item_shares() -> None:
    """'a' is in every item's references (idf 0), so 'a' alone matches nothing."""
    assert cider_d_scores(["a", "a"], [["a b"], ["a c"]]) == [0.0, 0.0]
    assert cider_d(["a b", "a c"], [["a b"], ["a c"]]) == pytest.approx(5.0)  # uni + bigram


def test_cider_d_matches_recorded_pycocoevalcap_scores() -> None:
    predictions, references = _split(CORPUS)
    scores = cider_d_scores(predictions, references)
    assert scores == pytest.approx(COCO_SCORES, abs=1e-6)
    assert cider_d(predictions, references) == pytest.approx(sum(COCO_SCORES) / 6, abs=1e-6)


def test_cider_d_matches_pycocoevalcap_on_random_corpora() -> None:
    """Live cross-check where the reference scorer is installed (it ships 100 MB of Java jars for
    its other metrics, so it is no test dependency; the recorded scores above always run)."""
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    rng = random.Random(0)
    vocab = "a the dog cat man on of in red sitting table with two".split()
    for _ in range(50):
        items = rng.randint(2, 8)
        predictions = [" ".join(rng.choices(vocab, k=rng.randint(0, 12))) for _ in range(items)]
        references = [
            [" ".join(rng.choices(vocab, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 5))]
            for _ in range(items)
        ]
        _, expected = cider.Cider().compute_score(
            dict(enumerate(references)), {i: [p] for i, p in enumerate(predictions)}
        )
        assert cider_d_scores(predictions, references) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# WER, CER, BLEU, exact match


def test_error_rates_are_corpus_level() -> None:
    # 1 substitution in 4 words + 2 deletions in 2 words = 3 / 6
    assert wer(["the cat sat down", ""], ["the dog sat down", "hello world"]) == pytest.approx(0.5)
    assert cer(["abcd"], ["abce"]) == pytest.approx(0.25)
    assert wer(["hello"], ["hello"]) == 0.0


def test_bleu4_uses_every_reference() -> None:
    prediction = ["the small cat sat on the mat"]
    assert bleu4(prediction, [["a dog ran", "the small cat sat on the mat"]]) == pytest.approx(1.0)
    assert bleu4(prediction, [["a dog ran in the park today"]]) == 0.0  # no 4-gram matches
    partial = bleu4(prediction, [["the small cat sat on a mat"]])
    assert 0.0 < partial < 1.0


def test_word_accuracy_is_one_minus_wer() -> None:
    # "four one seven" read as "four seven seven two": 1 substitution, 1 insertion in 3 words
    assert word_accuracy(["four seven seven two"], ["four one seven"]) == pytest.approx(1 / 3)
    assert word_accuracy(["one", "two three"], ["one", "two three"]) == 1.0
    assert word_accuracy(["a b c d"], ["a"]) == pytest.approx(-2.0)  # insertions count


def test_exact_match() -> None:
    assert exact_match(["a", "b", "c"], [["x", "a"], ["c"], ["c"]]) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------
# text_metrics


def test_text_metrics_by_task_on_normalised_text() -> None:
    speech = text_metrics(["The cat, sat."], [["the cat sat on the mat"]], "speech")
    assert speech == pytest.approx({"wer": 0.5, "cer": 11 / 22})  # 11 of 22 characters deleted
    caption = text_metrics(["A Dog!", "a cat"], [["a dog", "the dog"], ["two cats"]], "caption")
    assert set(caption) == {"bleu4", "cider", "exact_match", "word_accuracy"}
    assert caption["exact_match"] == 0.5
    assert caption["word_accuracy"] == pytest.approx(0.5)  # first references: 2 of 4 words wrong
    predictions, references = _split(CORPUS)
    assert text_metrics(predictions, references, "caption")["cider"] == pytest.approx(
        sum(COCO_SCORES) / 6, abs=1e-6
    )
    text = text_metrics(["Guten Morgen, Welt."], [["guten morgen welt"]], "text")
    assert text == {"bleu4": 0.0, "exact_match": 1.0}  # 3 words: no 4-grams, so BLEU-4 is 0


@pytest.mark.parametrize(
    ("predictions", "references", "task", "message"),
    [
        (["a"], [["a"]], "asr", "task: expected one of"),
        (["a", "b"], [["a"]], "speech", "expected one list per prediction"),
        (["a"], ["a"], "caption", r"references\[0\]: expected a non-empty list"),
        (["a"], [[]], "text", r"references\[0\]"),
        ([], [], "text", "at least one prediction"),
        (["a"], [["..."]], "speech", "all are empty"),
    ],
)
def test_text_metrics_rejects_bad_input(
    predictions: list, references: list, task: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        text_metrics(predictions, references, task)

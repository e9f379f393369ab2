"""Validation metrics: the text normaliser, WER/CER, BLEU-4, exact match and CIDEr-D (against
hand-computed values and against COCO's reference scorer, pycocoevalcap); sacreBLEU and chrF
(against sacrebleu called directly); ROUGE (against rouge-score's default scorer on ASCII text)
and the lead baseline."""

from __future__ import annotations

import math
import random

import pytest

from mmseq.training.metrics import (
    bleu4,
    cer,
    cider_d,
    cider_d_scores,
    corpus_chrf,
    corpus_sacrebleu,
    exact_match,
    lead_baseline,
    metric_signatures,
    normalize_text,
    rouge_scores,
    rouge_tokens,
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
    assert word_accuracy(["a b c d e"], ["a b c"]) == pytest.approx(1 / 3)  # insertions count
    assert word_accuracy(["a b c d"], ["a"]) == 0.0  # 1 - WER = -2, floored


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
        (["a", "b"], [["a"]], "translation", "expected one list per prediction"),
        ([], [], "translation", "at least one prediction"),
        (["a"], ["a"], "translation", r"references\[0\]: expected a non-empty list"),
        (["a", "b"], [["a"]], "summarization", "expected one list per prediction"),
        ([], [], "summarization", "at least one prediction"),
        (["a"], [[]], "summarization", r"references\[0\]"),
    ],
)
def test_text_metrics_rejects_bad_input(
    predictions: list, references: list, task: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        text_metrics(predictions, references, task)


# ---------------------------------------------------------------------------------------------
# Translation: sacreBLEU

# Detokenised text with case, punctuation and accents that 13a tokenisation and chrF see
TRANSLATION = [
    ("The cat sat on the mat.", ["The cat sat on the mat.", "A cat was sitting on the mat."]),
    ("It's a well-known café, isn't it?", ["It is a well-known café, isn't it?"]),
    ("He said: \"no\".", ["He said \"No\".", "He answered: \"no\"."]),
    ("", ["An empty prediction scores nothing here."]),
    ("Zürich, 3.5 km (north).", ["Zürich is 3.5 km to the north."]),
]  # fmt: skip


def test_sacrebleu_and_chrf_match_sacrebleu_on_raw_text() -> None:
    import sacrebleu

    predictions, references = _split(TRANSLATION)
    streams = [[item[k] if k < len(item) else None for item in references] for k in range(2)]
    bleu = sacrebleu.corpus_bleu(predictions, streams).score
    chrf = sacrebleu.corpus_chrf(predictions, streams).score
    assert corpus_sacrebleu(predictions, references) == pytest.approx(bleu)
    assert corpus_chrf(predictions, references) == pytest.approx(chrf)
    scores = text_metrics(predictions, references, "translation")
    assert scores == pytest.approx({"sacrebleu": bleu, "chrf": chrf})
    # raw text, not normalize_text's: case and punctuation count, as in published figures
    normalised = [normalize_text(p) for p in predictions]
    assert sacrebleu.corpus_bleu(normalised, streams).score != pytest.approx(bleu)
    assert 0 < bleu < 100 and 0 < chrf < 100  # sacreBLEU's 0-100 scale


def test_sacrebleu_scale_and_case() -> None:
    assert corpus_sacrebleu(["the cat sat on the mat"], [["the cat sat on the mat"]]) == (
        pytest.approx(100.0)
    )
    assert corpus_sacrebleu(["The cat sat on the mat"], [["the cat sat on the mat"]]) < 100.0


def test_metric_signatures() -> None:
    import sacrebleu
    from sacrebleu.metrics import BLEU, CHRF

    signatures = metric_signatures("translation")
    assert set(signatures) == {"sacrebleu", "chrf"}
    assert signatures["sacrebleu"] == (
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    )
    assert signatures["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|")
    # nrefs as sacreBLEU's own signature reports it after scoring the same references
    predictions, references = _split(TRANSLATION)
    streams = [[item[k] if k < len(item) else None for item in references] for k in range(2)]
    bleu, chrf = BLEU(), CHRF()
    bleu.corpus_score(predictions, streams)
    chrf.corpus_score(predictions, streams)
    assert metric_signatures("translation", references) == {
        "sacrebleu": str(bleu.get_signature()),
        "chrf": str(chrf.get_signature()),
    }
    assert "nrefs:var|" in metric_signatures("translation", references)["sacrebleu"]
    assert metric_signatures("translation", [["a", "b"]])["sacrebleu"].startswith("nrefs:2|")
    assert "stem:no" in metric_signatures("summarization")["rouge"]
    assert metric_signatures("speech") == {}
    with pytest.raises(ValueError, match="task: expected one of"):
        metric_signatures("mt")


# ---------------------------------------------------------------------------------------------
# Summarisation: ROUGE, lead baseline

ASCII_SUMMARIES = [
    ("The quick brown fox jumps over the lazy dog.", ["A quick brown dog jumps over the fox."]),
    ("Police arrested 3 men on Tuesday_night!", ["Three men were arrested by police on Tuesday."]),
    ("Markets fell sharply; oil prices rose.", ["Oil prices rose as markets fell.",
                                               "Stocks dropped sharply while oil rose."]),
    ("running runs ran", ["The runner runs and ran; running is fun."]),
]  # fmt: skip


def test_rouge_equals_rouge_score_default_on_ascii() -> None:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    predictions, references = _split(ASCII_SUMMARIES)
    expected = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, refs in ASCII_SUMMARIES:
        for name, score in scorer.score_multi(refs, prediction).items():
            expected[name] += score.fmeasure / len(ASCII_SUMMARIES)  # mean of per-item F1
        assert rouge_tokens(prediction) == scorer._tokenizer.tokenize(prediction)
    assert rouge_scores(predictions, references) == pytest.approx(expected)
    assert text_metrics(predictions, references, "summarization") == pytest.approx(expected)


def test_rouge_tokens_keep_letters_rouge_score_drops() -> None:
    from rouge_score.rouge_scorer import RougeScorer
    from rouge_score.tokenizers import DefaultTokenizer

    default = DefaultTokenizer(use_stemmer=False)
    text = "L'été à Straße, Привет мир! ﬁne"  # ﬁ: a ligature NFKC unfolds
    # accents, ß, Cyrillic and the ligature are lost
    assert default.tokenize(text) == ["l", "t", "stra", "e", "ne"]
    assert rouge_tokens(text) == ["l", "été", "à", "straße", "привет", "мир", "fine"]
    assert rouge_tokens("re\u0301sume\u0301") == ["résumé"]  # NFKC composes the accents
    # so rouge-score's default finds "thé" and "thè" identical and two Russian texts alike
    scorer = RougeScorer(["rouge1"])
    assert scorer.score("thé", "thè")["rouge1"].fmeasure == 1.0
    assert rouge_scores(["thè"], [["thé"]])["rouge1"] == 0.0
    assert scorer.score("the привет", "the пока")["rouge1"].fmeasure == 1.0
    assert rouge_scores(["the пока"], [["the привет"]])["rouge1"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("", "a summary", 0.0),
        ("a summary", "", 0.0),
        ("...", "a summary", 0.0),  # no words after tokenisation
        ("Das Été, à Moscou: Привет!", "das été à moscou привет", 1.0),
    ],
)
def test_rouge_edge_cases(prediction: str, reference: str, expected: float) -> None:
    scores = rouge_scores([prediction], [[reference]])
    assert scores == pytest.approx(dict.fromkeys(("rouge1", "rouge2", "rougeL"), expected))


def test_rouge_takes_the_best_reference_then_the_mean() -> None:
    scores = rouge_scores(["a b", "c d"], [["x y", "a b"], ["c z"]])
    assert scores["rouge1"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["rouge2"] == pytest.approx((1.0 + 0.0) / 2)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("First sentence here. Second one.", "First sentence here."),
        ("Is it? Yes! No.", "Is it?"),
        ("Wow!Still the first. Then", "Wow!Still the first."),  # no space: not an end
        ("A headline without a stop\nThe body.", "A headline without a stop"),
        ("  \n Leading   blank\tlines. x", "Leading blank lines."),
        ("Version 2.5 is out and it is a long sentence with many words", "Version 2.5 is out"),
        ("", ""),
    ],
)
def test_lead_baseline(document: str, expected: str) -> None:
    assert lead_baseline([document], n_words=4) == [" ".join(expected.split()[:4])]


def test_lead_baseline_cuts_to_n_words_and_rejects_bad_input() -> None:
    documents = ["One two three four five. Six.", "Short. Longer second sentence."]
    assert lead_baseline(documents, n_words=3) == ["One two three", "Short."]
    with pytest.raises(ValueError, match="n_words"):
        lead_baseline(documents, n_words=0)
    with pytest.raises(ValueError, match="documents: expected a list"):
        lead_baseline("One document.", n_words=3)

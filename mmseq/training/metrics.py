"""Text metrics for validation: WER and CER (speech), corpus BLEU-4 and CIDEr-D (captions, text),
exact match, word accuracy (captions that spell something out, as the digits task's).

`text_metrics` normalises predictions and references with `normalize_text` before scoring:
lowercase, Unicode NFC, apostrophes dropped ("Don't" -> "dont"), every other punctuation mark or
symbol replaced by a space ("well-known" -> "well known", "U.S." -> "u s"), whitespace collapsed.
Numbers stay as written: "3" and "three" differ (no English number normaliser, unlike
Whisper's EnglishTextNormalizer). The metric functions themselves score their inputs as given,
split on whitespace, so they can be applied to text tokenised some other way.

Scales: WER, CER, BLEU-4, exact match and word accuracy are fractions (0.12 = 12 %); CIDEr-D
is on the scale COCO reports (its x10 is built in: strong captioners score about 1.0-1.4 on
COCO, a perfect match of a long caption up to 10).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torchmetrics.functional.text import bleu_score, char_error_rate, word_error_rate

NGram = tuple[str, ...]

_APOSTROPHES = re.compile(r"['\u2019]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_text(text: str) -> str:
    """Lowercase, drop apostrophes, turn other punctuation into spaces, collapse whitespace."""
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFC", text).lower())
    return " ".join(_PUNCTUATION.sub(" ", text).split())


# ---------------------------------------------------------------------------------------------
# Error rates, BLEU, exact match


def wer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus word error rate: total word edits / total reference words."""
    _check_error_rate_inputs(predictions, references, str.split, "words")
    return float(word_error_rate(list(predictions), list(references)))


def cer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus character error rate (spaces count as characters)."""
    _check_error_rate_inputs(predictions, references, list, "characters")
    return float(char_error_rate(list(predictions), list(references)))


def word_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """1 - WER: (reference words - substitutions - deletions - insertions) / reference words,
    HTK's word accuracy. Below 0 when predictions insert more words than the references hold."""
    return 1.0 - wer(predictions, references)


def bleu4(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al.: clipped 1..4-gram precisions, geometric mean, brevity
    penalty against the closest reference length), no smoothing, any number of references."""
    _check_corpus(predictions, references)
    return float(bleu_score(list(predictions), [list(r) for r in references], n_gram=4))


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """The fraction of predictions equal to one of their references."""
    _check_corpus(predictions, references)
    return sum(p in refs for p, refs in zip(predictions, references, strict=True)) / len(
        predictions
    )


# ---------------------------------------------------------------------------------------------
# CIDEr-D


@dataclass
class _TfIdf:
    """One sentence as TF-IDF vectors, one per n-gram order."""

    weights: list[dict[NGram, float]]  # per order: n-gram -> count * idf
    norms: list[float]  # per order: Euclidean norm of `weights`
    length: int  # words


def cider_d(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
) -> float:
    """Corpus CIDEr-D (Vedantam et al., 2015): the mean of `cider_d_scores`."""
    scores = cider_d_scores(predictions, references, n, sigma)
    return sum(scores) / len(scores)


def cider_d_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
) -> list[float]:
    """CIDEr-D of each prediction, as COCO's evaluation computes it (pycocoevalcap's `Cider`,
    which is CIDEr-D with document frequencies taken from the evaluated corpus).

    Each sentence becomes TF-IDF vectors of its 1..n-grams, with document frequencies counted
    over the items' reference sets (an item counts once per n-gram). An item's score is 10 x the
    mean, over its references and over the n orders, of the clipped cosine similarity between
    prediction and reference, times exp(-(length difference in words)^2 / (2 sigma^2)).
    """
    _check_corpus(predictions, references)
    refs = [[_ngram_counts(r, n) for r in item] for item in references]
    idf = _inverse_document_frequency(refs)
    scores = []
    for prediction, item_refs in zip(predictions, refs, strict=True):
        hyp = _tfidf(_ngram_counts(prediction, n), idf)
        similarities = [_similarity(hyp, _tfidf(ref, idf), sigma) for ref in item_refs]
        scores.append(10.0 * sum(similarities) / len(similarities))
    return scores


def _ngram_counts(sentence: str, n: int) -> list[Counter[NGram]]:
    """The counts of a whitespace-tokenised sentence's 1..n-grams, one Counter per order."""
    words = sentence.split()
    return [
        Counter(tuple(words[i : i + k]) for i in range(len(words) - k + 1)) for k in range(1, n + 1)
    ]


def _inverse_document_frequency(
    refs: list[list[list[Counter[NGram]]]],
) -> Callable[[NGram], float]:
    """idf(g) = log(items) - log(max(1, items whose references contain g)): an n-gram that no
    reference holds weighs as much as one that only a single item's references hold."""
    frequency: Counter[NGram] = Counter()
    for item in refs:
        frequency.update({g for ref in item for order in ref for g in order})
    log_items = math.log(len(refs))
    return lambda g: log_items - math.log(max(1, frequency[g]))


def _tfidf(counts: list[Counter[NGram]], idf: Callable[[NGram], float]) -> _TfIdf:
    weights = [{g: c * idf(g) for g, c in order.items()} for order in counts]
    norms = [math.sqrt(sum(w * w for w in order.values())) for order in weights]
    # pycocoevalcap counts the length in bigrams (words - 1); the difference only matters when
    # one side is empty, and then the similarity is 0 either way
    return _TfIdf(weights, norms, sum(counts[0].values()))


def _similarity(hyp: _TfIdf, ref: _TfIdf, sigma: float) -> float:
    """Clipped cosine similarity averaged over the n-gram orders, times the length penalty."""
    total = 0.0
    for h, r, h_norm, r_norm in zip(hyp.weights, ref.weights, hyp.norms, ref.norms, strict=True):
        # clipping (the "-D"): repeating an n-gram beyond the reference's count earns nothing
        dot = sum(min(w, r.get(g, 0.0)) * r.get(g, 0.0) for g, w in h.items())
        if h_norm and r_norm:
            total += dot / (h_norm * r_norm)
    penalty = math.exp(-((hyp.length - ref.length) ** 2) / (2 * sigma**2))
    return penalty * total / len(hyp.weights)


# ---------------------------------------------------------------------------------------------
# By task


def _first_references(metric: Callable[[Sequence[str], Sequence[str]], float]) -> Callable:
    return lambda predictions, references: metric(predictions, [r[0] for r in references])


_METRICS: dict[str, Callable[[Sequence[str], Sequence[Sequence[str]]], float]] = {
    "wer": _first_references(wer),
    "cer": _first_references(cer),
    "bleu4": bleu4,
    "cider": cider_d,
    "exact_match": exact_match,
    "word_accuracy": _first_references(word_accuracy),
}

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "speech": ("wer", "cer"),
    "caption": ("bleu4", "cider", "exact_match", "word_accuracy"),
    "text": ("bleu4", "exact_match"),
}


def text_metrics(
    predictions: list[str], references: list[list[str]], task: str
) -> dict[str, float]:
    """The validation metrics of `task` (see TASK_METRICS) on normalised text.

    references[i] holds all references of item i; WER, CER and word accuracy use the first of
    each.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"task: expected one of {sorted(TASK_METRICS)}, got {task!r}")
    _check_corpus(predictions, references)
    preds = [normalize_text(p) for p in predictions]
    refs = [[normalize_text(r) for r in item] for item in references]
    return {name: _METRICS[name](preds, refs) for name in TASK_METRICS[task]}


# ---------------------------------------------------------------------------------------------
# Input checks


def _check_corpus(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if not predictions:
        raise ValueError("predictions: expected at least one prediction, got none")
    if len(predictions) != len(references):
        raise ValueError(
            f"references: expected one list per prediction ({len(predictions)}), "
            f"got {len(references)}"
        )
    for i, item in enumerate(references):
        if isinstance(item, str) or not item:
            raise ValueError(
                f"references[{i}]: expected a non-empty list of reference strings, got {item!r}"
            )


def _check_error_rate_inputs(
    predictions: Sequence[str],
    references: Sequence[str],
    units: Callable[[str], Sequence],
    name: str,
) -> None:
    if not predictions or len(predictions) != len(references):
        raise ValueError(
            f"references: expected one reference per prediction (and at least one), got "
            f"{len(references)} for {len(predictions)} predictions"
        )
    if not any(units(r) for r in references):
        raise ValueError(
            f"references: all are empty, so the rate of errors per {name} is undefined"
        )


__all__ = [
    "TASK_METRICS",
    "bleu4",
    "cer",
    "cider_d",
    "cider_d_scores",
    "exact_match",
    "normalize_text",
    "text_metrics",
    "wer",
    "word_accuracy",
]

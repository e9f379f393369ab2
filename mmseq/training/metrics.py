"""Text metrics for validation: WER and CER (speech), corpus BLEU-4 and CIDEr-D (captions, text),
exact match, word accuracy (captions that spell something out, as the digits task's), sacreBLEU
and chrF (translation), ROUGE-1/2/L (summarisation).

`text_metrics` normalises predictions and references with `normalize_text` before scoring:
lowercase, Unicode NFC, apostrophes dropped ("Don't" -> "dont"), every other punctuation mark or
symbol replaced by a space ("well-known" -> "well known", "U.S." -> "u s"), whitespace collapsed.
Numbers stay as written: "3" and "three" differ (no English number normaliser, unlike
Whisper's EnglishTextNormalizer). The metric functions themselves score their inputs as given,
split on whitespace, so they can be applied to text tokenised some other way.

The translation and summarisation metrics are the exception (RAW_TEXT_METRICS): they score the
raw, detokenised text, because each brings its own standard tokenisation. sacreBLEU tokenises
with 13a (BLEU) or by characters (chrF), case-sensitively, as published figures are computed;
ROUGE uses `rouge_tokens` (lowercase, NFKC, runs of Unicode letters, digits and marks).

Scales: WER, CER, BLEU-4, exact match, word accuracy and ROUGE are fractions (0.12 = 12 %);
sacreBLEU's BLEU and chrF keep sacreBLEU's 0-100 scale (named `sacrebleu` and `chrf`, so they
compare directly with published figures and `metric_signatures`); CIDEr-D is on the scale COCO
reports (its x10 is built in: strong captioners score about 1.0-1.4 on COCO, a perfect match of
a long caption up to 10).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import TYPE_CHECKING

from torchmetrics.functional.text import bleu_score, char_error_rate, word_error_rate

if TYPE_CHECKING:
    from sacrebleu.metrics.base import Metric

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
    """1 - WER floored at 0: (reference words - substitutions - deletions - insertions) /
    reference words, HTK's word accuracy, except that it stops at 0 where HTK's goes negative
    (predictions inserting more words than the references hold, as a barely trained model's
    runaway outputs do): a fraction like the other metrics, 0 = nothing right."""
    return max(0.0, 1.0 - wer(predictions, references))


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
# Translation: sacreBLEU's BLEU and chrF


def corpus_sacrebleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacreBLEU's corpus BLEU (0-100) with its defaults: 13a tokenisation, mixed case,
    exponential smoothing. Items may have different numbers of references."""
    from sacrebleu.metrics import BLEU

    return _sacrebleu_score(BLEU(), predictions, references)


def corpus_chrf(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacreBLEU's corpus chrF (0-100): character 6-grams, beta 2, no word n-grams (not chrF++)."""
    from sacrebleu.metrics import CHRF

    return _sacrebleu_score(CHRF(), predictions, references)


def _sacrebleu_score(
    metric: Metric, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> float:
    _check_corpus(predictions, references)
    return float(metric.corpus_score(list(predictions), _reference_streams(references)).score)


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: one stream per reference position, None where an item has fewer."""
    width = max(len(item) for item in references)
    return [[item[k] if k < len(item) else None for item in references] for k in range(width)]


def metric_signatures(
    task: str, references: Sequence[Sequence[str]] | None = None
) -> dict[str, str]:
    """How `text_metrics(..., task)` scored, to print beside the scores: sacreBLEU's signatures
    for translation (e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`), the ROUGE
    configuration for summarisation, nothing for the other tasks.

    `nrefs` counts the references per item of `references` ("var" when they differ), as
    sacreBLEU's own signature after scoring them; 1 without `references`.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"task: expected one of {sorted(TASK_METRICS)}, got {task!r}")
    if task == "translation":
        from sacrebleu.metrics import BLEU, CHRF
        from sacrebleu.metrics.bleu import BLEUSignature
        from sacrebleu.metrics.chrf import CHRFSignature

        counts = {len(item) for item in references} if references else {1}
        nrefs = counts.pop() if len(counts) == 1 else -1  # sacreBLEU's "var"
        return {
            "sacrebleu": BLEUSignature({**vars(BLEU()), "num_refs": nrefs}).format(),
            "chrf": CHRFSignature({**vars(CHRF()), "num_refs": nrefs}).format(),
        }
    if task == "summarization":
        return {
            "rouge": f"rouge-score:{version('rouge-score')}|tok:unicode-words|case:lc|norm:nfkc"
            "|stem:no|f1:max-over-refs|agg:mean"
        }
    return {}


# ---------------------------------------------------------------------------------------------
# Summarisation: ROUGE and the lead baseline

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's words: NFKC, lowercase, maximal runs of Unicode letters, digits and combining
    marks; everything else separates. No stemming.

    On ASCII text these are rouge-score's default tokens (runs of [a-z0-9] after lowercasing),
    which drop every other letter ("été" -> ["t"], "Straße" -> ["stra", "e"], Cyrillic -> []).
    Scripts written without spaces (Chinese, Japanese, Thai) give one token per run of text.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c if unicodedata.category(c)[0] in "LNM" else " " for c in text).split()


class _RougeTokenizer:
    """`rouge_tokens` in the shape rouge-score's RougeScorer takes (an object with tokenize)."""

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


def rouge_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    rouge_types: Sequence[str] = ROUGE_TYPES,
) -> dict[str, float]:
    """ROUGE F-measures (rouge-score's, on `rouge_tokens`), fractions: per item the best F1 over
    its references, then the mean over items (not rouge-score's bootstrap aggregate). ROUGE-L is
    the sentence-level LCS (not rougeLsum). An empty prediction or reference scores 0."""
    from rouge_score.rouge_scorer import RougeScorer

    _check_corpus(predictions, references)
    scorer = RougeScorer(list(rouge_types), tokenizer=_RougeTokenizer())
    totals = dict.fromkeys(rouge_types, 0.0)
    for prediction, refs in zip(predictions, references, strict=True):
        for name, score in scorer.score_multi(list(refs), prediction).items():
            totals[name] += score.fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}


def _rouge(
    rouge_type: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> float:
    return rouge_scores(predictions, references, (rouge_type,))[rouge_type]


_SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s|$)|\n")


def lead_baseline(documents: Sequence[str], n_words: int) -> list[str]:
    """The lead baseline of summarisation: each document's first sentence, cut to `n_words`
    words (whitespace collapsed). A sentence ends at ".", "!" or "?" followed by whitespace or
    the end of the text, or at a newline; abbreviations ("Dr. Who") end it too."""
    if n_words < 1:
        raise ValueError(f"n_words: expected at least 1, got {n_words}")
    if isinstance(documents, str):
        raise ValueError("documents: expected a list of documents, got one string")
    firsts = [_SENTENCE_END.split(document.strip(), maxsplit=1)[0] for document in documents]
    return [" ".join(first.split()[:n_words]) for first in firsts]


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
    "sacrebleu": corpus_sacrebleu,
    "chrf": corpus_chrf,
    **{name: partial(_rouge, name) for name in ROUGE_TYPES},
}

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "speech": ("wer", "cer"),
    "caption": ("bleu4", "cider", "exact_match", "word_accuracy"),
    "text": ("bleu4", "exact_match"),
    "translation": ("sacrebleu", "chrf"),
    "summarization": ROUGE_TYPES,
}

# Metrics that tokenise by their own standard rules, so `text_metrics` gives them the raw text.
RAW_TEXT_METRICS = frozenset({"sacrebleu", "chrf", *ROUGE_TYPES})


def text_metrics(
    predictions: list[str], references: list[list[str]], task: str
) -> dict[str, float]:
    """The validation metrics of `task` (see TASK_METRICS) on normalised text, or on the raw
    text for RAW_TEXT_METRICS (translation, summarisation).

    references[i] holds all references of item i; WER, CER and word accuracy use the first of
    each.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"task: expected one of {sorted(TASK_METRICS)}, got {task!r}")
    _check_corpus(predictions, references)
    preds = [normalize_text(p) for p in predictions]
    refs = [[normalize_text(r) for r in item] for item in references]
    return {
        name: _METRICS[name](predictions, references)
        if name in RAW_TEXT_METRICS
        else _METRICS[name](preds, refs)
        for name in TASK_METRICS[task]
    }


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
    "RAW_TEXT_METRICS",
    "ROUGE_TYPES",
    "TASK_METRICS",
    "bleu4",
    "cer",
    "cider_d",
    "cider_d_scores",
    "corpus_chrf",
    "corpus_sacrebleu",
    "exact_match",
    "lead_baseline",
    "metric_signatures",
    "normalize_text",
    "rouge_scores",
    "rouge_tokens",
    "text_metrics",
    "wer",
    "word_accuracy",
]

"""The pieces of Whisper's window decoding, on hand-made inputs and against openai-whisper's own
functions: timestamp rules, segment splitting, the prompt layout, DTW, word splitting and the
temperature-fallback decision. No model is loaded; only tiny.en's tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import whisper.decoding
import whisper.timing
import whisper.tokenizer

from mmseq.whisper.decoding import (
    DecodingOptions,
    TimestampRules,
    WindowResult,
    compression_ratio,
    initial_tokens,
)
from mmseq.whisper.loading import embedded_model_dir
from mmseq.whisper.segments import split_sentences, split_window
from mmseq.whisper.timing import _median_filter, dtw, split_words
from mmseq.whisper.tokenizer import WhisperTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

VOCAB = 51864  # tiny.en's logits
NEG_INF = -float("inf")


@pytest.fixture(scope="module")
def tok() -> WhisperTokenizer:
    return WhisperTokenizer.from_file(embedded_model_dir())


@pytest.fixture(scope="module")
def openai_tok() -> whisper.tokenizer.Tokenizer:
    return whisper.tokenizer.get_tokenizer(multilingual=False)


def test_special_ids_agree_with_openai(tok: WhisperTokenizer, openai_tok) -> None:
    for name in ("eot", "sot", "sot_prev", "no_timestamps", "timestamp_begin"):
        assert getattr(tok, name) == getattr(openai_tok, name), name
    assert tok.no_speech == openai_tok.no_speech


# --- timestamp rules on hand-made logits -----------------------------------------------------

PREFIX = 3  # sampled tokens start after a 3-token prefix


def _text_favoured() -> torch.Tensor:
    """Logits [1, V] where text clearly outweighs all timestamps together (no forcing)."""
    logits = torch.zeros(1, VOCAB)
    logits[0, 50363:] = -20.0
    return logits


def _allowed(tok: WhisperTokenizer, sampled: list[int], logits: torch.Tensor, max_initial=None):
    """Apply the rules after `sampled` -> (text allowed, EOT allowed, allowed timestamp indices)."""
    tokens = torch.tensor([[tok.sot, 7, 8, *sampled]])
    out = TimestampRules(tok, PREFIX, max_initial)(logits.clone(), tokens)[0]
    finite = torch.isfinite(out)
    assert not finite[tok.no_timestamps]  # never generated with timestamps on
    timestamps = (finite[tok.timestamp_begin :].nonzero().flatten()).tolist()
    return bool(finite[: tok.eot].all()), bool(finite[tok.eot]), timestamps


def test_first_token_is_an_early_timestamp(tok: WhisperTokenizer) -> None:
    text, eot, timestamps = _allowed(tok, [], _text_favoured(), max_initial=50)
    assert not text and not eot
    assert timestamps == list(range(51))  # <|0.00|> .. <|1.00|>
    _, _, timestamps = _allowed(tok, [], _text_favoured(), max_initial=None)
    assert timestamps == list(range(1501))


def test_open_timestamp_is_closed_or_ends(tok: WhisperTokenizer) -> None:
    tb = tok.timestamp_begin
    text, eot, timestamps = _allowed(tok, [tb + 10, 300, tb + 40], _text_favoured())
    assert not text and eot
    assert timestamps == list(range(40, 1501))  # the same time closes the segment too


def test_closed_pair_is_followed_by_text(tok: WhisperTokenizer) -> None:
    tb = tok.timestamp_begin
    text, eot, timestamps = _allowed(tok, [tb + 10, 300, tb + 40, tb + 40], _text_favoured())
    assert text and eot and timestamps == []


@pytest.mark.parametrize(
    ("sampled", "first_allowed"),
    [
        ([0, 300], 1),  # segment that started at 0: it cannot end at 0
        ([0, 300, 40, 40, 301], 41),  # never back before the last timestamp, non-zero length
        ([0, 300, 40, 40, 301, 302, 303], 41),
    ],
)
def test_timestamps_never_decrease(tok: WhisperTokenizer, sampled, first_allowed: int) -> None:
    tb = tok.timestamp_begin
    history = [tb + t if i in (0, 2, 3) else t for i, t in enumerate(sampled)]
    text, eot, timestamps = _allowed(tok, history, _text_favoured())
    assert text and eot
    assert timestamps == list(range(first_allowed, 1501))


def test_prompt_timestamps_are_ignored(tok: WhisperTokenizer) -> None:
    """Timestamps before sample_begin (a previous window's text) constrain nothing."""
    tb = tok.timestamp_begin
    tokens = torch.tensor([[tb + 900, tb + 900, tok.sot, tb + 5, 300]])
    out = TimestampRules(tok, 3, None)(_text_favoured(), tokens)[0]
    assert torch.isfinite(out[tb + 6 :]).all() and not torch.isfinite(out[tb : tb + 6]).any()


def test_timestamp_forced_when_their_mass_beats_the_best_text_token(tok: WhisperTokenizer) -> None:
    tb = tok.timestamp_begin
    history = torch.tensor([[tok.sot, 7, 8, tb + 10, 300]])
    logits = torch.full((2, VOCAB), -30.0)
    logits[:, tb:] = 0.0  # mass log(1501) ~ 7.3 over the timestamps
    logits[0, 400] = 7.0  # below the mass: text is suppressed
    logits[1, 400] = 7.5  # above it: text stays
    out = TimestampRules(tok, PREFIX, None)(logits, history.repeat(2, 1))
    assert not torch.isfinite(out[0, :tb]).any()
    assert torch.isfinite(out[0, tb + 11 :]).all()
    assert out[1, 400] == 7.5 and torch.isfinite(out[1, : tok.eot]).all()


@pytest.mark.parametrize("max_initial", [None, 50, 0])
def test_timestamp_rules_match_openai(tok: WhisperTokenizer, openai_tok, max_initial) -> None:
    """Random logits along random histories sampled under the rules themselves (so that they
    are histories a decoder can produce): the filtered logits are identical at every step."""
    gen = torch.Generator().manual_seed(1234 + (max_initial or 0))
    batch, steps, tb = 4, 32, tok.timestamp_begin
    prefix = [tok.sot_prev, tb + 1000, 50, tb + 1200, tok.sot]  # prompt timestamps: ignored
    ours = TimestampRules(tok, len(prefix), max_initial)
    theirs = whisper.decoding.ApplyTimestampRules(openai_tok, len(prefix), max_initial)
    tokens = torch.tensor([prefix] * batch)
    kinds = {"first": 0, "after text": 0, "open": 0, "closed": 0, "forced": 0}
    for _ in range(steps):
        state = _states(tokens[:, len(prefix) :], tb)
        logits = torch.randn(batch, VOCAB, generator=gen) * 2
        # per row, shift timestamps and EOT so that every rule gets exercised
        logits[:, tb:] += torch.empty(batch, 1).uniform_(-8, 9, generator=gen)
        logits[:, tok.eot] += torch.empty(batch).uniform_(-6, 4, generator=gen)
        expected = logits.clone()
        theirs.apply(expected, tokens)
        got = ours(logits.clone(), tokens)
        assert torch.equal(got, expected), tokens.tolist()
        text_masked = (~torch.isfinite(got[:, : tok.eot])).all(-1).tolist()
        for row, kind in enumerate(state):
            kinds[kind] += 1
            kinds["forced"] += kind == "after text" and text_masked[row]
        gumbel = -torch.empty_like(got).exponential_(generator=gen).log()
        tokens = torch.cat([tokens, (got + gumbel).argmax(-1, keepdim=True)], dim=1)  # sample
    assert all(count > 0 for count in kinds.values()), kinds  # every situation was met


def _states(sampled: torch.Tensor, tb: int) -> list[str]:
    """Each row's situation: nothing sampled yet, after text, an open or a closed pair."""
    if sampled.shape[1] == 0:
        return ["first"] * sampled.shape[0]
    last = (sampled[:, -1] >= tb).tolist()
    penultimate = (sampled[:, -2] >= tb).tolist() if sampled.shape[1] > 1 else last
    return [
        ("closed" if p else "open") if t else "after text"
        for t, p in zip(last, penultimate, strict=True)
    ]


# --- segments of a window ------------------------------------------------------------------


def _result(tokens: list[int]) -> WindowResult:
    return WindowResult(tokens, "", -0.25, 0.05, 0.0, 1.5)


@pytest.fixture(scope="module")
def words(tok: WhisperTokenizer) -> tuple[list[int], list[int], list[int]]:
    return tok.encode(" Hello there."), tok.encode(" How are you?"), tok.encode(" Fine")


def _spans(segments) -> list[tuple[float, float, str]]:
    return [(round(s.start, 6), round(s.end, 6), s.text) for s in segments]


def test_split_window_drops_the_unfinished_segment(tok: WhisperTokenizer, words) -> None:
    tb = tok.timestamp_begin
    hello, how, fine = words
    first = [tb, *hello, tb + 100]
    second = [tb + 100, *how, tb + 250]
    tokens = [*first, *second, tb + 260, *fine]  # "Fine" has no end: decoded again next window
    segments, seek, single = split_window(_result(tokens), tok, 1000, 3000)
    assert _spans(segments) == [(10.0, 12.0, " Hello there."), (12.0, 15.0, " How are you?")]
    assert [s.tokens for s in segments] == [first, second]
    assert all(s.seek == 1000 and s.avg_logprob == -0.25 for s in segments)
    assert seek == 1000 + 250 * 2  # the end of the last complete segment
    assert not single


def test_split_window_keeps_the_unfinished_segment_of_a_last_window(
    tok: WhisperTokenizer, words
) -> None:
    tb = tok.timestamp_begin
    hello, how, fine = words
    first = [tb, *hello, tb + 100]
    tokens = [*first, tb + 260, *fine]
    segments, seek, single = split_window(_result(tokens), tok, 1000, 2000, keep_unfinished=True)
    assert _spans(segments) == [(10.0, 12.0, " Hello there."), (15.2, 30.0, " Fine")]
    assert segments[-1].tokens == [tb + 260, *fine]
    assert seek == 3000 and not single  # the whole window is done
    # nothing unfinished: the same as without the flag
    whole = [*first, tb + 100, *fine, tb + 300]
    assert (
        split_window(_result(whole), tok, 0, 3000, keep_unfinished=True)[1:]
        == (split_window(_result(whole), tok, 0, 3000)[1:])
    )


def test_split_window_ending_on_a_pair(tok: WhisperTokenizer, words) -> None:
    tb = tok.timestamp_begin
    hello = words[0]
    segments, seek, single = split_window(_result([tb, *hello, tb + 100, tb + 100]), tok, 0, 3000)
    assert _spans(segments) == [(0.0, 2.0, " Hello there.")]
    assert seek == 200 and not single
    # a voice-activity chunk too: the decoder stopped between segments, so the rest of the
    # window is decoded again from 2.0 s rather than skipped
    kept, seek, single = split_window(
        _result([tb, *hello, tb + 100, tb + 100]), tok, 0, 3000, keep_unfinished=True
    )
    assert _spans(kept) == [(0.0, 2.0, " Hello there.")]
    assert seek == 200 and not single


def test_split_window_single_timestamp_ending(tok: WhisperTokenizer, words) -> None:
    """Nothing was said after the last timestamp: keep every segment, skip the whole window."""
    tb = tok.timestamp_begin
    hello, how, _ = words
    tokens = [tb, *hello, tb + 100, tb + 100, *how, tb + 250]
    segments, seek, single = split_window(_result(tokens), tok, 1000, 3000)
    assert _spans(segments) == [(10.0, 12.0, " Hello there."), (12.0, 15.0, " How are you?")]
    assert seek == 4000 and single


@pytest.mark.parametrize(("frames", "end"), [(3000, 13.0), (1234, 13.0)])
def test_split_window_one_segment(tok: WhisperTokenizer, words, frames: int, end: float) -> None:
    tb = tok.timestamp_begin
    hello = words[0]
    segments, seek, single = split_window(_result([tb, *hello, tb + 150]), tok, 1000, frames)
    assert _spans(segments) == [(10.0, end, " Hello there.")]
    assert seek == 1000 + frames and single


@pytest.mark.parametrize("leading_timestamp", [False, True])
def test_split_window_without_timestamps(
    tok: WhisperTokenizer, words, leading_timestamp: bool
) -> None:
    """No closing timestamp: one segment over the whole window's audio."""
    hello = words[0]
    tokens = [tok.timestamp_begin, *hello] if leading_timestamp else hello
    segments, seek, single = split_window(_result(tokens), tok, 500, 1234)
    assert _spans(segments) == [(5.0, 17.34, " Hello there.")]
    assert segments[0].tokens == tokens
    assert seek == 500 + 1234 and not single


def test_split_sentences_cuts_after_each_sentence(tok: WhisperTokenizer, words) -> None:
    hello, how, fine = words
    pi = tok.encode(" Pi is 3.14 today")  # a full stop inside a number is no sentence end
    tokens = [*hello, *how, *pi, *fine]
    (segment,), _, _ = split_window(_result(tokens), tok, 0, 3000)
    parts = split_sentences(segment, tok)
    assert [p.text for p in parts] == [" Hello there.", " How are you?", " Pi is 3.14 today Fine"]
    assert [t for p in parts for t in p.tokens] == tokens
    assert all((p.start, p.end, p.avg_logprob) == (0.0, 30.0, -0.25) for p in parts)
    (single,) = split_sentences(split_window(_result(hello), tok, 0, 3000)[0][0], tok)
    assert single.tokens == hello


# --- the prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize("without_timestamps", [False, True])
def test_initial_tokens_truncates_a_long_prompt(
    tok: WhisperTokenizer, without_timestamps: bool
) -> None:
    prompt = list(range(1000, 1300))  # 300 tokens, more than n_ctx // 2 = 224
    tokens = initial_tokens(tok, prompt, without_timestamps, n_ctx=448)
    tail = [tok.no_timestamps] if without_timestamps else []
    assert tokens == [tok.sot_prev, *range(1077, 1300), tok.sot, *tail]
    assert len(tokens) - len(tail) - 2 == 448 // 2 - 1


def test_initial_tokens_short_and_empty_prompt(tok: WhisperTokenizer) -> None:
    assert initial_tokens(tok, [5, 6, 7], False, 448) == [tok.sot_prev, 5, 6, 7, tok.sot]
    assert initial_tokens(tok, [], False, 448) == [tok.sot]
    assert initial_tokens(tok, (), True, 448) == [tok.sot, tok.no_timestamps]


# --- word alignment helpers ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (6, 11), (25, 400), (60, 1500)])
def test_dtw_matches_openai_on_random_costs(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    tokens, frames = dtw(x)
    np.testing.assert_array_equal(np.stack([tokens, frames]), whisper.timing.dtw_cpu(x))
    assert tokens[0] == frames[0] == 0 and (tokens[-1], frames[-1]) == (shape[0] - 1, shape[1] - 1)


@pytest.mark.parametrize("width", [1, 3, 7, 9])
@pytest.mark.parametrize("shape", [(8, 40, 750), (2, 3, 5), (1, 2, 4)])
def test_median_filter_matches_openai(width: int, shape: tuple[int, ...]) -> None:
    """Exactly openai-whisper's median filter, ties (small integers) and short rows included."""
    rng = np.random.default_rng(width)
    for x in (rng.standard_normal(shape), rng.integers(0, 3, shape)):
        x = torch.from_numpy(x.astype(np.float32))
        assert torch.equal(_median_filter(x, width), whisper.timing.median_filter(x, width))


def test_dtw_breaks_ties_as_openai() -> None:
    """Small integer costs make many equal paths; the chosen one must still be openai's."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        x = rng.integers(0, 3, (rng.integers(1, 8), rng.integers(1, 12))).astype(np.float64)
        np.testing.assert_array_equal(np.stack(dtw(x)), whisper.timing.dtw_cpu(x), err_msg=str(x))


@pytest.mark.parametrize(
    "text",
    [
        " Well, it's 5 o'clock - isn't it? (Yes.)",
        " Le café était naïve 日本語 ok 🎉!",
        "Hello",
    ],
)
@pytest.mark.parametrize("with_eot", [False, True])
def test_split_words_matches_openai(tok: WhisperTokenizer, openai_tok, text, with_eot) -> None:
    tokens = tok.encode(text)
    assert tokens == openai_tok.encode(text)
    tokens += [tok.eot] if with_eot else []
    words, groups = split_words(tok, tokens)
    assert (words, groups) == openai_tok.split_tokens_on_spaces(tokens)
    assert "".join(words).replace("<|endoftext|>", "") == text
    assert [t for g in groups for t in g] == tokens


def test_split_words_keeps_multibyte_characters_whole(tok: WhisperTokenizer) -> None:
    tokens = tok.encode(" 日本語")
    assert len(tokens) > 1  # several byte-level tokens
    words, groups = split_words(tok, tokens)
    assert words == [" 日本語"] and groups == [tokens]


# --- temperature fallback ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "logprob", "no_speech", "fallback"),
    [
        (1.5, -0.5, 0.1, False),  # fine
        (3.0, -0.5, 0.1, True),  # looping
        (1.5, -1.5, 0.1, True),  # improbable
        (1.5, -1.5, 0.9, False),  # improbable but silent: retrying does not help
        (3.0, -1.5, 0.9, False),  # silence overrides looping too
        (3.0, -0.5, 0.9, True),  # no-speech alone is not silence: the text is probable
        (1.5, -0.5, 0.9, False),
        (2.4, -1.0, 0.6, False),  # thresholds are strict
    ],
)
def test_needs_fallback(ratio: float, logprob: float, no_speech: float, fallback: bool) -> None:
    result = WindowResult([1], "x", logprob, no_speech, 0.0, ratio)
    assert result.needs_fallback(DecodingOptions()) is fallback


def test_needs_fallback_without_thresholds() -> None:
    options = DecodingOptions(
        compression_ratio_threshold=None, logprob_threshold=None, no_speech_threshold=None
    )
    assert not WindowResult([1], "x", -5.0, 0.99, 0.0, 10.0).needs_fallback(options)
    # without a logprob threshold nothing counts as silent, so looping still falls back
    options = DecodingOptions(logprob_threshold=None)
    assert WindowResult([1], "x", -5.0, 0.99, 0.0, 10.0).needs_fallback(options)


def test_compression_ratio_flags_repetition() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("The quick brown fox jumps over the lazy dog.") < 2.4
    assert compression_ratio(" I am here." * 30) > 2.4

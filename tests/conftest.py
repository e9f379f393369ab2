"""Shared fixtures: tiny seeded models built from configs (nothing is downloaded)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mmseq.decoder import DecoderConfig
from mmseq.encoders import TextEncoderConfig
from mmseq.model import EncoderDecoder, ModelConfig
from mmseq.nn import BlockConfig

CLIPS = Path(__file__).resolve().parents[1] / "mmseq" / "assets" / "clips"

# token ids of the tiny Whisper pair
BOS, EOS, PAD = 1, 2, 0


def until_eos(rows: list[list[int]], prefix_len: int) -> list[list[int]]:
    """Each sequence up to and including its first EOS after the prefix (Hugging Face pads
    finished sequences with EOS or pad, mmseq with pad; what follows EOS is not compared)."""
    out = []
    for row in rows:
        generated = row[prefix_len:]
        end = generated.index(EOS) + 1 if EOS in generated else len(generated)
        out.append(row[: prefix_len + end])
    return out


@dataclass
class WhisperPair:
    """A random Hugging Face WhisperForConditionalGeneration and its mmseq conversion."""

    hf: torch.nn.Module
    mmseq: EncoderDecoder
    vocab_size: int


def make_whisper_pair(seed: int, vocab_size: int = 64, eos_bias: float = 2.0) -> WhisperPair:
    """d_model 64, 2 + 2 layers, 4 heads. init_std 0.3 makes the distributions peaky, and a
    push towards EOS on the final norm's bias makes sequences end at varied lengths."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from mmseq.whisper.checkpoints import WhisperCheckpoint, WhisperDims, hf_to_openai

    torch.manual_seed(seed)
    cfg = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=64,
        init_std=0.3,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    hf = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        eos_row = hf.model.decoder.embed_tokens.weight[EOS]
        hf.model.decoder.layer_norm.bias += eos_bias * 3 * eos_row / eos_row.norm() ** 2
    dims = WhisperDims(80, 1500, 64, 4, 2, vocab_size, 64, 64, 4, 2)
    model = WhisperCheckpoint(dims, hf_to_openai(hf.state_dict()), source=None).build_model()
    return WhisperPair(hf, model, vocab_size)


@pytest.fixture(scope="module")
def one_thread():  # noqa: ANN201 - a generator fixture
    """Run a module with one intra-op thread (`pytestmark = pytest.mark.usefixtures(...)`).
    tiny.en's decoding steps are too small to gain from threads: on 2 busy cores, 2 threads
    made a 54 s recording take 11.8 s instead of 4.8 s (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=[0, 1, 5], ids=lambda s: f"seed{s}")
def tiny_whisper_pair(request: pytest.FixtureRequest) -> WhisperPair:
    return make_whisper_pair(request.param)


def tiny_block(d_model: int = 32, **overrides: object) -> BlockConfig:
    return BlockConfig(d_model=d_model, n_heads=4, d_ff=2 * d_model, **overrides)


def tiny_text_model(seed: int = 0, vocab_size: int = 20, d_model: int = 32) -> EncoderDecoder:
    """text -> text EncoderDecoder: 2 encoder and 2 decoder layers, n_ctx 32."""
    torch.manual_seed(seed)
    config = ModelConfig(
        decoder=DecoderConfig(vocab_size=vocab_size, n_ctx=32, n_layers=2, block=tiny_block()),
        text=TextEncoderConfig(
            vocab_size=vocab_size, n_ctx=32, n_layers=2, block=tiny_block(d_model)
        ),
    )
    return EncoderDecoder(config).eval()


class Hang(Exception):
    """Code ran past the seconds `time_limit` gave it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang in the main thread once `seconds` have passed (SIGALRM): a reader or a
    command that loops forever fails its test instead of stalling the suite."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

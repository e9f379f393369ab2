"""A pointer-generator copy head (See et al. 2017, "Get To The Point") for the shared decoder.

Where the source is text in the target's vocabulary (shared embeddings), the decoder's output
becomes a mixture of generating and copying:

    p(w) = p_gen * softmax(vocab_logits)(w) + (1 - p_gen) * sum of a_s over source positions s
                                                                with token w

a: one dedicated attention head (its own query and key projections) over the encoder states,
under the source padding mask; p_gen = sigmoid(linear([decoder state, attended states])).
The head returns log p in fp32: normalised log-probabilities, so every consumer of logits
keeps working unchanged (cross-entropy with label smoothing: log_softmax of log-probabilities
is the identity; greedy and beam search; logit filters).

Like cross-attention, the keys are projected once per input (`CopyMemory`) and shared by the
G consecutive rows (beams, samples) of that input. The mixture changes only the columns of the
source's tokens (at most S per row), so it is computed there, not over the whole vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SourceStates(Tensor):
    """Encoder states [B, S, D] that carry the source token ids [B, S] they were computed from
    (`source_ids`), for the copy head: `EncoderDecoder.encode` returns them for text inputs of
    a copy model, so that they travel wherever the states go (the decoder's context, the
    generation cache, `decode`, TextGenerator), whose contract stays (tokens, context,
    context_mask, cache). Operations on them give plain tensors, without the ids: the decoder
    reads them from the object it is given."""

    source_ids: Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def wrap(states: Tensor, source_ids: Tensor) -> SourceStates:
        if source_ids.shape != states.shape[:2]:
            raise ValueError(
                f"source ids {tuple(source_ids.shape)} do not match the states "
                f"{tuple(states.shape)} ([B, S] and [B, S, D])"
            )
        out = states.as_subclass(SourceStates)  # stays on the autograd graph
        out.source_ids = source_ids
        return out


def source_ids_of(context: Tensor) -> Tensor | None:
    """The source token ids a context carries (`SourceStates`), else None."""
    return context.source_ids if isinstance(context, SourceStates) else None


@dataclass
class CopyMemory:
    """What the copy head reads of one batch of inputs, computed once per input.

    keys [B, S, Dc]: the copy head's keys; states [B, S, D]: the encoder states it averages
    into its context vector; ids [B, S]: the source token ids; mask [B, S] bool (True = real
    token) or None."""

    keys: Tensor
    states: Tensor
    ids: Tensor
    mask: Tensor | None

    def select(self, inputs: Tensor) -> CopyMemory:
        """Keep the inputs `inputs` [B'] (finished ones leave the generation cache)."""
        mask = None if self.mask is None else self.mask[inputs]
        return CopyMemory(self.keys[inputs], self.states[inputs], self.ids[inputs], mask)


class CopyHead(nn.Module):
    """d_model: the decoder's width (the encoder states have it too); head_dim: the width of
    the copy attention's queries and keys."""

    def __init__(self, d_model: int, head_dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(d_model, head_dim)
        self.k = nn.Linear(d_model, head_dim)
        self.gate = nn.Linear(2 * d_model, 1)  # p_gen from [decoder state, attended states]
        self.scale = head_dim**-0.5

    def memory(self, context: Tensor, ids: Tensor, mask: Tensor | None) -> CopyMemory:
        """context [B, S, D], ids [B, S], mask [B, S] or None -> the keys and what goes with
        them."""
        return CopyMemory(self.k(context), context, ids, mask)

    def forward(self, x: Tensor, vocab_logits: Tensor, memory: CopyMemory) -> Tensor:
        """x [R, T, D] final decoder states, vocab_logits [R, T, V] -> log p [R, T, V] in fp32.

        R is B or a multiple G of it: each run of G consecutive rows (the beams or samples of
        one input) reads its input's memory, as CrossAttention does."""
        rows, t, _ = x.shape
        q = self.q(x)
        # fp32 from here on, autocast or not (it would run the matmuls in bf16)
        with torch.autocast(x.device.type, enabled=False):
            return self._mix(x.float(), q.float(), vocab_logits.float(), memory).reshape(
                rows, t, -1
            )

    def _mix(self, x: Tensor, q: Tensor, vocab_logits: Tensor, memory: CopyMemory) -> Tensor:
        """x [R, T, D], q [R, T, Dc], vocab_logits [R, T, V] in fp32 -> log p [B, G*T, V]."""
        rows, t, _ = x.shape
        inputs = memory.keys.shape[0]
        group = rows // inputs
        # the G rows of an input folded into its query axis: [B, G*T, .]
        q = q.reshape(inputs, group * t, -1)
        scores = (q @ memory.keys.float().transpose(1, 2)) * self.scale  # [B, G*T, S]
        if memory.mask is not None:
            scores = scores.masked_fill(~memory.mask[:, None, :], -float("inf"))
        attention = scores.softmax(-1)
        attended = attention @ memory.states.float()  # [B, G*T, D]
        features = torch.cat([x.reshape(inputs, group * t, -1), attended], -1)
        gate = self.gate(features.to(self.gate.weight.dtype)).float()  # logit of p_gen
        # log(p_gen softmax) everywhere; then, at the tokens of the source, log(p_gen softmax +
        # (1 - p_gen) copied), copied(w) being the attention on the positions holding w. Only
        # these S columns are mixed (the dense [V] mixture cost as much as the output projection)
        out = F.logsigmoid(gate) + vocab_logits.reshape(inputs, group * t, -1).log_softmax(-1)
        ids = memory.ids[:, None, :].expand(-1, group * t, -1)  # [B, G*T, S]
        same = memory.ids[:, :, None] == memory.ids[:, None, :]  # [B, S, S]
        copied = attention @ same.float()  # [B, G*T, S]: the mass on each position's token
        # each token mixed once, at its first real position: padding and repeats add nothing
        earlier = same.tril(-1)  # [b, s, s']: s' < s holds the token of s
        if memory.mask is not None:
            earlier = earlier & memory.mask[:, None, :]
        keep = ~earlier.any(-1)
        if memory.mask is not None:
            keep = keep & memory.mask
        keep = keep[:, None, :] & (copied > 0)  # no log(0), in the backward pass neither
        log_copied = torch.where(keep, copied, 1.0).log()
        generated = out.gather(-1, ids)
        mixed = torch.logaddexp(generated, F.logsigmoid(-gate) + log_copied)
        return out.scatter_add(-1, ids, torch.where(keep, mixed - generated, 0.0))

"""Length-bucketed batches filled up to a padded-cost budget, sharded across ranks, resumable.

Costs are per item (audio seconds, token counts); a batch's cost is what it occupies once padded,
max(cost) x size. Items are split by cost into buckets of relative width `bucket_width` (costs
within a factor 1 + bucket_width of each other, so padding takes at most bucket_width / (1 +
bucket_width) of a batch), and each bucket gets one batch size, floor(max_cost / its largest
cost) (capped by max_batch_size), so any batch drawn from it fits the budget. Each epoch
shuffles the items inside every bucket and then the order of all batches (seeded by seed +
epoch, identically on every rank): batch contents change from epoch to epoch while the number
of batches does not. shuffle=False gives buckets in increasing cost, items in cost order. An
item costing more than max_cost gets a batch of its own, placed after the others when not
shuffling, with a warning at construction (rejecting it would stop a run on one long clip;
a DataModule may filter such items instead).

Ranks: the epoch's batch list is padded by repeating its first batches (drop_last=False, as
DistributedSampler does) or cut (drop_last=True) to a multiple of num_replicas, and rank r
takes batches r, r + R, r + 2R, ...: disjoint shards with equal counts, so no rank waits at
a collective for one that ran out.

Lightning (2.6): `Trainer.fit` checkpoints only the state of *dataloaders* that have
`state_dict`/`load_state_dict` (`CombinedLoader._state_dicts`, `isinstance(dl, _Stateful)`);
it never asks a sampler. It calls `set_epoch` only on `dl.sampler` and `dl.batch_sampler.sampler`
(`_set_sampler_epoch`), so `BucketBatchSampler.sampler` is the sampler itself. Use
`ResumableDataLoader`, which saves how many batches it has *delivered* (workers prefetch
batches the sampler has already yielded) and makes the sampler skip them on resume; it also
starts the sampler at the first next() rather than at iter(), because Lightning calls iter()
before set_epoch when a run starts or resumes. Train with
`Trainer(use_distributed_sampler=False)`: Lightning cannot inject its DistributedSampler into
a custom batch sampler (it raises), and this one shards by itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill unset num_replicas / rank from torch.distributed (1 / 0 when not initialised)."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1:
        raise ValueError(f"num_replicas: expected >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank: expected 0 <= rank < num_replicas={num_replicas}, got {rank}")
    return num_replicas, rank


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices, this rank's share of one epoch (see the module doc).

    costs: one non-negative number per dataset item, e.g. seconds of audio or target tokens.
    max_cost: budget per batch for max(cost in batch) x batch size.
    bucket_width: relative cost range of a bucket (0.1: costs within 10% of each other).
    """

    def __init__(
        self,
        costs: Sequence[float],
        max_cost: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        bucket_width: float = 0.1,
    ) -> None:
        self.costs = torch.as_tensor(costs, dtype=torch.float64)
        _check(self.costs, max_cost, max_batch_size, bucket_width)
        self.max_cost = float(max_cost)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.epoch = 0
        self._buckets, self._sizes, self._oversize = self._make_buckets(bucket_width)
        self._total = len(self._oversize) + sum(
            math.ceil(len(b) / s) for b, s in zip(self._buckets, self._sizes, strict=True)
        )
        if drop_last and self._total < self.num_replicas:
            raise ValueError(
                f"drop_last: {self._total} batches cannot give each of {self.num_replicas} "
                "replicas one; set drop_last=False or lower max_cost"
            )
        self._resume_at = 0  # batches of `epoch` to skip on the next iteration (load_state_dict)
        self._position = 0  # batches of `epoch` handed out (skipped ones included)
        self._started = (0, 0, 0)  # (iterations begun, epoch, start) of the latest iteration

    def _make_buckets(self, bucket_width: float) -> tuple[list[Tensor], list[int], list[int]]:
        """Buckets of the items within budget (index tensors in cost order), their batch sizes,
        and the over-budget items."""
        order = torch.sort(self.costs, stable=True).indices
        over = self.costs[order] > self.max_cost
        oversize = order[over].tolist()
        if oversize:
            worst = oversize[-1]
            warnings.warn(
                f"BucketBatchSampler: {len(oversize)} item(s) cost more than max_cost="
                f"{self.max_cost:g} (largest: item {worst}, {float(self.costs[worst]):g}); "
                "each goes in a batch of its own",
                stacklevel=3,
            )
        fitting = order[~over]
        if len(fitting) == 0:
            return [], [], oversize
        # bucket k holds costs in [low (1 + w)^k, low (1 + w)^(k + 1)); zero costs join bucket 0
        costs = self.costs[fitting]
        low = float(costs[costs > 0].min()) if (costs > 0).any() else 1.0
        keys = torch.floor(torch.log(costs.clamp(min=low) / low) / math.log1p(bucket_width))
        _, counts = torch.unique_consecutive(keys, return_counts=True)
        buckets = list(torch.split(fitting, counts.tolist()))
        sizes = []
        for bucket in buckets:
            top = float(self.costs[bucket[-1]])
            size = len(bucket) if top == 0 else int(self.max_cost // top)
            sizes.append(max(1, min(size, self.max_batch_size or size, len(bucket))))
        return buckets, sizes, oversize

    @property
    def sampler(self) -> BucketBatchSampler:
        """Lightning's `_set_sampler_epoch` reaches a batch sampler through `.sampler.set_epoch`."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (seed + epoch); a different epoch drops a pending resume."""
        if epoch != self.epoch:
            self._resume_at = 0
            self._position = 0
        self.epoch = epoch

    def epoch_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in order, padded/cut for the ranks."""
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = []
        for bucket, size in zip(self._buckets, self._sizes, strict=True):
            if self.shuffle:
                bucket = bucket[torch.randperm(len(bucket), generator=gen)]
            batches += [chunk.tolist() for chunk in torch.split(bucket, size)]
        batches += [[i] for i in self._oversize]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen)]
        per_rank = len(self)
        want = per_rank * self.num_replicas
        batches = (batches * math.ceil(want / len(batches)))[:want]
        return batches

    def __len__(self) -> int:
        """Batches per rank per epoch (the same on every rank and in every epoch)."""
        if self.drop_last:
            return self._total // self.num_replicas
        return math.ceil(self._total / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.epoch_batches()[self.rank :: self.num_replicas]
        start, self._resume_at = self._resume_at, 0
        self._position = start
        self._started = (self._started[0] + 1, self.epoch, start)
        for batch in mine[start:]:
            self._position += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch and how many of its batches this rank has been handed (its sampler
        iterator's count; `ResumableDataLoader` reports delivered batches instead)."""
        return self._state(self.epoch, self._position)

    def _state(self, epoch: int, position: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "batches_yielded": position,
            "num_batches": len(self),
            "num_replicas": self.num_replicas,
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues `state`'s epoch after its yielded batches
        (or starts the following epoch if that one was finished)."""
        for key in ("num_replicas", "seed", "num_batches"):
            if state.get(key) != (mine := self._state(0, 0)[key]):
                raise ValueError(
                    f"BucketBatchSampler state: saved {key}={state.get(key)} but this sampler "
                    f"has {mine}; resume with the same data, max_cost, seed and number of devices"
                )
        epoch, position = int(state["epoch"]), int(state["batches_yielded"])
        if position >= len(self):
            epoch, position = epoch + 1, 0
        self.epoch, self._resume_at, self._position = epoch, position, position


def _check(
    costs: torch.Tensor, max_cost: float, max_batch_size: int | None, bucket_width: float
) -> None:
    if costs.dim() != 1 or len(costs) == 0:
        raise ValueError(f"costs: expected a non-empty sequence of numbers, got {len(costs)}")
    bad = ~torch.isfinite(costs) | (costs < 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"costs: item {i} has cost {float(costs[i])}; expected finite and >= 0")
    if not max_cost > 0 or not math.isfinite(max_cost):
        raise ValueError(f"max_cost: expected a finite number > 0, got {max_cost}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size: expected >= 1 or None, got {max_batch_size}")
    if not bucket_width > 0 or not math.isfinite(bucket_width):
        raise ValueError(f"bucket_width: expected a finite number > 0, got {bucket_width}")


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `BucketBatchSampler` whose state Lightning saves in checkpoints.

    Its state counts the batches it has delivered in the epoch (not those its workers have
    prefetched), so a run resumed from a mid-epoch checkpoint continues with the next batch
    that training had not seen, as Lightning's loop (which skips the batches it counts as done)
    expects. Other keyword arguments are DataLoader's.
    """

    def __init__(self, dataset: Dataset, batch_sampler: BucketBatchSampler, **kwargs: Any) -> None:
        # Lightning's predict loop rebuilds the loader around a wrapper of the sampler
        self.bucket_sampler = getattr(batch_sampler, "_batch_sampler", batch_sampler)
        if not isinstance(self.bucket_sampler, BucketBatchSampler):
            raise TypeError(
                f"batch_sampler: expected a BucketBatchSampler, got {type(batch_sampler).__name__}"
            )
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._pass = (-1, 0)  # (sampler iterations begun before this pass's iter(), delivered)

    def __iter__(self) -> Iterator[Any]:
        self._pass = (self.bucket_sampler._started[0], 0)
        return self._counted()

    def _counted(self) -> Iterator[Any]:
        # DataLoader's iterator starts the sampler (and, with workers, prefetching) when made;
        # made here, at the first next(), the epoch Lightning sets after iter() is the one used
        for batch in super().__iter__():
            self._pass = (self._pass[0], self._pass[1] + 1)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        sampler = self.bucket_sampler
        begun, delivered = self._pass
        iterations, epoch, start = sampler._started
        if iterations != begun + 1:  # this pass's sampler iteration has not begun (or no pass)
            return sampler.state_dict()
        return sampler._state(epoch, start + delivered)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bucket_sampler.load_state_dict(state)
        self._pass = (-1, 0)

"""A fast, deterministic, resumable mini-batch loader over in-memory tensors.

MNIST-sized data fits in memory, and indexing whole batches avoids the per-example collation of a
``DataLoader`` (which dominates an RBM epoch on CPU). The order of epoch ``e`` depends only on ``(seed, e)``
and per-batch randomness (dynamic binarization) only on ``(seed, e, batch)``, so a run resumed at
``(epoch, batch)`` sees exactly the batches an uninterrupted run would. Under DDP each rank takes a disjoint
shard of the same permutation and all ranks get the same number of batches.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

BatchTransform = Callable[[tuple[Tensor, ...], torch.Generator], tuple[Tensor, ...]]


@dataclass(eq=False)  # loaders compare by identity, as before
class BatchLoader:
    """Mini-batches of ``tensors`` (the same first dimension) in a seeded order, resumable at any batch."""

    tensors: Sequence[Tensor] = field(repr=False)
    batch_size: int
    _: KW_ONLY
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False
    transform: BatchTransform | None = None
    rank: int = 0
    world_size: int = 1
    epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.tensors:
            raise ValueError("BatchLoader needs at least one tensor")
        self.tensors = tuple(self.tensors)
        if any(len(t) != len(self.tensors[0]) for t in self.tensors):
            raise ValueError("all tensors must have the same first dimension")

    @property
    def num_examples(self) -> int:
        return len(self.tensors[0])

    def _shard_size(self) -> int:
        return self.num_examples // self.world_size if self.world_size > 1 else self.num_examples

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_examples, generator=generator)
        else:
            order = torch.arange(self.num_examples)
        if self.world_size > 1:
            order = order[: self._shard_size() * self.world_size][self.rank::self.world_size]
        return order

    def iter_from(self, start_batch: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """Yield batches of the current epoch starting at batch index ``start_batch``."""
        order = self._order()
        for index in range(start_batch, len(self)):
            rows = order[index * self.batch_size:(index + 1) * self.batch_size]
            batch = tuple(t[rows] for t in self.tensors)
            if self.transform is not None:
                generator = torch.Generator().manual_seed(
                    (self.seed * 1_000_003 + self.epoch) * 100_003 + index * self.world_size + self.rank)
                batch = self.transform(batch, generator)
            yield batch

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        return self.iter_from(0)

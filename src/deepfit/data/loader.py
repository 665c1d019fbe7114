"""Batch loaders with a resumable position and distributed sharding.

Three kinds of training data reach the engine:

* in-memory arrays or tensors — the fast path: the arrays are moved to the device once and
  every batch is one ``index_select`` per array; no per-sample Python, no collate;
* a ``torch.utils.data.Dataset`` — wrapped in a ``DataLoader`` driven by our own batch
  sampler, so order and resume position are ours;
* a user's ``DataLoader`` — used as it is; on resume its first batches are skipped, which is
  exact only when its order is deterministic.

The sample order of epoch ``e`` is a pure function of ``(seed, e)``, so a run resumed from a
mid-epoch checkpoint sees exactly the batches the uninterrupted run would have seen.
Under torch.distributed, each global batch of ``batch_size * world_size`` samples is split
into ``world_size`` contiguous slices, one per rank: the same global batches as one process
with a batch of ``batch_size * world_size``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepfit.errors import ConfigError, DataError

__all__ = [
    "BatchLoader",
    "IndexBatches",
    "TensorBatches",
    "DatasetBatches",
    "UserLoaderBatches",
    "make_loader",
    "epoch_order",
]

Batch = tuple[torch.Tensor, ...]


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The sample order of one epoch: a permutation that depends only on ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n, generator=generator).to(device)


def _mix(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63 - 1)


class BatchLoader:
    """Interface of the engine's loaders: iterate batches of one epoch from a position."""

    batch_size: int

    def num_batches(self) -> int:  # batches per epoch on this rank
        raise NotImplementedError

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        raise NotImplementedError

    def num_samples(self) -> int:
        raise NotImplementedError


class IndexBatches(BatchLoader):
    """Common part of the index-based loaders: this rank's index ranges of each batch.

    A subclass holds ``n`` samples and implements :meth:`iterate`, taking the positions
    :meth:`ranges` gives in the epoch's order (:func:`epoch_order` when ``shuffle``).
    :class:`TensorBatches`, :class:`DatasetBatches` and
    :class:`deepfit.data.images.ImageBatches` are built on it.

    Args:
        n: samples per epoch (all ranks together).
        batch_size: samples per batch on this rank.
        shuffle: a new order each epoch (from ``seed`` and the epoch number).
        drop_last: drop a final partial global batch.
        seed: seed of the sample order.
        rank, world_size: this process's share under torch.distributed.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size

    def num_samples(self) -> int:
        return self.n

    def num_batches(self) -> int:
        if self.drop_last:
            return self.n // self.global_batch
        return math.ceil(self.n / self.global_batch)

    def ranges(self, start: int = 0) -> Iterator[tuple[int, int]]:
        """Positions ``[lo, hi)`` in the epoch's order of this rank's share of each batch."""
        g = self.global_batch
        for i in range(start, self.num_batches()):
            lo = i * g
            # This rank's contiguous slice of the global batch. With an uneven final batch
            # a rank may get fewer rows (never zero: see _shard_bounds).
            yield _shard_bounds(lo, min(lo + g, self.n), self.rank, self.world_size, self.batch_size)


class TensorBatches(IndexBatches):
    """In-memory tensors, batched by index slicing on the device.

    Args:
        tensors: equal-length tensors; the last is usually the target.
        batch_size: samples per batch on this rank.
        shuffle: a new order each epoch (from ``seed`` and the epoch number).
        drop_last: drop a final partial global batch.
        seed: seed of the sample order.
        rank, world_size: this process's share under torch.distributed.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], **kwargs: Any) -> None:
        self.tensors = tuple(tensors)
        super().__init__(len(self.tensors[0]), **kwargs)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if self.shuffle:
            order = epoch_order(self.n, self.seed, epoch, self.tensors[0].device)
            for lo, hi in self.ranges(start):
                idx = order[lo:hi]
                yield tuple(t.index_select(0, idx) for t in self.tensors)
        else:
            for lo, hi in self.ranges(start):
                yield tuple(t[lo:hi] for t in self.tensors)  # views: no copy


def _shard_bounds(lo: int, hi: int, rank: int, world: int, b: int) -> tuple[int, int]:
    if world == 1:
        return lo, hi
    size = hi - lo
    if size >= world * b:
        return lo + rank * b, lo + (rank + 1) * b
    # Final partial batch: split as evenly as possible. Every rank gets at least one row (the
    # last row is repeated when there are fewer rows than ranks, as DistributedSampler pads),
    # because a rank with no batch would leave the others waiting in the gradient all-reduce.
    per = math.ceil(size / world)
    r_lo = lo + rank * per
    if r_lo >= hi:
        return hi - 1, hi
    return r_lo, min(r_lo + per, hi)


class _BatchSampler(torch.utils.data.Sampler):
    """Index batches for one epoch, from a start position, sharded by rank."""

    def __init__(self, loader: DatasetBatches, epoch: int, start: int) -> None:
        self.loader, self.epoch, self.start = loader, epoch, start

    def __len__(self) -> int:
        return self.loader.num_batches() - self.start

    def __iter__(self) -> Iterator[list[int]]:
        loader = self.loader
        order = epoch_order(loader.n, loader.seed, self.epoch) if loader.shuffle else torch.arange(loader.n)
        for lo, hi in loader.ranges(self.start):
            yield order[lo:hi].tolist()


class DatasetBatches(IndexBatches):
    """A map-style ``Dataset`` behind a ``DataLoader`` that uses our resumable batch sampler."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_workers: int = 0,
        collate_fn: Any = None,
        pin_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError as e:
            raise DataError(
                f"{type(dataset).__name__} has no len(): pass a map-style Dataset, or wrap an "
                "iterable dataset in your own DataLoader"
            ) from e
        super().__init__(n, **kwargs)
        self.dataset = dataset
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        # Worker seeds come from this generator, so augmentation in workers is a function of
        # (seed, epoch) too, not of the global RNG state at the time the epoch started.
        generator = torch.Generator().manual_seed(_mix(self.seed + 1, epoch))
        loader = DataLoader(
            self.dataset,
            batch_sampler=_BatchSampler(self, epoch, start),
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            generator=generator,
            persistent_workers=False,
        )
        for batch in loader:
            yield as_batch(batch)


class UserLoaderBatches(BatchLoader):
    """A user's ``DataLoader``: iterated as it is; resume skips the batches already seen."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.batch_size = loader.batch_size or 1

    def num_samples(self) -> int:
        try:
            return len(self.loader.dataset)  # type: ignore[arg-type]
        except TypeError:
            return self.num_batches() * self.batch_size

    def num_batches(self) -> int:
        try:
            return len(self.loader)
        except TypeError as e:
            raise DataError("the DataLoader has no len(); deepfit needs the number of batches per epoch") from e

    def iterate(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler and friends
        for i, batch in enumerate(self.loader):
            if i >= start:
                yield as_batch(batch)


def as_batch(batch: Any) -> Batch:
    """A batch as a tuple of tensors (inputs..., target)."""
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    raise DataError(
        f"a batch must be a tensor or a tuple/list of tensors (inputs..., target); got {type(batch).__name__}"
    )


def to_tensor(array: Any, *, name: str) -> torch.Tensor:
    """An array as a tensor: float64 becomes float32; integer and bool stay as they are."""
    if isinstance(array, torch.Tensor):
        t = array
    else:
        try:
            a = np.asarray(array)
        except Exception as e:  # noqa: BLE001 - any conversion failure is a data error
            raise DataError(f"{name}: cannot convert {type(array).__name__} to an array ({e})") from e
        if a.dtype == object or a.dtype.kind in "USM":
            raise DataError(
                f"{name}: has dtype {a.dtype}; the engine needs numbers. Encode text/categories first "
                "(deepfit.fit does this for tables)"
            )
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dtype == torch.float64:
        t = t.float()
    return t


def make_loader(
    data: Any,
    *,
    batch_size: int,
    shuffle: bool,
    drop_last: bool = False,
    seed: int = 0,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    name: str = "data",
) -> BatchLoader:
    """A loader for any supported kind of data (see the module docstring)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, BatchLoader):
        return data
    if isinstance(data, DataLoader):
        return UserLoaderBatches(data)
    order = {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last, "seed": seed, "rank": rank,
             "world_size": world_size}
    if isinstance(data, Dataset):
        return DatasetBatches(data, num_workers=num_workers, pin_memory=device.type == "cuda", **order)
    if isinstance(data, dict):
        raise ConfigError(f"{name}: pass a tuple (inputs..., target), not a dict")
    arrays = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not arrays:
        raise DataError(f"{name} is empty: pass (inputs..., target)")
    tensors = tuple(to_tensor(a, name=f"{name}[{i}]") for i, a in enumerate(arrays))
    n = len(tensors[0])
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise DataError(f"{name}[{i}] is a scalar; expected one row per sample")
        if len(t) != n:
            raise DataError(
                f"{name}: arrays have different numbers of rows ({name}[0] has {n}, {name}[{i}] has {len(t)})"
            )
    if n == 0:
        raise DataError(f"{name} has no rows")
    return TensorBatches(tuple(t.to(device, non_blocking=True) for t in tensors), **order)
